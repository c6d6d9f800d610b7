"""spec.autoscaling parsing: defaults, every target, and errors that name the field (table-driven)."""

import doctest

import pytest

from modeldeploy.api import autoscaling as a
from modeldeploy.api.spec import SpecError

BASE = {"maxReplicas": 8, "targetInferencesPerSecondPerReplica": 80}


def test_doctests():
    assert doctest.testmod(a).failed == 0


def test_every_field():
    spec = a.parse_autoscaling({
        "minReplicas": 2, "maxReplicas": 20,
        "targetP99LatencyMilliseconds": 150, "targetInferencesPerSecondPerReplica": 90,
        "targetQueueMicroseconds": 5000, "targetPendingRequestsPerReplica": 4.5,
        "targetQueueToComputeRatio": 1.0, "tolerance": 0.05, "scaleDownStabilizationSeconds": 300,
        "metricsWindowSeconds": 60, "scaleUp": {"maxReplicasPerPeriod": 4, "maxPercentPerPeriod": 100,
                                                "periodSeconds": 30}})
    assert spec == a.AutoscalingSpec(
        min_replicas=2, max_replicas=20, target_p99_latency_ms=150.0, target_inferences_per_second_per_replica=90.0,
        target_queue_us=5000.0, target_pending_requests_per_replica=4.5, target_queue_to_compute_ratio=1.0,
        tolerance=0.05, scale_down_stabilization_seconds=300, metrics_window_seconds=60,
        scale_up=a.ScaleUpLimit(replicas=4, percent=100, period_seconds=30))
    assert list(spec.targets()) == list(a.TARGET_FIELDS)


def test_defaults_and_clamp():
    spec = a.parse_autoscaling({"maxReplicas": 3, "targetQueueToComputeRatio": 0.5})
    assert spec.targets() == {"targetQueueToComputeRatio": 0.5}
    assert (spec.min_replicas, spec.scale_down_stabilization_seconds, spec.metrics_window_seconds) == (1, 120, 30)
    assert [spec.clamp(n) for n in (0, 1, 2, 3, 9)] == [1, 1, 2, 3, 3]
    assert a.parse_autoscaling({**BASE, "scaleUp": {"maxPercentPerPeriod": 50}}).scale_up == a.ScaleUpLimit(
        percent=50, period_seconds=60)


ERRORS = {
    "no maxReplicas": ({"targetQueueMicroseconds": 5}, "spec.autoscaling.maxReplicas", "is required"),
    "min above max": ({**BASE, "minReplicas": 9}, "spec.autoscaling.minReplicas", "(9) must be <= "),
    "min zero (no metrics without pods)": ({**BASE, "minReplicas": 0}, "spec.autoscaling.minReplicas",
                                           "must be >= 1"),
    "no target": ({"maxReplicas": 2}, "spec.autoscaling", "set at least one target"),
    "zero target": ({"maxReplicas": 2, "targetP99LatencyMilliseconds": 0}, "spec.autoscaling.targetP99LatencyMilliseconds",
                    "must be > 0"),
    "string target": ({"maxReplicas": 2, "targetPendingRequestsPerReplica": "4"},
                      "spec.autoscaling.targetPendingRequestsPerReplica", "must be a number"),
    "NaN target": ({"maxReplicas": 2, "targetQueueToComputeRatio": float("nan")},
                   "spec.autoscaling.targetQueueToComputeRatio", "must be a number"),
    "tolerance 1": ({**BASE, "tolerance": 1}, "spec.autoscaling.tolerance", "in [0, 1)"),
    "window too long": ({**BASE, "scaleDownStabilizationSeconds": 7200},
                        "spec.autoscaling.scaleDownStabilizationSeconds", "between 0 and 3600"),
    "metrics window too short": ({**BASE, "metricsWindowSeconds": 2}, "spec.autoscaling.metricsWindowSeconds",
                                 "between 10 and 600"),
    "empty scaleUp": ({**BASE, "scaleUp": {}}, "spec.autoscaling.scaleUp", "set maxReplicasPerPeriod"),
    "scaleUp zero": ({**BASE, "scaleUp": {"maxReplicasPerPeriod": 0}}, "spec.autoscaling.scaleUp.maxReplicasPerPeriod",
                     ">= 1"),
    "scaleUp period": ({**BASE, "scaleUp": {"maxPercentPerPeriod": 10, "periodSeconds": 0}},
                       "spec.autoscaling.scaleUp.periodSeconds", "between 1 and 1800"),
    "not an object": ([], "spec.autoscaling", "must be an object"),
    "bool max": ({"maxReplicas": True, "targetQueueMicroseconds": 5}, "spec.autoscaling.maxReplicas",
                 "must be an integer"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors_name_the_field(case):
    data, field, words = ERRORS[case]
    with pytest.raises(SpecError) as err:
        a.parse_autoscaling(data)
    assert err.value.field == field
    assert words in err.value.message
