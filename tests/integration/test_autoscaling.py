"""Autoscaling end to end: real Triton pods, the sandbox's real Prometheus, load through the sandbox gateway.

The model is a python-backend ``model.py`` with a fixed service time (a 20 ms sleep per request: the capacity of a
replica does not depend on how busy this shared CPU is) served by the pod runner's real tritonserver; requests
come from an open-loop generator (the rate is the one set, whatever the answers' speed) through the gateway,
which spreads them over the Service's ready endpoints. Target: 10 inferences/s per replica (a replica could
serve 50), so 1× = 7 requests/s needs one replica and 5× = 35 requests/s needs four, with a margin of 0.5
replica on both sides of the rounding. A p99 target of 250 ms rides along as a guard: it must read Triton's
summaries as the pod template starts Triton (``--metrics-config=summary_latencies=true``) and never drive.

One ModelDeployment, in order:

1. 1× for a while: one replica, ``ScalingActive`` True, no scale.
2. The step to 5×: one decision to four replicas within the issue's 15 s; the Deployment gets four, status says
   so, ``spec`` is untouched (no HPA involved: the operator writes the count to the Deployment and status only).
   The new pods run and take their share, counted by each pod's own Triton.
3. Prometheus stopped and the load back to 1×: the count is held at four (no scale-in on missing data) for
   longer than a working autoscaler would need to scale in (window + metrics window + a look), ``ScalingActive``
   False with ``MetricsUnavailable``, one Warning Event.
4. Prometheus started again: ``ScalingActive`` True, the low load seen, ``ScaleDownStabilizing``, and the
   scale-down to one not before the stabilization window (20 s here) has passed since the metrics came back
   (the recommendations held during the outage count as high ones: the window starts again).
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client

from modeldeploy.api import constants as c
from modeldeploy.policy import autoscaling as policy
from modeldeploy.reconcile import autoscaling as glue
from modeldeploy.sandbox.examples import (FIXED_SERVICE_TIME_REQUEST, autoscaled,
                                          fixed_service_time_model, gateway_target, pod_triton_counter,
                                          python_on_runner, wait_routed)
from modeldeploy.sandbox.loadgen import OpenLoopLoad
from modeldeploy.sandbox.outage import PrometheusOutage

from .conftest import wait_for
from .test_operator import condition, create_md, get_md, pods_of, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

NAME = "fixed"
SERVICE_MS = 20.0
TARGET = 10  # inferences/s per replica
LOW, HIGH = 7.0, 35.0  # requests/s: 0.7 and 3.5 replicas' worth
WINDOW_S = 20  # scaleDownStabilizationSeconds
METRICS_WINDOW_S = 10
DECISION_GOAL_S = 15.0  # the goal for the time from the step to the scale decision
SUCCESS = "nv_inference_request_success"


def autoscaled_md(model_path: Path) -> dict:
    return autoscaled(python_on_runner(NAME, model_path, model_name=NAME),
                      minReplicas=1, maxReplicas=6, targetInferencesPerSecondPerReplica=TARGET,
                      targetP99LatencyMilliseconds=250, scaleDownStabilizationSeconds=WINDOW_S,
                      metricsWindowSeconds=METRICS_WINDOW_S)


class ReplicaRecorder:
    """Polls the Deployment's ``spec.replicas`` every 0.2 s and keeps every change with its time: what the
    operator asked for, and when, as precisely as the poll allows."""

    def __init__(self, api, namespace: str, deployment: str):
        self.apps = client.AppsV1Api(api)
        self.namespace, self.deployment = namespace, deployment
        self.changes: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.apps.read_namespaced_deployment(self.deployment, self.namespace).spec.replicas
            except client.ApiException:
                n = None
            if n is not None and (not self.changes or self.changes[-1][1] != n):
                self.changes.append((time.monotonic(), n))
            self._stop.wait(0.2)

    def since(self, t: float) -> list[tuple[float, int]]:
        return [(at, n) for at, n in self.changes if at >= t]

    def __enter__(self) -> "ReplicaRecorder":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def autoscaling_status(api, namespace: str) -> dict:
    return (get_md(api, namespace, NAME).get("status") or {}).get("autoscaling") or {}


def ready_pods(api, namespace: str) -> list:
    return [p for p in pods_of(api, namespace, NAME) if p.metadata.deletion_timestamp is None
            and any(cd.type == "Ready" and cd.status == "True" for cd in (p.status.conditions or []))]


def events(api, namespace: str, reason: str) -> list:
    return [e for e in client.CoreV1Api(api).list_namespaced_event(namespace).items
            if e.reason == reason and e.involved_object.kind == c.KIND]


@contextmanager
def prometheus_stopped(sandbox):
    """The sandbox's Prometheus stopped (SIGTERM, waited for), then started again on the same port, folder and
    data (the operator keeps its URL), also when the test fails in between: later tests need it."""
    outage = PrometheusOutage(sandbox)
    outage.stop()
    try:
        yield
    finally:
        outage.start()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return fixed_service_time_model(tmp_path_factory.mktemp("fixed-service-time"), SERVICE_MS)


def test_load_step_scales_up_in_one_decision_holds_without_metrics_and_scales_down_after_the_window(
        api, operator, namespace, runner_node, gateway_url, sandbox, model_path):
    if not sandbox.prometheus_url:
        pytest.fail(f"the sandbox runs no Prometheus (see {sandbox.log_path('prometheus')})")
    created = create_md(api, namespace, autoscaled_md(model_path))
    wait_ready(api, namespace, NAME, timeout=180)
    spec_before = get_md(api, namespace, NAME)["spec"]
    hostport, host = gateway_target(gateway_url, NAME, namespace)
    wait_routed(hostport, NAME, host)

    load = OpenLoopLoad(hostport, f"/v2/models/{NAME}/infer", FIXED_SERVICE_TIME_REQUEST, rate=LOW, host=host)
    with ReplicaRecorder(api, namespace, f"{NAME}-stable") as replicas, load:
        # 1. 1x: one replica is enough, and the autoscaler says it follows the metrics
        def seeing_low_load():
            auto = autoscaling_status(api, namespace)
            rate = (auto.get("observed") or {}).get("inferencesPerSecond", 0)
            return auto if abs(rate - LOW) <= 0.2 * LOW else None
        wait_for(seeing_low_load, 60, what=f"status.autoscaling observing ~{LOW} inferences/s")
        md = get_md(api, namespace, NAME)
        assert condition(md, glue.COND_SCALING_ACTIVE)["status"] == "True", condition(md, glue.COND_SCALING_ACTIVE)
        assert md["status"]["autoscaling"]["desiredReplicas"] == 1 and [n for _, n in replicas.changes] == [1]
        p99 = md["status"]["autoscaling"]["observed"]["p99LatencyMilliseconds"]
        assert SERVICE_MS <= p99 < 250, p99  # Triton's summary, as rendered: at least the service time

        # 2. the step: one decision to what 5x needs, quickly
        step = load.set_rate(HIGH)
        wait_for(lambda: replicas.since(step), DECISION_GOAL_S + 30, interval=0.2, what="a scale decision")
        decided_at, first = replicas.since(step)[0]
        took = decided_at - step
        print(f"\n5x step: {1} -> {first} replicas {took:.1f}s after the step")
        assert first == math.ceil(HIGH / TARGET), replicas.since(step)  # enough, in one decision
        assert took <= DECISION_GOAL_S
        # the Event is posted after the Deployment's write: wait for it
        scaled_up = wait_for(lambda: [e for e in events(api, namespace, policy.REASON_SCALED_UP)
                                      if "1 -> 4" in e.message], 30, what="the ScaledUp Event")
        assert len(scaled_up) == 1, [e.message for e in events(api, namespace, policy.REASON_SCALED_UP)]
        print(f"Event: {scaled_up[0].message}")

        # the new pods run and each takes its share (Triton's own count at each pod)
        pods = wait_for(lambda: r if len(r := ready_pods(api, namespace)) == first else None, 180,
                        what=f"{first} Ready pods")
        ips = {p.metadata.name: p.status.pod_ip for p in pods}
        assert all(sandbox.pod_range().contains(ip) for ip in ips.values()), ips
        wait_for(lambda: all(pod_triton_counter(ip, SUCCESS, NAME) > 0 for ip in ips.values()), 60,
                 what="every pod serving")
        before = {n: pod_triton_counter(ip, SUCCESS, NAME) for n, ip in ips.items()}
        count = len(load.outcomes)
        load_wait = time.monotonic()
        wait_for(lambda: len(load.outcomes) >= count + 200, 60, interval=0.1, what="200 more requests")
        served = {n: pod_triton_counter(ip, SUCCESS, NAME) - before[n] for n, ip in ips.items()}
        total = sum(served.values())
        print(f"requests served per pod over {time.monotonic() - load_wait:.1f}s: {served}")
        assert total >= 190, served
        assert all(v / total >= 0.15 for v in served.values()), served  # 0.25 each, round robin
        # the count went to the Deployment and to status, never into spec
        md = get_md(api, namespace, NAME)
        assert md["metadata"]["generation"] == created["metadata"]["generation"] and md["spec"] == spec_before
        assert md["status"]["autoscaling"]["desiredReplicas"] == first and md["status"]["replicas"] == first, (
            replicas.changes, [e.message for e in events(api, namespace, policy.REASON_SCALED_UP)],
            md["status"]["autoscaling"], f"load lag {load.lag():.2f}s")
        assert md["status"]["autoscaling"]["specReplicasIgnored"] is True
        assert load.failures() == [] and load.lag() < 1.0, (load.failures()[:3], load.lag())

        # 3. Prometheus stopped, the load drops: held
        hold_for = WINDOW_S + METRICS_WINDOW_S + glue.PERIOD_SECONDS + 5
        with prometheus_stopped(sandbox):
            load.set_rate(LOW)
            stopped = time.monotonic()

            def not_active():
                cnd = condition(get_md(api, namespace, NAME), glue.COND_SCALING_ACTIVE)
                return cnd if cnd.get("status") == "False" else None
            cnd = wait_for(not_active, 60, what="ScalingActive False")
            assert cnd["reason"] == policy.REASON_METRICS_UNAVAILABLE and "Prometheus" in cnd["message"], cnd
            while time.monotonic() < stopped + hold_for:
                time.sleep(0.5)
            assert replicas.since(step)[-1][1] == first and len(replicas.since(step)) == 1, replicas.since(step)
            warnings = events(api, namespace, policy.REASON_METRICS_UNAVAILABLE)
            assert [(e.type, e.count or 1) for e in warnings] == [("Warning", 1)], [e.message for e in warnings]
            print(f"Prometheus stopped: {first} replicas held for {time.monotonic() - stopped:.0f}s; "
                  f"Event: {warnings[0].message[:160]}")

        # 4. Prometheus back: the low load is seen, and the count goes down after the window
        def active_again():
            cnd = condition(get_md(api, namespace, NAME), glue.COND_SCALING_ACTIVE)
            return cnd if cnd.get("status") == "True" else None
        wait_for(active_again, 60, what="ScalingActive True again")
        back = time.monotonic()
        stabilizing = wait_for(lambda: (a := autoscaling_status(api, namespace)).get("reason") ==
                               policy.REASON_STABILIZING and a, 30, what="ScaleDownStabilizing")
        print(f"back: {stabilizing['message']}")
        wait_for(lambda: replicas.changes[-1][1] == 1, WINDOW_S + METRICS_WINDOW_S + 30, what="scaled down to 1")
        downs = replicas.since(back)
        print(f"scale-down after Prometheus came back: {[(round(t - back, 1), n) for t, n in downs]}")
        # the last look that held (a high recommendation) came at most one period before the first look with data,
        # which this poll saw up to a second later: the window, less that period and a second
        assert downs and downs[0][0] - back >= WINDOW_S - glue.PERIOD_SECONDS - 1, downs
        assert [n for _, n in downs] == sorted((n for _, n in downs), reverse=True)  # only down
    assert load.failures() == [], load.failures()[:3]
