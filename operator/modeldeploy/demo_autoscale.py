"""The demo's autoscaling step: a 5× load step on real Triton pods, answered by one scale decision.

What it shows (under ~90 s): a ModelDeployment with ``spec.autoscaling`` serving a python-backend model with a
fixed 20 ms service time (``sandbox/examples.py``) on the pod runner's node, an open-loop load of 7 requests/s
through the sandbox gateway, then 35 requests/s; the operator reads Triton's metrics in the sandbox's
Prometheus and asks for four replicas in one decision (target 10 inferences/s per replica), whose numbers are
printed (the Event's message); the new pods start and each pod's own Triton says how many requests it served.
The load stops at the end; the ModelDeployment stays and goes back to one replica after its 20 s
stabilization window.

Called by ``make demo`` (``modeldeploy.demo``) as ``demo_autoscale.run(kubectl, box, namespace)``, where
``kubectl`` is the demo's kubectl wrapper (``kubectl(*args, input=None) -> stdout``, ``.kubeconfig``), ``box``
the :class:`~modeldeploy.sandbox.cluster.Sandbox` and ``namespace`` where to put it; the demo's operator must
run with the sandbox's Prometheus (it does). The pieces are reused by ``tests/bench/bench_autoscaling_step.py``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from modeldeploy.api import constants as c

NAME = "autoscale-demo"
SERVICE_MS = 20.0
TARGET = 10  # inferences/s per replica (one replica could serve 1000 / SERVICE_MS = 50)
LOW, HIGH = 7.0, 35.0  # requests/s: 1x needs 0.7 replica, 5x needs 3.5 -> 4
WINDOW_S = 20  # scaleDownStabilizationSeconds
METRICS_WINDOW_S = 10


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def body(model_path: Path, name: str = NAME) -> dict[str, Any]:
    """The autoscaled ModelDeployment of the demo (and of the sandbox benchmark)."""
    from modeldeploy.sandbox.examples import autoscaled, python_on_runner

    return autoscaled(python_on_runner(name, model_path, model_name=name),
                      minReplicas=1, maxReplicas=6, targetInferencesPerSecondPerReplica=TARGET,
                      targetP99LatencyMilliseconds=250, scaleDownStabilizationSeconds=WINDOW_S,
                      metricsWindowSeconds=METRICS_WINDOW_S)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """``predicate()``'s first truthy value, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value or None
        time.sleep(interval)


@dataclass
class Scaling:
    """A ModelDeployment's autoscaling as seen from outside: its status and its Deployment's replicas."""

    api: Any
    namespace: str
    prometheus_url: str
    name: str = NAME

    def md(self) -> dict[str, Any]:
        from kubernetes import client

        return client.CustomObjectsApi(self.api).get_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace,
                                                                             c.PLURAL, self.name)

    def status(self) -> dict[str, Any]:
        return (self.md().get("status") or {}).get("autoscaling") or {}

    def replicas(self) -> int | None:
        from kubernetes import client

        try:
            return client.AppsV1Api(self.api).read_namespaced_deployment(f"{self.name}-stable",
                                                                         self.namespace).spec.replicas
        except client.ApiException:
            return None

    def ready_pods(self) -> dict[str, str]:
        """name -> pod IP of the Ready, not terminating pods."""
        from kubernetes import client

        pods = client.CoreV1Api(self.api).list_namespaced_pod(
            self.namespace, label_selector=f"{c.LABEL_INSTANCE}={self.name},{c.LABEL_COMPONENT}=predictor").items
        return {p.metadata.name: p.status.pod_ip for p in pods if p.metadata.deletion_timestamp is None
                and any(x.type == "Ready" and x.status == "True" for x in (p.status.conditions or []))}

    def scaled_event(self, since_replicas: int, to: int) -> str | None:
        """The message of the newest scale-up Event from ``since_replicas`` to ``to``."""
        from kubernetes import client

        found = [e for e in client.CoreV1Api(self.api).list_namespaced_event(self.namespace).items
                 if e.involved_object.name == self.name and e.reason in ("ScaledUp", "ScaleUpLimited")
                 and f"{since_replicas} -> {to}:" in (e.message or "")]
        newest = max(found, key=lambda e: (e.last_timestamp or e.metadata.creation_timestamp), default=None)
        return newest.message if newest else None

    def inference_rate(self) -> float | None:
        """What the operator reads: inferences/s over the metrics window, from the sandbox's Prometheus (not
        from status.autoscaling, which is rewritten only when the decision changes or every 30 s)."""
        from modeldeploy.adapters.prometheus import MetricsUnavailable, PrometheusProvider, scalar
        from modeldeploy.render import promql

        query = promql.inference_rate(promql.selector(self.namespace, self.name, model=self.name),
                                      f"{METRICS_WINDOW_S}s")
        try:
            return scalar(PrometheusProvider(self.prometheus_url).query(query), query)
        except MetricsUnavailable:
            return None

    def steady_at(self, replicas: int, rate: float, timeout: float = 90.0, in_status: bool = False) -> bool:
        """Wait until the Deployment asks for ``replicas`` and Prometheus shows about ``rate`` inferences/s
        over the whole metrics window (``in_status``: and status.autoscaling observes it too, which takes up to
        its 30 s refresh longer: the benchmark's protocol, a more settled start)."""
        def steady():
            seen = self.inference_rate()
            if not (self.replicas() == replicas and len(self.ready_pods()) == replicas and seen is not None
                    and abs(seen - rate) <= 0.1 * rate):
                return False
            if not in_status:
                return True
            auto = self.status()
            observed = (auto.get("observed") or {}).get("inferencesPerSecond")
            return auto.get("desiredReplicas") == replicas and observed is not None and abs(observed - rate) <= 0.2 * rate
        return bool(wait_for(steady, timeout))


@dataclass
class Step:
    """What followed one load step: every change of the Deployment's replicas (seconds after the step)."""

    changes: list[tuple[float, int]] = field(default_factory=list)
    all_ready_after: float | None = None

    @property
    def first(self) -> tuple[float, int] | None:
        return self.changes[0] if self.changes else None


def step_up(scaling: Scaling, load, rate: float, want: int, settle_s: float = 10.0, timeout: float = 120.0) -> Step:
    """Set ``load`` to ``rate`` and follow the Deployment until ``want`` pods are Ready and ``settle_s`` more
    seconds passed (a second decision would show there), polling every 0.2 s."""
    result = Step()
    stepped = load.set_rate(rate)
    last = scaling.replicas()
    deadline = stepped + timeout
    settled_at = None
    while time.monotonic() < deadline and (settled_at is None or time.monotonic() < settled_at + settle_s):
        n = scaling.replicas()
        now = time.monotonic()
        if n is not None and n != last:
            result.changes.append((now - stepped, n))
            last = n
        if result.all_ready_after is None and result.changes and len(scaling.ready_pods()) >= want:
            result.all_ready_after = now - stepped
            settled_at = now
        time.sleep(0.2)
    return result


def served_per_pod(pods: dict[str, str], model: str, load, requests: int = 150, timeout: float = 60.0
                   ) -> dict[str, float]:
    """Requests each pod's own Triton counted while ``load`` sent ``requests`` more."""
    from modeldeploy.sandbox.examples import pod_triton_counter

    metric = "nv_inference_request_success"
    before = {n: pod_triton_counter(ip, metric, model) for n, ip in pods.items()}
    start = len(load.outcomes)
    wait_for(lambda: len(load.outcomes) >= start + requests, timeout, interval=0.1)
    return {n: pod_triton_counter(ip, metric, model) - before[n] for n, ip in pods.items()}


def run(kubectl, box, namespace: str = "default") -> bool:
    """The demo's autoscaling step (module docstring); True when the scale-up happened and the new pods served."""
    from kubernetes import client, config

    from modeldeploy.sandbox.examples import FIXED_SERVICE_TIME_REQUEST, fixed_service_time_model, gateway_target, \
        wait_routed
    from modeldeploy.sandbox.loadgen import OpenLoopLoad

    if not (box.gateway_url and box.prometheus_url):
        _say("autoscaling needs the sandbox's gateway and Prometheus (a pod network): skipping")
        return False
    api = config.new_client_from_config(config_file=kubectl.kubeconfig)
    try:
        client.CoreV1Api(api).read_node("local-0")
    except client.ApiException:
        _say("no pod runner in this sandbox (nvidia-pytriton missing): skipping autoscaling")
        return False
    model = fixed_service_time_model(Path(box.kubeconfig_path).parent / "autoscale-demo-model", SERVICE_MS)
    md = body(model)
    _say(f"autoscaling: {NAME} serves a model taking {SERVICE_MS:g} ms per request; spec.autoscaling = "
         + json.dumps(md["spec"]["autoscaling"]))
    # A rerun of the demo starts over from one replica (an earlier run may still be scaled up).
    kubectl("delete", "modeldeployment", NAME, "-n", namespace, "--ignore-not-found", "--wait=true")
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(md))
    scaling = Scaling(api, namespace, box.prometheus_url)
    if not wait_for(lambda: len(scaling.ready_pods()) >= 1 and scaling.replicas() == 1, 120):
        _say(f"{NAME} did not start one Ready pod in time (kubectl describe md {NAME} -n {namespace})")
        return False
    hostport, host = gateway_target(box.gateway_url, NAME, namespace)
    wait_routed(hostport, NAME, host)
    want = math.ceil(HIGH / TARGET)
    load = OpenLoopLoad(hostport, f"/v2/models/{NAME}/infer", FIXED_SERVICE_TIME_REQUEST, rate=LOW, host=host)
    with load:
        _say(f"{LOW:g} requests/s through the gateway (Host: {host}) ...")
        if not scaling.steady_at(1, LOW, timeout=60):
            _say(f"the autoscaler did not settle at 1 replica: {scaling.status().get('message')}")
            return False
        _say(f"  Prometheus: {scaling.inference_rate():.1f} inferences/s over {METRICS_WINDOW_S} s; the operator keeps "
             f"1 replica ({scaling.status().get('reason')})")
        _say(f"5x step: {HIGH:g} requests/s")
        step = step_up(scaling, load, HIGH, want, settle_s=3.0, timeout=60)
        if not step.first:
            _say(f"no scale decision within 60 s: {scaling.status().get('message')}")
            return False
        took, first = step.first
        _say(f"  decision {took:.1f} s after the step: 1 -> {first} replicas"
             + ("" if len(step.changes) == 1 else f", then {[n for _, n in step.changes[1:]]}"))
        _say(f"  Event ScaledUp: {scaling.scaled_event(1, first) or scaling.status().get('message')}")
        if step.all_ready_after is not None:
            _say(f"  {want} pods Ready {step.all_ready_after:.1f} s after the step")
        pods = scaling.ready_pods()
        served = served_per_pod(pods, NAME, load)
        _say("  requests served, counted by each pod's Triton: "
             + ", ".join(f"{n.rsplit('-', 1)[-1]}: {v:.0f}" for n, v in sorted(served.items())))
    ok = first == want and len(pods) == want and all(v > 0 for v in served.values()) and not load.failures()
    _say(f"load stopped; {NAME} goes back to 1 replica after its {WINDOW_S} s window "
         f"(kubectl get md {NAME} -n {namespace} -o jsonpath='{{.status.autoscaling}}')")
    return ok
