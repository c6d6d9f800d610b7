"""Observing autoscaling signals through a fake MetricsProvider: which queries run, and the rule that
turns Prometheus' answers (or silence) into numbers or None."""

import math

import pytest

from modeldeploy.adapters.prometheus import MetricsUnavailable, Sample
from modeldeploy.api.autoscaling import parse_autoscaling
from modeldeploy.policy import autoscaling as policy
from modeldeploy.reconcile import autoscaling_metrics as m

ALL = parse_autoscaling({"maxReplicas": 8, "targetInferencesPerSecondPerReplica": 80,
                         "targetPendingRequestsPerReplica": 4, "targetP99LatencyMilliseconds": 150,
                         "targetQueueMicroseconds": 2000, "targetQueueToComputeRatio": 1.0,
                         "metricsWindowSeconds": 20})


class FakeProvider:
    """Answers by the metric name found in the query; an exception instance is raised."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def query(self, promql, at=None):
        self.asked.append(promql)
        for key, answer in self.answers.items():
            if key in promql:
                if isinstance(answer, Exception):
                    raise answer
                return [Sample(v, {"pod": f"p{i}"}) for i, v in enumerate(answer)]
        return []

    def is_online(self):
        return True


# Keys are checked in order: the first metric name found in the query decides the answer.
BUSY = {"max(timestamp(": [1000.0], "min(timestamp(": [999.0], "irate(": [430.0], "delta(nv_inference_pending": [12.0], "nv_inference_pending_request_count": [9.0],
        "nv_inference_request_summary_us": [180_000.0], "compute_infer": [0.7], "nv_inference_queue_duration_us": [900.0],
        "nv_inference_count": [410.0], "nv_inference_request_success": [400.0]}


def test_queries_only_what_the_targets_need_with_the_labels_and_window():
    spec = parse_autoscaling({"maxReplicas": 3, "targetQueueMicroseconds": 500, "metricsWindowSeconds": 45})
    q = m.queries(spec, "ns", "digits", track="canary")
    assert set(q) == {"request_rate", "queue_us", "newest_scrape", "stalest_scrape"}
    assert 'namespace="ns",modeldeployment="digits",track="canary"' in q["queue_us"] and "[45s]" in q["queue_us"]
    assert set(m.queries(ALL, "ns", "d")) == {"request_rate", "inference_rate", "pending_growth", "recent_arrival_rate",
                                              "pending_requests", "p99_latency_us", "queue_us", "queue_to_compute",
                                              "newest_scrape", "stalest_scrape"}
    assert q["stalest_scrape"] == 'min(timestamp(nv_inference_request_success{namespace="ns",modeldeployment="digits",' \
                                  'track="canary"}))'



def test_busy_model():
    s = m.observe(FakeProvider(BUSY), ALL, "ns", "digits")
    assert s == policy.Signals(inference_rate=410.0, request_rate=400.0, pending_requests=9.0, pending_growth=12.0,
                               recent_arrival_rate=430.0, p99_latency_us=180_000.0, queue_us=900.0, queue_to_compute=0.7,
                               newest_scrape=1000.0, stalest_scrape=999.0)
    assert m.has_data(s)


def test_prometheus_down_is_the_no_data_marker():
    provider = FakeProvider({"": MetricsUnavailable("Prometheus http://prom:9090: connection refused")})
    s = m.observe(provider, ALL, "ns", "digits")
    assert not m.has_data(s) and s.error == "Prometheus http://prom:9090: connection refused"
    assert len(provider.asked) == 10  # every query tried: one failure does not hide the others
    d = policy.decide(ALL, s, current=4, ready=4, now=0.0)
    assert (d.replicas, d.reason) == (4, policy.REASON_METRICS_UNAVAILABLE)


def test_empty_and_several_series_are_no_data():
    answers = {**BUSY, "nv_inference_request_summary_us": [], "nv_inference_count": [1.0, 2.0]}
    s = m.observe(FakeProvider(answers), ALL, "ns", "digits")
    assert s.p99_latency_us is None and s.inference_rate is None and s.queue_us == 900.0
    assert s.error == "inference_rate of ns/digits: 2 series where one was expected"  # the first error


@pytest.mark.parametrize("rate, expected", [(0.0, 0.0), (5.0, None)])
def test_nan_is_idle_only_when_there_were_no_requests(rate, expected):
    nan = math.nan
    answers = {"irate(": [rate], "delta(nv_inference_pending": [0.0], "nv_inference_pending_request_count": [0.0],
               "nv_inference_request_summary_us": [nan], "compute_infer": [nan], "nv_inference_queue_duration_us": [nan],
               "nv_inference_count": [rate], "nv_inference_request_success": [rate]}
    s = m.observe(FakeProvider(answers), ALL, "ns", "digits")
    assert (s.p99_latency_us, s.queue_us, s.queue_to_compute) == (expected,) * 3
    assert (s.error is None) == (expected == 0.0)


def test_an_idle_model_scales_in_a_silent_one_does_not():
    spec = parse_autoscaling({"maxReplicas": 8, "targetP99LatencyMilliseconds": 100, "scaleDownStabilizationSeconds": 0})
    idle = m.observe(FakeProvider({"summary": [math.nan], "success": [0.0]}), spec, "ns", "d")
    silent = m.observe(FakeProvider({"summary": [], "success": []}), spec, "ns", "d")
    assert policy.decide(spec, idle, current=4, ready=4, now=0.0).replicas == 3
    assert policy.decide(spec, silent, current=4, ready=4, now=0.0).replicas == 4
