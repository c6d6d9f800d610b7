"""The analysis verdict: table-driven, an injected clock, numbers in every result."""

import doctest
import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from modeldeploy.api import canary as cs
from modeldeploy.policy import analysis as an
from modeldeploy.policy import measurements as ms

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
START = T0.timestamp()


def intervals(pod, rows, step=2.0, t0=START):
    """rows: (successes, failures, mean latency ms, mean queue ms) per scrape interval."""
    out = []
    for k, (s, f, lat, queue) in enumerate(rows):
        out.append(ms.PodInterval(pod, t0 + k * step, t0 + (k + 1) * step, s, f, s * lat * 1000, s * queue * 1000))
    return tuple(out)


def tail(pod, p50, p90, p95, p99, n=600, at=START + 60):
    return ms.PodTail(pod, at, ((0.5, p50 * 1000), (0.9, p90 * 1000), (0.95, p95 * 1000), (0.99, p99 * 1000),
                                (0.999, p99 * 1500)), requests_min=0.8 * n, requests_max=n)


def rev(name, *pods_rows, tails=(), custom=None):
    ivs = tuple(i for pod, rows in pods_rows for i in intervals(pod, rows))
    return ms.RevisionData(name, ivs, tuple(tails), custom or {})


def uniform(n_intervals, successes, failures=0, lat=10.0, queue=1.0):
    return [(successes, failures, lat, queue)] * n_intervals


def spec(*metrics, **kw):
    return cs.AnalysisSpec(metrics=tuple(metrics) or cs.DEFAULT_METRICS, **kw)


def data(canary, stable, unavailable=None):
    return ms.Measurements(START, START + 60, canary, stable, unavailable)


def clock(measured, look, interval=10):
    """(started_at, now) for judging ``measured`` at ``look``: now after every interval ended (and was ingested)."""
    ends = [i.end for r in (measured.canary, measured.stable) if r for i in r.intervals]
    now = datetime.fromtimestamp(max(ends, default=START) + an.INGEST_LAG_S + 1, timezone.utc)
    return now - timedelta(seconds=(look - 1) * interval + 1), now


def judge(sp, measured, look=1, previous=None):
    started, now = clock(measured, look, sp.interval_seconds)
    return an.judge(sp, measured, started_at=started, now=now, previous=previous)


HEALTHY_TAILS_C = (tail("c0", 8, 11, 12, 14),)
HEALTHY_TAILS_S = (tail("s0", 8, 11, 12, 14, n=1800), tail("s1", 8, 11, 12.5, 15, n=1800))
ER = cs.MetricCheck("errorRate", max_ratio=1.5)
P99 = cs.MetricCheck("latencyP99", max_ratio=1.2)

CASES = {
    # name: (spec, measurements, look, outcome, failed check names, words in the message)
    "metrics unavailable: NoData, never a decision": (
        spec(), data(None, None, "Prometheus http://p:9090: connection refused"), 1, an.Outcome.NO_DATA, [],
        "connection refused"),
    "healthy A/A: Pass": (
        spec(), data(rev("c", ("c0", uniform(30, 10)), tails=HEALTHY_TAILS_C),
                     rev("s", ("s0", uniform(30, 45)), ("s1", uniform(30, 45)), tails=HEALTHY_TAILS_S)),
        1, an.Outcome.PASS, [], "300 canary requests"),
    "too few requests: Inconclusive": (
        spec(), data(rev("c", ("c0", uniform(5, 10)), tails=HEALTHY_TAILS_C),
                     rev("s", ("s0", uniform(5, 90)), tails=HEALTHY_TAILS_S)),
        1, an.Outcome.INCONCLUSIVE, [], "50/100 canary requests"),
    "error +1 pp at 10% weight: Fail with the numbers": (
        spec(), data(rev("c", ("c0", uniform(30, 20, 0) + uniform(10, 19, 1)),
                         tails=HEALTHY_TAILS_C),
                     rev("s", ("s0", uniform(40, 180)), tails=HEALTHY_TAILS_S)),
        2, an.Outcome.FAIL, ["errorRate"], "errorRate 1.25% (10/800 failed; stable 0%, 0/7200)"),
    "worked example, 3 failures: not yet": (
        spec(ER), data(rev("c", ("c0", uniform(3, 99, 1) + uniform(1, 100))), rev("s", ("s0", uniform(4, 900)))),
        4, an.Outcome.PASS, [], "errorRate 0.75% (3/400 failed"),
    "worked example, 4 failures: Fail": (
        spec(ER), data(rev("c", ("c0", uniform(4, 99, 1))), rev("s", ("s0", uniform(4, 900)))),
        4, an.Outcome.FAIL, ["errorRate"], "p=0.0019 <= 0.005"),
    "absolute error limit": (
        spec(cs.MetricCheck("errorRate", max=1.0)), data(rev("c", ("c0", uniform(20, 19, 1))), None),
        1, an.Outcome.FAIL, ["errorRate"], "<= 1%"),
    "every request failing fails before minRequests": (
        spec(), data(rev("c", ("c0", uniform(5, 0, 8))), rev("s", ("s0", uniform(5, 360)), tails=HEALTHY_TAILS_S)),
        1, an.Outcome.FAIL, ["errorRate"], "40/40 failed"),
    "no stable to compare with: Inconclusive, never Pass": (
        spec(), data(rev("c", ("c0", uniform(30, 10)), tails=HEALTHY_TAILS_C), None),
        1, an.Outcome.INCONCLUSIVE, [], "no stable"),
    "p99 x1.5 by an added delay: Fail": (
        spec(P99), data(rev("c", ("c0", uniform(30, 10, lat=15)), tails=(tail("c0", 15, 18, 19, 21),)),
                        rev("s", ("s0", uniform(30, 90)), tails=HEALTHY_TAILS_S)),
        1, an.Outcome.FAIL, ["latencyP99"], "p99 21 ms (stable 15 ms)"),
    "p99 slightly above the limit, p95 below: not significant": (
        spec(P99), data(rev("c", ("c0", uniform(30, 10)), tails=(tail("c0", 8, 11, 12, 19),)),
                        rev("s", ("s0", uniform(30, 90)), tails=HEALTHY_TAILS_S)),
        1, an.Outcome.PASS, [], "latencyP99 p99 19 ms"),
    "absolute p99 limit": (
        spec(cs.MetricCheck("latencyP99", max=10)), data(rev("c", ("c0", uniform(30, 10)),
                                                             tails=(tail("c0", 8, 11, 12, 14),)), None),
        1, an.Outcome.FAIL, ["latencyP99"], "<= 10 ms"),
    "no latency summary yet: Inconclusive": (
        spec(P99), data(rev("c", ("c0", uniform(30, 10))), rev("s", ("s0", uniform(30, 90)), tails=HEALTHY_TAILS_S)),
        1, an.Outcome.INCONCLUSIVE, [], "no request latency summary"),
    "mean latency 1.5x stable: Fail": (
        spec(cs.MetricCheck("latencyMean", max_ratio=1.2)),
        data(rev("c", ("c0", [(10, 0, 15 + (k % 3), 1) for k in range(30)])),
             rev("s", ("s0", [(30, 0, 10 + (k % 4) * 0.5, 1) for k in range(30)]))),
        1, an.Outcome.FAIL, ["latencyMean"], "mean latency"),
    "mean latency equal: Pass": (
        spec(cs.MetricCheck("latencyMean", max_ratio=1.2)),
        data(rev("c", ("c0", [(10, 0, 10 + (k % 3), 1) for k in range(30)])),
             rev("s", ("s0", [(30, 0, 10 + (k % 4) * 0.5, 1) for k in range(30)]))),
        1, an.Outcome.PASS, [], "latencyMean mean latency"),
    "queue time over an absolute limit (sign test)": (
        spec(cs.MetricCheck("queueTime", max=5)), data(rev("c", ("c0", uniform(20, 10, queue=7))), None),
        1, an.Outcome.FAIL, ["queueTime"], "mean queue time 7 ms"),
    "throughput under its minimum": (
        spec(cs.MetricCheck("throughput", min=10)), data(rev("c", ("c0", uniform(20, 10))), None),
        1, an.Outcome.FAIL, ["throughput"], "throughput 5 req/s per pod"),
    "custom query above max": (
        spec(cs.MetricCheck("gpu", query='x{revision="{{revision}}"}', max=0.9)),
        data(rev("c", ("c0", uniform(20, 10)), custom={"gpu": (0.95,) * 12}), None),
        1, an.Outcome.FAIL, ["gpu"], "median 0.95"),
    "custom query without a value: NoData (hold)": (
        spec(cs.MetricCheck("gpu", query='x{revision="{{revision}}"}', max=0.9)),
        data(rev("c", ("c0", uniform(20, 10))), None),
        1, an.Outcome.NO_DATA, [], "returned no value"),
}


@pytest.mark.parametrize("case", CASES)
def test_verdict(case):
    sp, measured, look, outcome, failed, words = CASES[case]
    verdict = judge(sp, measured, look)
    assert verdict.outcome is outcome, verdict.message
    assert [c.name for c in verdict.failed] == failed
    assert words in verdict.message, verdict.message
    assert verdict.look == look


def test_failed_check_carries_every_number():
    sp, measured, look, *_ = CASES["error +1 pp at 10% weight: Fail with the numbers"]
    verdict = judge(sp, measured, look)
    (check,) = verdict.failed
    assert (check.canary, check.stable, check.limit) == (1.25, 0.0, 0.0)
    assert check.p_value < check.alpha == 0.005  # the sequential test: the whole alpha, any number of looks
    status = verdict.as_status()
    assert status["result"] == "Fail" and status["canaryRequests"] == 800 and status["stableRequests"] == 7200
    assert status["checks"][0] == {"name": "errorRate", "result": "Fail", "message": check.message, "canary": 1.25,
                                   "stable": 0.0, "limit": 0.0, "pValue": float(f"{check.p_value:.4g}"),
                                   "alpha": float(f"{check.alpha:.4g}")}
    assert status["evidence"]["errorRate"]["through"] == START + 80
    assert len(status["evidence"]["errorRate"]["relative"]) == len(an.ERROR_ALTERNATIVES)


def test_fixed_tests_spend_alpha_so_the_same_evidence_fails_early_but_not_late():
    sp = spec(cs.MetricCheck("queueTime", max=5))
    measured = data(rev("c", ("c0", [(10, 0, 10, 7)] * 12 + [(10, 0, 10, 3)] * 1)), None)  # 12 of 13 above max
    p = an.stats.binom_sf(12, 13, 0.5)  # 0.0017
    assert judge(sp, measured, look=1).outcome is an.Outcome.FAIL  # alpha_1 = 0.0025
    assert judge(sp, measured, look=2).outcome is an.Outcome.PASS  # alpha_2 = 0.00083
    assert an.stats.look_alpha(0.005, 2) < p <= an.stats.look_alpha(0.005, 1)


def test_the_error_evidence_carries_over_looks_and_counts_each_interval_once():
    sp = spec(ER)
    first = data(rev("c", ("c0", uniform(2, 99, 1))), rev("s", ("s0", uniform(2, 900))))
    v1 = judge(sp, first, look=1)
    assert v1.outcome is an.Outcome.PASS and v1.checks[0].p_value > 0.005  # 2 failures: not enough
    # the next look sees the same two intervals again (the window overlaps) and two new ones
    both = data(rev("c", ("c0", uniform(4, 99, 1))), rev("s", ("s0", uniform(4, 900))))
    v2 = judge(sp, both, look=2, previous=json.loads(json.dumps(v1.as_status())))
    once = judge(sp, both, look=2)
    assert v2.checks[0].p_value == pytest.approx(once.checks[0].p_value, rel=1e-4)  # not 6 failures, 4
    assert v2.outcome is an.Outcome.FAIL
    # judged again with nothing new: the evidence stays where it was
    v3 = judge(sp, both, look=3, previous=json.loads(json.dumps(v2.as_status())))
    assert v3.evidence == v2.evidence


def test_a_burst_of_errors_while_the_canary_had_half_the_traffic_is_not_blamed_on_it():
    # 0-10 s: canary 50% of requests, a client sends garbage: 10 failures on each side.
    # 10-60 s: canary 5%, no failures. Pooled, the canary "should" have ~6% of failures and has 50%.
    burst_c = [(40, 5, 10, 1)] * 2 + [(10, 0, 10, 1)] * 25
    burst_s = [(40, 5, 10, 1)] * 2 + [(190, 0, 10, 1)] * 25
    verdict = judge(spec(ER), data(rev("c", ("c0", burst_c)), rev("s", ("s0", burst_s))))
    assert verdict.outcome is an.Outcome.PASS, verdict.message
    # the same counts without strata (the pooled share of requests) would fail it
    pooled = data(rev("c", ("c0", [(sum(r[0] for r in burst_c), 10, 10, 1)])),
                  rev("s", ("s0", [(sum(r[0] for r in burst_s), 10, 10, 1)])))
    assert judge(spec(ER), pooled).outcome is an.Outcome.FAIL


def simulated(rng, n_c, n_s, p_c, p_s, buckets=6):
    c_rows, s_rows = [], []
    for _ in range(buckets):
        c_rows.append((n_c, sum(rng.random() < p_c for _ in range(n_c)), 10, 1))
        s_rows.append((n_s, sum(rng.random() < p_s for _ in range(n_s)), 10, 1))
    return data(rev("c", ("c0", [(s - f, f, lat, q) for s, f, lat, q in c_rows])),
                rev("s", ("s0", [(s - f, f, lat, q) for s, f, lat, q in s_rows])))


def test_error_test_false_failures_stay_under_alpha_and_a_quadrupled_rate_is_caught():
    sp = cs.AnalysisSpec(significance=0.1, metrics=(cs.MetricCheck("errorRate", max_ratio=1.0),))
    rng = random.Random(7)
    runs = 300
    # look 1 spends alpha / 2 = 0.05
    false = sum(judge(sp, simulated(rng, 50, 450, 0.02, 0.02)).outcome is an.Outcome.FAIL for _ in range(runs))
    caught = sum(judge(sp, simulated(rng, 50, 450, 0.08, 0.02)).outcome is an.Outcome.FAIL for _ in range(runs))
    assert false / runs <= 0.1, false  # Ville: at most alpha, whatever the number of looks
    assert caught / runs >= 0.8, caught


def test_docstring_examples():
    assert doctest.testmod(an).failed == 0


@pytest.mark.parametrize("waited, outcome", [(5, an.Outcome.INCONCLUSIVE), (an.FIRST_SCRAPE_GRACE_S - 1, an.Outcome.INCONCLUSIVE),
                                             (an.FIRST_SCRAPE_GRACE_S, an.Outcome.NO_DATA), (300, an.Outcome.NO_DATA)])
def test_a_canary_not_scraped_yet_is_inconclusive_until_the_grace_ends_then_no_data(waited, outcome):
    # Found in the sandbox e2e: the first judgement came before Prometheus had discovered the new canary pod
    # (up to 5 s of discovery batching plus a scrape), and a healthy rollout went Holding with a Warning.
    measured = ms.Measurements(START, START + waited, unavailable="Prometheus has no series of canary revision a1",
                               canary_unseen=True)
    started = datetime.fromtimestamp(START, timezone.utc)
    verdict = an.judge(spec(), measured, started_at=started, now=started + timedelta(seconds=waited))
    assert verdict.outcome is outcome, verdict.message
    assert "no series of canary revision a1" in verdict.message


def test_prometheus_unreachable_is_no_data_at_once_even_within_the_first_scrape_grace():
    measured = ms.Measurements(START, START + 2, unavailable="Prometheus http://p:9090: connection refused")
    started = datetime.fromtimestamp(START, timezone.utc)
    verdict = an.judge(spec(), measured, started_at=started, now=started + timedelta(seconds=2))
    assert verdict.outcome is an.Outcome.NO_DATA


def _triton_quantiles_from_args(args):
    """The quantiles a Triton started with ``args`` reports (its defaults unless summary_quantiles is set)."""
    chosen = [a.split("summary_quantiles=", 1)[1] for a in args if "summary_quantiles=" in a]
    if not chosen:
        return (0.5, 0.9, 0.95, 0.99, 0.999)
    return tuple(float(part.split(":")[0]) for part in chosen[-1].split(","))


def test_a_p99_x1_5_canary_is_caught_with_the_quantiles_the_operator_asks_triton_for():
    # Found in the sandbox: a canary slower by a constant 0.5 x stable's p99 passed the p99 check for minutes,
    # since only its p99 reading was above 1.2 x stable's p99, and a p99 reading above the limit proves only
    # 0.9 % of requests slower. Stable here: p95 0.7, p97 0.8, p98 0.88 of its p99 (10 ms).
    from modeldeploy.api.spec import parse_spec
    from modeldeploy.render.triton import Owner, RenderOptions, render_track

    stable_q = {0.5: 5.0, 0.9: 6.0, 0.95: 7.0, 0.97: 8.0, 0.98: 8.8, 0.99: 10.0, 0.999: 14.0}
    spec_ = parse_spec("m", {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}})
    objs = render_track(Owner("m", "ns", "u"), spec_, "r1", RenderOptions(), "stable", "m-r1", 1, "r1")
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    triton = next(ct for ct in deployment["spec"]["template"]["spec"]["containers"] if ct["name"] == "triton")
    reported = _triton_quantiles_from_args(triton["args"])

    def tail_of(values, n):
        return ms.PodTail("p", START + 60, tuple((q, v * 1000) for q, v in sorted(values.items()) if q in reported),
                          requests_min=0.8 * n, requests_max=n)
    canary = {q: v + 5.0 for q, v in stable_q.items()}   # p99 15 ms = 1.5 x stable's
    measured = data(rev("c", ("c0", uniform(30, 40)), tails=(tail_of(canary, 2400),)),
                    rev("s", ("s0", uniform(30, 360)), tails=(tail_of(stable_q, 21600),)))
    verdict = judge(spec(P99), measured, look=3)
    assert 0.97 in reported and 0.98 in reported
    assert verdict.outcome is an.Outcome.FAIL, verdict.message
    # Triton's default quantiles alone could not show it: only p99 is above 12 ms.
    measured_default = data(rev("c", ("c0", uniform(30, 40)), tails=(ms.PodTail("c0", START + 60, tuple(
        (q, v * 1000) for q, v in sorted(canary.items()) if q in (0.5, 0.9, 0.95, 0.99, 0.999)), 1920, 2400),)),
        measured.stable)
    assert judge(spec(P99), measured_default, look=3).outcome is not an.Outcome.FAIL


def test_series_seen_but_no_complete_interval_yet_is_inconclusive_not_an_error():
    # Both revisions scraped once: series exist, no interval between two samples yet (was an OverflowError).
    empty = data(ms.RevisionData("c", (), (), {}), ms.RevisionData("s", (), (), {}))
    verdict = an.judge(spec(ER), empty, started_at=T0, now=T0 + timedelta(seconds=12))
    assert verdict.outcome is an.Outcome.INCONCLUSIVE
    assert "no canary requests yet" in verdict.checks[0].message
