"""The metrics reader: the queries it sends, what it builds from the answers, NoData on every failure."""

from datetime import datetime, timedelta, timezone

import pytest

from modeldeploy.adapters.prometheus import MetricsUnavailable, Series
from modeldeploy.api import canary as cs
from modeldeploy.policy import analysis as an
from modeldeploy.policy import measurements as ms
from modeldeploy.reconcile import analysis as ra

NOW = datetime(2026, 12, 1, 12, 0, 40, tzinfo=timezone.utc)
STARTED = NOW - timedelta(seconds=40)
T = NOW.timestamp()
TARGET = ra.AnalysisTarget("ns", "digits", "digits", "a1", "s0")


def counter(name, rev, pod, per_scrape, start=T - 114, step=2.0, **labels):
    points = tuple((start + k * step, float(per_scrape * k)) for k in range(int(114 / step) + 1))
    return Series({"__name__": name, "revision": rev, "pod": pod, **labels}, points)


def summary(rev, pod, q, value_us):
    return Series({"__name__": ms.SUMMARY, "revision": rev, "pod": pod, "quantile": q},
                  ((T - 2, value_us), (T, value_us)))


class FakeProvider:
    def __init__(self, answers=None, fail=None, ranges=None):
        self.answers = answers or {}
        self.fail = fail
        self.ranges = ranges or {}
        self.queries = []

    def query(self, promql, at=None):
        raise AssertionError("measure reads raw samples only")

    def is_online(self):
        return self.fail is None

    def query_series(self, promql, at=None):
        self.queries.append(("series", promql, at))
        if self.fail:
            raise MetricsUnavailable(self.fail)
        return [s for key, series in self.answers.items() if key in promql for s in series]

    def query_range(self, promql, start, end, step_seconds):
        self.queries.append(("range", promql, start, end, step_seconds))
        return self.ranges.get(promql, [])


def healthy():
    return {
        "nv_inference_request_success|": [
            counter(ms.SUCCESS, "a1", "c-0", 20), counter(ms.DURATION, "a1", "c-0", 20 * 9000),
            counter(ms.FAILURE, "a1", "c-0", 0, reason="BACKEND"),
            counter(ms.SUCCESS, "s0", "s-0", 90), counter(ms.DURATION, "s0", "s-0", 90 * 9000),
            counter(ms.FAILURE, "s0", "s-0", 0, reason="BACKEND")],
        ms.SUMMARY: [summary("a1", "c-0", "0.5", 8000), summary("a1", "c-0", "0.99", 12000),
                     summary("s0", "s-0", "0.5", 8000), summary("s0", "s-0", "0.99", 12500)],
    }


def test_queries_and_measurements():
    provider = FakeProvider(healthy())
    data = ra.measure(provider, TARGET, cs.AnalysisSpec(), started_at=STARTED, now=NOW)
    sel = 'namespace="ns",modeldeployment="digits",model="digits",revision=~"a1|s0"'
    assert provider.queries == [
        ("series", '{__name__=~"nv_inference_request_success|nv_inference_request_failure|'
                   f'nv_inference_request_duration_us",{sel}}}[115s]', NOW),
        ("series", f"nv_inference_request_summary_us{{{sel}}}[75s]", NOW),
    ]
    assert (data.start, data.end, data.unavailable) == (STARTED.timestamp(), T, None)
    assert data.canary.revision == "a1" and data.stable.revision == "s0"
    assert data.canary.requests == 20 * 20  # 20 intervals of 2 s end after the start, 20 requests each
    assert data.stable.requests == 20 * 90
    assert data.canary.tails[0].value(0.99) == 12000 and data.canary.tails[0].requests_max == 600
    verdict = an.judge(cs.AnalysisSpec(), data, started_at=STARTED, now=NOW)
    assert verdict.outcome is an.Outcome.PASS, verdict.message


def test_queue_series_only_when_a_check_needs_them():
    provider = FakeProvider(healthy())
    spec = cs.AnalysisSpec(metrics=(cs.MetricCheck("queueTime", max=5),))
    ra.measure(provider, TARGET, spec, started_at=STARTED, now=NOW)
    assert len(provider.queries) == 1 and "nv_inference_queue_duration_us" in provider.queries[0][1]


def test_prometheus_down_is_no_data_not_an_exception():
    data = ra.measure(FakeProvider(fail="Prometheus http://p:9090: connection refused"), TARGET, cs.AnalysisSpec(),
                      started_at=STARTED, now=NOW)
    assert data.unavailable == "Prometheus http://p:9090: connection refused" and data.canary is None
    assert an.judge(cs.AnalysisSpec(), data, started_at=STARTED, now=NOW).outcome is an.Outcome.NO_DATA


def test_no_canary_series_is_no_data():
    answers = healthy()
    answers["nv_inference_request_success|"] = [s for s in answers["nv_inference_request_success|"]
                                                if s.labels["revision"] == "s0"]
    answers[ms.SUMMARY] = []
    data = ra.measure(FakeProvider(answers), TARGET, cs.AnalysisSpec(), started_at=STARTED, now=NOW)
    assert "no series of canary revision a1" in data.unavailable
    assert data.canary_unseen  # Prometheus answered: the canary may not be scraped yet (policy/analysis.py decides)


def test_an_error_is_not_an_unseen_canary():
    data = ra.measure(FakeProvider(fail="Prometheus http://p:9090: connection refused"), TARGET, cs.AnalysisSpec(),
                      started_at=STARTED, now=NOW)
    assert not data.canary_unseen


def test_no_stable_series_leaves_stable_empty():
    answers = healthy()
    answers["nv_inference_request_success|"] = [s for s in answers["nv_inference_request_success|"]
                                                if s.labels["revision"] == "a1"]
    data = ra.measure(FakeProvider(answers), TARGET, cs.AnalysisSpec(), started_at=STARTED, now=NOW)
    assert data.stable is None and data.canary is not None


def test_window_caps_the_range():
    provider = FakeProvider(healthy())
    spec = cs.AnalysisSpec(window_seconds=60)
    data = ra.measure(provider, TARGET, spec, started_at=NOW - timedelta(hours=1), now=NOW)
    assert data.start == T - 60 and provider.queries[0][1].endswith("[135s]")


def test_custom_queries_run_per_revision_as_range_queries():
    check = cs.MetricCheck("gpu", query='u{namespace="{{namespace}}",revision="{{revision}}",model="{{model}}"}',
                           max_ratio=1.5)
    absolute = cs.MetricCheck("mem", query='m{revision="{{revision}}"}', max=10)
    ranges = {'u{namespace="ns",revision="a1",model="digits"}': [Series({}, ((T - 10, 0.5), (T, 0.6)))],
              'u{namespace="ns",revision="s0",model="digits"}': [Series({}, ((T - 10, 0.5), (T, float("nan"))))],
              'm{revision="a1"}': [Series({}, ((T, 3.0),))]}
    provider = FakeProvider(healthy(), ranges=ranges)
    spec = cs.AnalysisSpec(metrics=(check, absolute))
    data = ra.measure(provider, TARGET, spec, started_at=STARTED, now=NOW)
    range_calls = [q for q in provider.queries if q[0] == "range"]
    assert [q[1] for q in range_calls] == ['u{namespace="ns",revision="a1",model="digits"}', 'm{revision="a1"}',
                                           'u{namespace="ns",revision="s0",model="digits"}']
    assert range_calls[0][2:] == (STARTED, NOW, 10.0)
    assert data.canary.custom == {"gpu": (0.5, 0.6), "mem": (3.0,)}
    assert data.stable.custom == {"gpu": (0.5,)}  # NaN dropped; the absolute-only check is not asked of stable


@pytest.mark.parametrize("now_offset,start_expected", [(10, 10), (400, 100)])
def test_analysis_range(now_offset, start_expected):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    start, end = ra.analysis_range(cs.AnalysisSpec(window_seconds=300), t0, t0 + timedelta(seconds=now_offset))
    assert (start - t0).total_seconds() == (0 if now_offset <= 300 else start_expected)
    assert end == t0 + timedelta(seconds=now_offset)
