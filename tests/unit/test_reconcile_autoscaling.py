"""The autoscaler inside a reconcile (fake API server, real watch cache, a fake Prometheus): where the count goes,
when the next look comes, what status and Events say."""

from __future__ import annotations

import copy

from modeldeploy.adapters.prometheus import MetricsUnavailable, Sample
from modeldeploy.api.autoscaling import parse_autoscaling
from modeldeploy.policy import autoscaling as policy
from modeldeploy.reconcile import autoscaling as glue
from modeldeploy.reconcile.autoscaling import Autoscaler

from .fakes import T0, Cluster

AUTO = {"minReplicas": 1, "maxReplicas": 6, "targetInferencesPerSecondPerReplica": 10, "metricsWindowSeconds": 10}


class Prometheus:
    """Answers by the first key found in the query (``reading`` can be replaced between reconciles)."""

    def __init__(self, reading: dict):
        self.reading = reading
        self.asked = 0

    def query(self, promql, at=None):
        self.asked += 1
        for key, value in self.reading.items():
            if key in promql:
                if isinstance(value, Exception):
                    raise value
                return [Sample(value)]
        return []

    def is_online(self):
        return True


def reading(rate: float, scraped: float) -> dict:
    return {"max(timestamp(": scraped, "min(timestamp(": scraped, "irate(": rate, "delta(": 0.0,
            "nv_inference_count": rate, "nv_inference_request_success": rate}


def autoscaled_md():
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}, "autoscaling": AUTO}, "status": None}


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def cluster_with(prometheus: Prometheus, clock: Clock | None = None) -> Cluster:
    cluster = Cluster()
    cluster.reconciler.autoscaler = Autoscaler(prometheus, clock=clock or Clock())
    return cluster


def replicas(cluster: Cluster) -> int:
    return cluster.kube.objects[("Deployment", "ns", "m-stable")]["spec"]["replicas"]


def test_a_scale_up_waits_one_scrape_with_a_quick_look_then_goes_to_the_deployment_and_status_not_spec():
    prometheus = Prometheus(reading(7.0, 100.0))
    cluster = cluster_with(prometheus)
    body = autoscaled_md()
    first = cluster.reconcile(body)
    assert replicas(cluster) == 1 and first.requeue_after == glue.PERIOD_SECONDS
    spec_before = copy.deepcopy(cluster.md()["spec"])

    prometheus.reading = reading(21.0, 102.0)  # the first scrape after a step: part of it
    held = cluster.reconciler.reconcile("ns", "m")
    assert held.status["autoscaling"]["reason"] == policy.REASON_CONFIRMING and replicas(cluster) == 1
    assert held.requeue_after == policy.CONFIRM_RECHECK_SECONDS  # look again soon, not in 5 s

    prometheus.reading = reading(35.0, 104.0)  # the whole step
    scaled = cluster.reconciler.reconcile("ns", "m")
    assert replicas(cluster) == 4 and scaled.status["autoscaling"]["desiredReplicas"] == 4
    assert scaled.requeue_after == glue.PERIOD_SECONDS
    assert ("Normal", policy.REASON_SCALED_UP) in [e[:2] for e in scaled.events]
    assert cluster.md()["spec"] == spec_before and not cluster.kube.ops("patch_md")  # never into spec


def test_prometheus_down_holds_the_count_says_so_and_follows_again():
    prometheus, clock = Prometheus(reading(35.0, 100.0)), Clock()
    cluster = cluster_with(prometheus, clock)
    cluster.reconcile(autoscaled_md())
    for scraped in (102.0, 104.0):  # asks for more, then confirmed by a newer scrape
        prometheus.reading = reading(35.0, scraped)
        cluster.reconciler.reconcile("ns", "m")
    assert replicas(cluster) == 4
    prometheus.reading = {"": MetricsUnavailable("Prometheus http://p: connection refused")}
    down = cluster.reconciler.reconcile("ns", "m")
    scaling = next(x for x in down.status["conditions"] if x["type"] == glue.COND_SCALING_ACTIVE)
    assert (scaling["status"], scaling["reason"]) == ("False", policy.REASON_METRICS_UNAVAILABLE)  # at once
    for _ in range(8):  # a look every 5 s for 40 s
        cluster.reconciler.reconcile("ns", "m")
        clock.t += glue.PERIOD_SECONDS
    assert replicas(cluster) == 4
    prometheus.reading = reading(35.0, 110.0)
    clock.t += glue.PROMETHEUS_BACKOFF_SECONDS
    back = cluster.reconciler.reconcile("ns", "m")
    scaling = next(x for x in back.status["conditions"] if x["type"] == glue.COND_SCALING_ACTIVE)
    assert scaling["status"] == "True" and replicas(cluster) == 4


def test_a_failing_prometheus_is_asked_once_per_backoff_not_once_per_query_and_object():
    """A hung Prometheus costs each query its timeout: ten queries a look, four workers, and a look would
    take minutes while status says nothing. After one failure, every query fails at once for a while."""
    prometheus, clock = Prometheus({"": MetricsUnavailable("Prometheus http://p: read timed out")}), Clock()
    autoscaler = Autoscaler(prometheus, clock=clock)
    spec = parse_autoscaling(AUTO)
    for name in ("a", "b", "c"):
        look = autoscaler.look(spec, "ns", name, "m", current=3, pods=(), previous=None, now=T0)
        assert look.replicas == 3 and look.status["reason"] == policy.REASON_METRICS_UNAVAILABLE
        assert "read timed out" in look.status["message"]
    assert prometheus.asked == 1
    clock.t += glue.PROMETHEUS_BACKOFF_SECONDS
    autoscaler.look(spec, "ns", "a", "m", current=3, pods=(), previous=None, now=T0)
    assert prometheus.asked == 2  # asked again after the backoff
    prometheus.reading = reading(30.0, 100.0)
    clock.t += glue.PROMETHEUS_BACKOFF_SECONDS
    look = autoscaler.look(spec, "ns", "a", "m", current=3, pods=(), previous=None, now=T0)
    assert look.status["reason"] != policy.REASON_METRICS_UNAVAILABLE and prometheus.asked == 2 + 6  # every query


def test_a_new_model_without_metrics_yet_is_no_warning_a_model_that_never_gets_any_is_one():
    """Until Prometheus has found a new pod and scraped it twice there is no rate: the condition says so, but a
    Warning on every new ModelDeployment would be noise. Missing for two metrics windows with ready pods: warn."""
    prometheus, clock = Prometheus({"": MetricsUnavailable("no data")}), Clock()
    autoscaler = Autoscaler(prometheus, clock=clock)
    spec = parse_autoscaling(AUTO)
    starting = [{"metadata": {"name": "p"}, "status": {"phase": "Pending"}}]
    ready = [{"metadata": {"name": "p"}, "status": {"phase": "Running",
                                                    "conditions": [{"type": "Ready", "status": "True"}]}}]
    warned_at = []
    for i in range(12):  # a look every 5 s; the pod is ready from 15 s on
        look = autoscaler.look(spec, "ns", "m", "m", current=1, pods=starting if i < 3 else ready, previous=None,
                               now=T0)
        assert look.condition.status is False
        warned_at += [clock.t for e in look.events if e[0] == "Warning"]
        clock.t += glue.PERIOD_SECONDS
    assert warned_at == [15.0 + glue.missing_metrics_grace(spec)]


def test_prometheus_stopping_under_a_running_model_warns_once_after_the_grace():
    prometheus, clock = Prometheus(reading(7.0, 100.0)), Clock()
    autoscaler = Autoscaler(prometheus, clock=clock)
    spec = parse_autoscaling(AUTO)
    ready = [{"metadata": {"name": "p"}, "status": {"phase": "Running",
                                                    "conditions": [{"type": "Ready", "status": "True"}]}}]
    look = autoscaler.look(spec, "ns", "m", "m", current=1, pods=ready, previous=None, now=T0)
    assert look.condition.status is True
    prometheus.reading = {"": MetricsUnavailable("Prometheus http://p: connection refused")}
    warnings = []
    for _ in range(12):
        look = autoscaler.look(spec, "ns", "m", "m", current=1, pods=ready, previous=None, now=T0)
        warnings += [(clock.t, e[1]) for e in look.events if e[0] == "Warning"]
        clock.t += glue.PERIOD_SECONDS
    assert warnings == [(glue.missing_metrics_grace(spec), policy.REASON_METRICS_UNAVAILABLE)]


def test_doctests():
    import doctest

    assert doctest.testmod(glue).failed == 0
