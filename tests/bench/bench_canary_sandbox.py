"""Canary rollouts measured in the sandbox, end to end: time from a bad canary's first request to all traffic
back on stable; A/A recordings for the replay benchmark; a 10-minute Prometheus outage mid-rollout.

What runs: the sandbox (real Triton pods on the runner node, Prometheus, the Gateway API data plane) and the
operator. One ModelDeployment serves a python-backend model (``sandbox/examples.python_model_source``,
unbatched, ``--service-ms`` per request, ``--instances`` instances per pod) as stable, with ``strategy: Canary``, steps ``[setWeight 10, pause 10m]``, Gateway
API routing through Gateway ``gateway-system/sandbox``, and **no analysis block: the default checks**
(error rate <= 1.5x stable, p99 <= 1.2x stable, every 10 s, significance 0.005 each). A load generator sends
``--rate`` requests/s through the gateway for the whole run. Each run patches the model to a new version with
one fault and waits for the rollback:

- ``error``: each request fails with probability ``--error-pp`` % (an exception in the model, which Triton
  counts as a failure; seeded per run);
- ``latency``: every request sleeps ``(--latency-factor - 1) x stable's p99``, stable's p99 read from
  Prometheus just before the run (the largest stable pod's summary p99), so the canary's p99 is about
  ``--latency-factor`` x stable's — the fault the replay benchmark injects.

Measured per run, from the client's side: **first canary traffic** (the first request the canary answered,
or failed) to **all traffic back on stable** (the start of the last request that reached the canary; every
later one was answered by stable). Also the decision time (the poller seeing RollingBack/Aborted), failed
requests that were not the canary model's own (must be 0), and the canary's share before the decision.

``--record-aa SECONDS --out FILE``: instead, an A/A canary (version 2 = the same model, ``skipAnalysis``, 10 %
until promoted by hand) under the same load for SECONDS, its raw series recorded from Prometheus with
``record_canary_series.record`` (the replay benchmark's input).

``--outage SECONDS``: instead, a healthy canary (steps 10 %, 30 s, 50 %, 30 s; default analysis) whose
Prometheus is stopped for SECONDS once its first step passed: every status seen during the outage is checked
(no step, no promotion, no rollback); then Prometheus is started again and the rollout must end Promoted.

Usage (the sandbox up, in its folder; the script starts its own operator unless one already runs):
    MODELDEPLOY_SANDBOX_DIR=/tmp/sbx-me python tests/bench/bench_canary_sandbox.py --runs 20 --rate 250 \\
        --fault error --fault latency --json /tmp/rollback.json
    MODELDEPLOY_SANDBOX_DIR=/tmp/sbx-me python tests/bench/bench_canary_sandbox.py --record-aa 900 --out aa.json
    MODELDEPLOY_SANDBOX_DIR=/tmp/sbx-me python tests/bench/bench_canary_sandbox.py --outage 600 --rate 50
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

from modeldeploy.api import constants as c  # noqa: E402
from modeldeploy.sandbox.canary_watch import CanaryWatch, wait_canary  # noqa: E402
from modeldeploy.sandbox.examples import (INJECTED_FAILURE, canary_rollout, file_sha256, gateway_target,  # noqa: E402
                                          python_on_runner, wait_routed, write_python_model)
from modeldeploy.sandbox.traffic import Outcome, Traffic  # noqa: E402

NAME, MODEL = "bench", "canary"


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100), as the replay benchmark reports them."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def injected(o: Outcome) -> bool:
    return o.status != 200 and INJECTED_FAILURE in (o.error or "")


class Bench:
    def __init__(self, args: argparse.Namespace):
        from kubernetes import client, config

        from modeldeploy.sandbox.cluster import Sandbox

        self.args = args
        self.box = Sandbox()
        if not self.box.is_up():
            raise SystemExit(f"the sandbox in {self.box.state_dir} is not up: `modeldeploy sandbox up` first")
        if not (self.box.gateway_url and self.box.prometheus_url):
            raise SystemExit("the sandbox has no gateway or no Prometheus (needs the pod network)")
        self.api = config.new_client_from_config(config_file=str(self.box.kubeconfig_path))
        self.core, self.custom = client.CoreV1Api(self.api), client.CustomObjectsApi(self.api)
        self.namespace = args.namespace or f"bench-canary-{uuid.uuid4().hex[:6]}"
        self.host = f"{NAME}.{self.namespace}.example"
        self.hostport, _ = gateway_target(self.box.gateway_url, "unused", self.namespace)
        self.work = Path(args.workdir or f"/tmp/{self.namespace}")
        self.operator: subprocess.Popen | None = None
        self.version = 1

    # --- setup ------------------------------------------------------------------------------------------------
    def start_operator(self) -> None:
        from modeldeploy.sandbox.crd import install_crd
        from modeldeploy.sandbox.operators import foreign_operators

        install_crd(self.box.kubeconfig_path)
        others = foreign_operators(self.box.kubeconfig_path)
        if others:
            say(f"using the operator that already reconciles this sandbox: {others[0].describe()}")
            return
        env = {**os.environ, "KUBECONFIG": str(self.box.kubeconfig_path), "PYTHONPATH": str(ROOT / "operator"),
               "MODELDEPLOY_PROMETHEUS_URL": self.box.prometheus_url}
        log = open(self.work / "operator.log", "ab")
        self.operator = subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator", "--no-leader-election"],
                                         env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.operator.wait(3)
        except subprocess.TimeoutExpired:
            say(f"operator started (pid {self.operator.pid}, log {self.work / 'operator.log'})")
        else:
            raise SystemExit(f"the operator exited with {self.operator.returncode}; see {self.work / 'operator.log'}")

    def stop_operator(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGTERM)
            try:
                self.operator.wait(20)
            except subprocess.TimeoutExpired:
                self.operator.kill()

    def setup(self, record: bool = False, steps: list[dict[str, Any]] | None = None) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.start_operator()
        self.core.create_namespace({"metadata": {"name": self.namespace}})
        stable = write_python_model(self.work / "v1", delay_ms=self.args.service_ms, note="stable")
        body = python_on_runner(NAME, stable, version=1, model_name=MODEL, replicas=1, instances=self.args.instances)
        # The default analysis (no analysis block); 10 % until judged, then a long pause. Recording an A/A
        # canary: not judged (so nothing ends it), 10 % until promoted by hand.
        steps = steps or ([{"setWeight": 10}, {"pause": {}}] if record else
                          [{"setWeight": 10}, {"pause": {"duration": "10m"}}])
        body["spec"]["rollout"] = canary_rollout(steps, hostnames=(self.host,))
        del body["spec"]["rollout"]["canary"]["analysis"]
        if record:
            body["spec"]["rollout"]["canary"]["skipAnalysis"] = True
        body["metadata"]["namespace"] = self.namespace
        self.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, body)
        watch = CanaryWatch(self.api, self.namespace, NAME)
        wait_canary(watch, lambda cn, md: any(x["type"] == "Ready" and x["status"] == "True"
                                              for x in (md.get("status") or {}).get("conditions") or ()),
                    300, "the stable revision Ready")
        wait_routed(self.hostport, MODEL, self.host, timeout=120)
        say(f"stable ready in namespace {self.namespace}; warming up with {self.args.rate:g} requests/s")
        with Traffic(self.hostport, host=self.host, model=MODEL, threads=self.args.threads, rate=self.args.rate) as t:
            time.sleep(self.args.warmup)
        say(f"warm-up: {len(t.outcomes)} requests, {len(t.failures)} failed")

    def teardown(self) -> None:
        if not self.args.keep:
            try:
                self.core.delete_namespace(self.namespace)
            except Exception as exc:  # noqa: BLE001
                say(f"namespace {self.namespace} not deleted: {exc}")
        self.stop_operator()

    # --- one run ----------------------------------------------------------------------------------------------
    def stable_p99_ms(self) -> float:
        from modeldeploy.adapters.prometheus import PrometheusProvider

        md = self.custom.get_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, NAME)
        stable = md["status"]["currentRevision"]
        query = (f'max(nv_inference_request_summary_us{{namespace="{self.namespace}",modeldeployment="{NAME}",'
                 f'revision="{stable}",quantile="0.99"}})')
        samples = PrometheusProvider(self.box.prometheus_url).query(query)
        values = [s.value for s in samples if math.isfinite(s.value)]
        if not values:
            raise RuntimeError(f"no stable p99 in Prometheus ({query})")
        return values[0] / 1000.0

    def run(self, fault: str, index: int) -> dict[str, Any]:
        self.version += 1
        version = self.version
        details: dict[str, Any] = {"fault": fault, "run": index, "version": version}
        if fault == "error":
            model = {"delay_ms": self.args.service_ms, "fail_probability": self.args.error_pp / 100, "seed": version}
            details["error_pp"] = self.args.error_pp
        else:
            p99 = self.stable_p99_ms()
            model = {"delay_ms": round(self.args.service_ms + (self.args.latency_factor - 1) * p99, 3)}
            details.update(stable_p99_ms=round(p99, 3), delay_ms=model["delay_ms"])
        path = write_python_model(self.work / f"v{version}", note=f"{fault} canary, run {index}", **model)
        patch = {"spec": {"model": {"uri": f"file://{path}", "version": version, "sha256": file_sha256(path)}}}
        with CanaryWatch(self.api, self.namespace, NAME) as watch, \
                Traffic(self.hostport, host=self.host, model=MODEL, threads=self.args.threads,
                        rate=self.args.rate) as load:
            time.sleep(1.0)
            patched = time.monotonic()
            self.custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, NAME, patch)
            try:
                md = wait_canary(watch, lambda cn, m: cn.get("phase") in ("Aborted", "Promoted")
                                 and cn.get("startedAt") and (m.get("status") or {}).get("observedGeneration")
                                 == m["metadata"]["generation"] and str(
                                     (cn.get("history") or [{}])[0].get("change", "")).endswith(f"-> {version}"),
                                 self.args.timeout,
                                 f"run {index}: the canary (version {version}) rolled back")
            except TimeoutError:
                # Not caught within --timeout: end it by asking for stable's model again (the canary is
                # Superseded), and record the run as not rolled back.
                say(f"run {index}: not rolled back within {self.args.timeout:.0f} s; putting version 1 back")
                self.custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, NAME, {
                    "spec": {"model": {"uri": f"file://{self.work / 'v1' / 'model.py'}", "version": 1,
                                       "sha256": file_sha256(self.work / "v1" / "model.py")}}})
                md = wait_canary(watch, lambda cn, m: cn.get("phase") not in ("Progressing", "Paused", "Holding",
                                                                                 "RollingBack", "Promoting"),
                                 120, "the canary ended")
                md["status"]["canary"]["phase"] = f"NotRolledBack (after {self.args.timeout:.0f} s)"
            ended = time.monotonic()
            # Keep sending until 5 s of requests were answered by stable alone after the rollback.
            time.sleep(5.0)
        canary = md["status"]["canary"]
        mine = [o for o in load.outcomes if o.version == str(version) or injected(o)]
        others = [o for o in load.outcomes if o.status != 200 and not injected(o)]
        decided = watch.first(lambda s: s.canary.get("revision") == canary["revision"]
                              and s.canary.get("phase") in ("RollingBack", "Aborted"), since=patched)
        weight = watch.first(lambda s: s.canary.get("revision") == canary["revision"]
                             and s.canary.get("weight") == 10, since=patched)
        details.update(
            outcome=canary["phase"], message=canary.get("message"), requests=len(load.outcomes),
            canary_requests=len(mine), canary_failed=sum(injected(o) for o in mine), other_failures=len(others),
            other_failure_samples=[o.status for o in others[:5]],
            patch_to_weight_s=None if weight is None else round(weight.at - patched, 2),
            patch_to_end_s=round(ended - patched, 2))
        if mine:
            first, last = min(o.started for o in mine), max(o.started for o in mine)
            after = [o for o in load.outcomes if o.started > last]
            details.update(first_to_stable_s=round(last - first, 2),
                           first_to_decision_s=None if decided is None else round(decided.at - first, 2),
                           decision_to_stable_s=None if decided is None else round(last - decided.at, 2),
                           stable_only_after=len(after), after_versions=sorted({o.version or "-" for o in after}))
        return details

    def record_aa(self, seconds: float, out: Path) -> None:
        """An A/A canary (version 2: the same model) at 10 % under load for ``seconds``; its series to ``out``."""
        sys.path.insert(0, str(ROOT / "tests" / "bench"))
        from datetime import datetime, timedelta, timezone

        from record_canary_series import record

        from modeldeploy.adapters.prometheus import PrometheusProvider

        path = write_python_model(self.work / "v2", delay_ms=self.args.service_ms, note="A/A canary: same model")
        patch = {"spec": {"model": {"uri": f"file://{path}", "version": 2, "sha256": file_sha256(path)}}}
        with CanaryWatch(self.api, self.namespace, NAME) as watch, \
                Traffic(self.hostport, host=self.host, model=MODEL, threads=self.args.threads,
                        rate=self.args.rate) as load:
            self.custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, NAME, patch)
            md = wait_canary(watch, lambda cn, m: cn.get("weight") == 10, 300, "the A/A canary at 10 %")
            start = datetime.now(timezone.utc)
            say(f"A/A canary at 10 %; recording {seconds:.0f} s")
            time.sleep(seconds)
            end = datetime.now(timezone.utc)
        canary = md["status"]["canary"]
        provider = PrometheusProvider(self.box.prometheus_url, timeout=30)
        data = record(provider, namespace=self.namespace, name=NAME, canary=canary["revision"],
                      stable=canary["stableRevision"], start=start - timedelta(seconds=0), end=end, model=MODEL,
                      note=(f"A/A: python model sleeping {self.args.service_ms:g} ms, {self.args.instances} instances, "
                            f"{self.args.rate:g} requests/s through the sandbox gateway, 10 % to the canary; "
                            f"{len(load.outcomes)} requests, {len(load.failures)} failed; load average "
                            f"{os.getloadavg()[0]:.1f}"))
        out.write_text(json.dumps(data))
        say(f"{out}: {len(data['series'])} series, {sum(len(x['points']) for x in data['series'])} samples, "
            f"{len(load.outcomes)} requests ({len(load.failures)} failed)")

    def outage(self, seconds: float) -> dict[str, Any]:
        """A healthy canary; Prometheus stopped for ``seconds`` once step 1 passed; then started again."""
        from modeldeploy.sandbox.outage import PrometheusOutage

        path = write_python_model(self.work / "v2", delay_ms=self.args.service_ms, note="healthy canary")
        patch = {"spec": {"model": {"uri": f"file://{path}", "version": 2, "sha256": file_sha256(path)}}}
        prometheus = PrometheusOutage(self.box)
        with CanaryWatch(self.api, self.namespace, NAME) as watch, \
                Traffic(self.hostport, host=self.host, model=MODEL, threads=self.args.threads,
                        rate=self.args.rate) as load:
            self.custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, NAME, patch)
            wait_canary(watch, lambda cn, m: cn.get("step") == 1 and cn.get("phase") == "Paused", 300,
                        "the first step passed (the pause)")
            prometheus.stop()
            stopped = time.monotonic()
            say(f"Prometheus stopped; holding for {seconds:.0f} s")
            try:
                time.sleep(seconds)
            finally:
                prometheus.start()
            restarted = time.monotonic()
            say("Prometheus started again")
            md = wait_canary(watch, lambda cn, m: cn.get("phase") in ("Promoted", "Aborted"), 600,
                             "the rollout's end after the outage")
            ended = time.monotonic()
        during = [s for s in watch.seen if stopped <= s.at <= restarted]
        holding = watch.first(lambda s: s.canary.get("phase") == "Holding", since=stopped)
        back = watch.first(lambda s: s.conditions.get("MetricsAvailable", {}).get("status") == "True",
                           since=restarted)
        phases = sorted({s.canary.get("phase") for s in during})
        result = {
            "outage_s": round(restarted - stopped, 1), "requests": len(load.outcomes),
            "failed_requests": len(load.failures),
            "holding_after_s": None if holding is None else round(holding.at - stopped, 1),
            "phases_during": phases, "steps_during": sorted({s.canary.get("step") for s in during}),
            "weights_during": sorted({s.canary.get("weight") for s in during}),
            "failed_analyses_during": sorted({s.canary.get("failedAnalyses") for s in during}),
            "metrics_available_during": sorted({s.conditions.get("MetricsAvailable", {}).get("status", "-")
                                                for s in during if holding and s.at >= holding.at}),
            "promotions_during": sum(s.canary.get("phase") in ("Promoting", "Promoted") for s in during),
            "rollbacks_during": sum(s.canary.get("phase") in ("RollingBack", "Aborted") for s in during),
            "metrics_back_after_s": None if back is None else round(back.at - restarted, 1),
            "end": md["status"]["canary"]["phase"], "end_after_restart_s": round(ended - restarted, 1),
            "history": md["status"]["canary"].get("history", [{}])[0].get("outcome"),
        }
        say(json.dumps(result))
        return result

    def wait_canary_gone(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{c.LABEL_INSTANCE}={NAME}").items
            if len(pods) <= 1:
                return
            time.sleep(1)


def summary(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| fault | runs | rolled back | first canary request -> all on stable p50 / p95 / max | "
             "-> decision p50 / p95 | decision -> all on stable p50 / p95 | failed requests not the canary's |",
             "|---|---|---|---|---|---|---|"]
    for fault in sorted({r["fault"] for r in rows}):
        mine = [r for r in rows if r["fault"] == fault]
        done = [r for r in mine if r.get("first_to_stable_s") is not None and r["outcome"] == "Aborted"]
        t = [r["first_to_stable_s"] for r in done]
        d = [r["first_to_decision_s"] for r in done if r.get("first_to_decision_s") is not None]
        b = [r["decision_to_stable_s"] for r in done if r.get("decision_to_stable_s") is not None]

        def fmt(values: list[float], *qs: float) -> str:
            return " / ".join(f"{percentile(values, q):.1f} s" for q in qs) if values else "-"
        lines.append(f"| {fault} | {len(mine)} | {len(done)}/{len(mine)} | {fmt(t, 50, 95, 100)} | {fmt(d, 50, 95)} | "
                     f"{fmt(b, 50, 95)} | {sum(r['other_failures'] for r in mine)} of "
                     f"{sum(r['requests'] for r in mine)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per fault")
    parser.add_argument("--fault", action="append", choices=["error", "latency"], help="default: both")
    parser.add_argument("--rate", type=float, default=250.0, help="requests/s through the gateway")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--service-ms", type=float, default=5.0,
                        help="what every request of both revisions sleeps (a model's own service time)")
    parser.add_argument("--instances", type=int, default=4, help="model instances per pod (parallel calls)")
    parser.add_argument("--error-pp", type=float, default=1.0, help="percent of canary requests failing")
    parser.add_argument("--latency-factor", type=float, default=1.5, help="canary p99 / stable p99")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of load before the first run")
    parser.add_argument("--timeout", type=float, default=600.0, help="per run")
    parser.add_argument("--namespace")
    parser.add_argument("--workdir")
    parser.add_argument("--keep", action="store_true", help="keep the namespace")
    parser.add_argument("--json", help="write every run here")
    parser.add_argument("--record-aa", type=float, metavar="SECONDS",
                        help="instead of the runs: record an A/A canary's series for the replay benchmark")
    parser.add_argument("--out", help="the recording (with --record-aa)")
    parser.add_argument("--outage", type=float, metavar="SECONDS",
                        help="instead of the runs: a Prometheus outage of SECONDS mid-rollout")
    args = parser.parse_args(argv)
    if args.outage:
        bench = Bench(args)
        try:
            bench.setup(steps=[{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"setWeight": 50},
                               {"pause": {"duration": "30s"}}])
            result = bench.outage(args.outage)
        finally:
            bench.teardown()
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
        ok = (result["promotions_during"] == 0 and result["rollbacks_during"] == 0 and result["end"] == "Promoted"
              and len(result["steps_during"]) == 1)
        return 0 if ok else 1
    if args.record_aa:
        if not args.out:
            parser.error("--record-aa needs --out")
        bench = Bench(args)
        try:
            bench.setup(record=True)
            bench.record_aa(args.record_aa, Path(args.out))
        finally:
            bench.teardown()
        return 0
    faults = args.fault or ["error", "latency"]
    bench = Bench(args)
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    try:
        bench.setup()
        for i in range(args.runs):
            for fault in faults:   # interleaved, so both see the same machine load over time
                row = bench.run(fault, i + 1)
                rows.append(row)
                say(json.dumps(row))
                bench.wait_canary_gone()
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=1))
    finally:
        bench.teardown()
    load = os.getloadavg()
    print(f"{len(rows)} runs in {time.monotonic() - began:.0f} s at {args.rate:g} requests/s ({args.threads} client "
          f"threads) through the sandbox gateway; load average at the end {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
