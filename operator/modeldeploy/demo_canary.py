"""The demo's canary part: a new model version promoted step by step, then a bad one rolled back, for real.

With the sandbox and the operator the demo already started: a ModelDeployment serves a small Triton
python-backend model (``sandbox/examples.python_model_source``) with ``strategy: Canary`` through the sandbox
Gateway (an HTTPRoute the operator owns), while a load generator sends requests through the gateway. Version 2
(healthy) goes 20 % -> 50 % -> promoted, judged every 2 s on Triton's metrics in Prometheus; version 3 fails
one request in ten and is rolled back at once. Each status change is printed with the analysis' numbers,
and at the end what the gateway did: the share of requests each version answered per weight, and that no
request failed other than the bad version's own.

Call it from the demo (``make demo``) once the operator runs::

    from modeldeploy import demo_canary
    ok = demo_canary.run(kubectl, box, "default")   # kubectl: the demo's _Kubectl (its .kubeconfig is used)

About a minute and a half; returns True when both rollouts ended as they should.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from modeldeploy.api import constants as c

NAME, MODEL = "canary-demo", "canary"
STEPS = [{"setWeight": 20}, {"pause": {"duration": "5s"}}, {"setWeight": 50}, {"pause": {"duration": "5s"}}]
RATE = 40.0  # requests/s through the gateway


def _say(msg: str) -> None:
    print(f"[canary] {msg}", flush=True)


def _line(canary: dict[str, Any]) -> str:
    last = canary.get("lastAnalysis") or {}
    step, steps = int(canary.get("step") or 0), canary.get("steps")
    at = f"all {steps} steps done" if isinstance(steps, int) and step >= steps else f"step {step + 1}/{steps}"
    where = f"{canary.get('phase')}: {at}, weight {canary.get('weight')}%"
    if last:
        where += f" | analysis {last.get('result')}: {last.get('message')}"
    return where


def _follow(watch, done: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
    """Print every new status.canary line until ``done(status.canary)``; the object, or None on timeout."""
    deadline, printed = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        md = watch.get()
        canary = (md.get("status") or {}).get("canary") or {}
        line = _line(canary) if canary.get("phase") else None
        if line and line != printed:
            _say("  " + line)
            printed = line
        if done(canary):
            return md
        time.sleep(0.5)
    return None


def _shares(load, watch, since: float, until: float, version: str) -> str:
    parts = []
    changes = [(t, w) for t, w in watch.weights() if since <= t <= until] + [(until, -1)]
    for (start, weight), (stop, _) in zip(changes, changes[1:]):
        window = [o for o in load.outcomes if o.status == 200 and start + 1.5 <= o.started < stop - 1.5]
        if len(window) >= 20:
            share = sum(o.version == version for o in window) / len(window)
            parts.append(f"weight {weight}%: {share:.0%} of {len(window)} requests answered by version {version}")
    return "; ".join(parts) or "(too few requests per weight to show)"


def run(kubectl, box, namespace: str = "default", timeout: float = 150.0) -> bool:
    """Show a canary promoted and a bad one rolled back (see the module docstring). True when both happened."""
    from kubernetes import client, config

    from modeldeploy.sandbox.canary_watch import CanaryWatch
    from modeldeploy.sandbox.examples import (INJECTED_FAILURE, canary_rollout, file_sha256, gateway_target,
                                              python_on_runner, wait_routed, write_python_model)
    from modeldeploy.sandbox.traffic import Traffic

    if not (box.gateway_url and box.prometheus_url):
        _say("skipped: the sandbox has no gateway or no Prometheus (no pod network: see docs/sandbox.md)")
        return False
    api = config.new_client_from_config(config_file=str(kubectl.kubeconfig))
    custom = client.CustomObjectsApi(api)
    work = Path(box.kubeconfig_path).parent / "canary-demo"
    host = f"{NAME}.{namespace}.example"
    hostport, _ = gateway_target(box.gateway_url, "unused", namespace)
    began = time.monotonic()

    def model(version: int, **fault) -> dict[str, Any]:
        path = write_python_model(work / f"v{version}", note=f"demo version {version}", **fault)
        return {"uri": f"file://{path}", "version": version, "sha256": file_sha256(path)}

    body = python_on_runner(NAME, write_python_model(work / "v1", note="demo version 1"), version=1,
                            model_name=MODEL)
    body["spec"]["rollout"] = canary_rollout(STEPS, hostnames=(host,), interval="2s", min_requests=30)
    try:  # a rerun of the demo starts over
        custom.delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, NAME)
        _wait_gone(custom, namespace)
    except client.ApiException as err:
        if err.status != 404:
            raise
    _say(f"a ModelDeployment {NAME} (Triton python-backend model, version 1) with strategy: Canary, steps "
         f"{[next(iter(s.items())) for s in STEPS]}, routed by an HTTPRoute under Gateway gateway-system/sandbox "
         f"(host {host}), judged every 2 s against stable (error rate <= 1.5x, p99 <= 1.2x)")
    custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, body)
    watch = CanaryWatch(api, namespace, NAME)
    if not _ready(watch, 120):
        _say("version 1 did not become Ready")
        return False
    wait_routed(hostport, MODEL, host, timeout=60)
    ok = True
    with watch, Traffic(hostport, host=host, model=MODEL, threads=2, rate=RATE) as load:
        load.wait_for(40)
        _say(f"version 1 serves; {RATE:g} requests/s through the gateway. Now version 2 (healthy):")
        t2 = time.monotonic()
        custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, NAME,
                                              {"spec": {"model": model(2)}})
        md = _follow(watch, lambda cn: cn.get("phase") in ("Promoted", "Aborted") and
                     (cn.get("history") or [{}])[0].get("change", "").endswith("-> 2"), timeout)
        promoted = md is not None and md["status"]["canary"]["phase"] == "Promoted"
        _say(f"version 2 {'promoted' if promoted else 'NOT promoted'} after {time.monotonic() - t2:.0f}s; at the "
             f"gateway: {_shares(load, watch, t2, time.monotonic(), '2')}")
        ok &= promoted
        _say("now version 3, which fails one request in ten:")
        t3 = time.monotonic()
        custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, NAME,
                                              {"spec": {"model": model(3, fail_every=10)}})
        md = _follow(watch, lambda cn: cn.get("phase") in ("Promoted", "Aborted") and
                     (cn.get("history") or [{}])[0].get("change", "").endswith("-> 3"), timeout)
        rolled = md is not None and md["status"]["canary"]["phase"] == "Aborted"
        if rolled:
            cond = next((x for x in md["status"].get("conditions") or () if x["type"] == "CanaryAnalysis"), {})
            _say(f"version 3 rolled back after {time.monotonic() - t3:.0f}s: CanaryAnalysis={cond.get('status')} "
                 f"({cond.get('reason')}): {cond.get('message')}")
        else:
            _say("version 3 was NOT rolled back")
        ok &= rolled
        settled = time.monotonic()
        load.wait_for(len(load.outcomes) + 80)
    mine = [o for o in load.outcomes if o.status != 200 and INJECTED_FAILURE in (o.error or "")]
    others = [o for o in load.outcomes if o.status != 200 and o not in mine]
    after = {o.version for o in load.outcomes if o.started > settled + 1.5 and o.status == 200}
    _say(f"{len(load.outcomes)} requests: {len(mine)} failed by version 3 itself while it had traffic, "
         f"{len(others)} other failures; after the rollback every request is answered by version "
         f"{', '.join(sorted(v or '?' for v in after))}. Took {time.monotonic() - began:.0f}s in all.")
    _say(f"see it: kubectl get md {NAME} -n {namespace} -o wide; kubectl modeldeploy history {NAME} -n {namespace}; "
         f"kubectl get httproute {NAME} -n {namespace} -o yaml")
    return ok and not others and after == {"2"}


def _ready(watch, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = watch.get()
        status = md.get("status") or {}
        if status.get("observedGeneration") == md["metadata"]["generation"] and any(
                x["type"] == c.COND_READY and x["status"] == "True" for x in status.get("conditions") or ()):
            return True
        time.sleep(0.5)
    return False


def _wait_gone(custom, namespace: str, timeout: float = 60.0) -> None:
    from kubernetes import client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, NAME)
        except client.ApiException as err:
            if err.status == 404:
                return
            raise
        time.sleep(0.5)
