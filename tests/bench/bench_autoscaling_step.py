"""Benchmark: a 5× load step in the sandbox — time from the step to the scale decision, and decisions to the final count.

Real pieces only: the operator (a subprocess, as a user runs it), the pod runner's tritonserver serving a
python-backend model with a fixed 20 ms service time, the sandbox's Prometheus scraping the pods every 2 s, and
open-loop load through the sandbox gateway (``modeldeploy/demo_autoscale.py`` has the ModelDeployment: target
10 inferences/s per replica, 1× = 7 requests/s on one replica, 5× = 35 requests/s needs four).

Each run: wait until the autoscaler is steady at one replica under 1×, wait a random 0–2 s (so that the step
falls anywhere in Prometheus' 2 s scrape interval and the operator's 5 s look period), step to 5×, and follow
the Deployment's ``spec.replicas`` (polled every 0.2 s) until the new pods are Ready and 10 s more; then back to
1× and wait for the scale-down to one (20 s stabilization window) before the next run.

Reported per run: seconds from the step to the first change of ``spec.replicas`` (the decision reaching the
Deployment), the count it asked for, how many changes it took to reach the final count, and when all pods were
Ready; then p50 and max over the runs.

``--operator-source DIR`` runs the operator from another checkout's ``operator/`` folder (e.g. an older
commit's, exported with ``git archive``), to compare policies on the same sandbox.

Usage: python tests/bench/bench_autoscaling_step.py [--runs 5] [--seed 1] [--operator-source DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

from kubernetes import client, config  # noqa: E402

from modeldeploy import demo_autoscale as demo  # noqa: E402
from modeldeploy.api import constants as c  # noqa: E402
from modeldeploy.sandbox.cluster import Sandbox  # noqa: E402
from modeldeploy.sandbox.crd import install_crd  # noqa: E402
from modeldeploy.sandbox.examples import (FIXED_SERVICE_TIME_REQUEST, fixed_service_time_model,  # noqa: E402
                                          gateway_target, wait_routed)
from modeldeploy.sandbox.loadgen import OpenLoopLoad, quantile  # noqa: E402
from bench_namespace import fresh_namespace  # noqa: E402

NAMESPACE = "bench-autoscaling"


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1, help="seed of the random wait before each step")
    parser.add_argument("--operator-source", type=Path, default=ROOT / "operator",
                        help="the operator/ folder whose code runs as the operator")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    box = Sandbox()
    if not box.is_up():
        box.up()
    if not (box.gateway_url and box.prometheus_url):
        raise SystemExit("the sandbox needs its pod network, gateway and Prometheus (see `sandbox status`)")
    kubeconfig = str(box.kubeconfig_path)
    install_crd(kubeconfig)
    api = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api)
    fresh_namespace(core, NAMESPACE)
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(args.operator_source.resolve()),
           "MODELDEPLOY_PROMETHEUS_URL": box.prometheus_url}
    op_log_path = box.workdir / "bench-autoscaling-operator.log"
    # An --operator-source from before leader election has no such flag (and needs none).
    cli = (args.operator_source / "modeldeploy" / "cli.py").read_text()
    single = ["--no-leader-election"] if "--no-leader-election" in cli else []
    operator = subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator", *single], env=env,
                                stdout=open(op_log_path, "w"), stderr=subprocess.STDOUT)
    say(f"operator from {args.operator_source} (pid {operator.pid}, log {op_log_path})")
    rows = []
    latencies: list[float] = []
    want = math.ceil(demo.HIGH / demo.TARGET)
    try:
        model = fixed_service_time_model(box.workdir / "bench-autoscaling-model", demo.SERVICE_MS)
        client.CustomObjectsApi(api).create_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL,
                                                                     demo.body(model))
        scaling = demo.Scaling(api, NAMESPACE, box.prometheus_url)
        if not demo.wait_for(lambda: scaling.ready_pods() and scaling.replicas() == 1, 180):
            raise SystemExit(f"{demo.NAME} not Ready in time; operator log {op_log_path}")
        hostport, host = gateway_target(box.gateway_url, demo.NAME, NAMESPACE)
        wait_routed(hostport, demo.NAME, host)
        load = OpenLoopLoad(hostport, f"/v2/models/{demo.NAME}/infer", FIXED_SERVICE_TIME_REQUEST, rate=demo.LOW,
                            host=host)
        with load:
            for run in range(1, args.runs + 1):
                if not scaling.steady_at(1, demo.LOW, timeout=180, in_status=True):
                    raise SystemExit(f"run {run}: not steady at 1 replica: {scaling.status().get('message')}")
                time.sleep(rng.uniform(0.0, 2.0))
                since = time.monotonic()
                step = demo.step_up(scaling, load, demo.HIGH, want, settle_s=10.0, timeout=120)
                latencies += load.latencies_ms(since - 30, since)
                message = scaling.scaled_event(1, step.first[1]) if step.first else None
                final = step.changes[-1][1] if step.changes else 1
                to_final = next((i + 1 for i, (_, n) in enumerate(step.changes) if n == final), 0)
                reached = step.changes[to_final - 1][0] if to_final else None
                rows.append((run, step.first, to_final, final, step.all_ready_after, len(load.failures()), reached))
                say(f"run {run}: changes {[(round(t, 1), n) for t, n in step.changes]}, all Ready after "
                    f"{step.all_ready_after}; {message}")
                load.set_rate(demo.LOW)
                if not demo.wait_for(lambda: scaling.replicas() == 1, 120):
                    raise SystemExit(f"run {run}: no scale-down to 1: {scaling.status().get('message')}")
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        core.delete_namespace(NAMESPACE)

    print("\n| run | decision after the step | first decision asks | decisions to the final count | final count "
          "asked after | final count | all pods Ready after the step |")
    print("|---|---|---|---|---|---|---|")
    for run, first, to_final, final, ready, _, reached in rows:
        print(f"| {run} | {'-' if first is None else f'{first[0]:.1f} s'} | {'-' if first is None else first[1]} | "
              f"{to_final} | {'-' if reached is None else f'{reached:.1f} s'} | {final} | "
              f"{'-' if ready is None else f'{ready:.1f} s'} |")
    took = [r[1][0] for r in rows if r[1]]
    reached = [r[6] for r in rows if r[6] is not None]
    print(f"\ndecision after the step: p50 {statistics.median(took):.1f} s, max {max(took):.1f} s over {len(took)} runs; "
          f"final count asked after: p50 {statistics.median(reached):.1f} s, max {max(reached):.1f} s; "
          f"one decision in {sum(1 for r in rows if r[2] == 1)} of {len(rows)}; "
          f"requests failed: {rows[-1][5] if rows else 0}")
    print(f"1x latency at the client (the 30 s before each step, {len(latencies)} requests): "
          f"p50 {quantile(sorted(latencies), 0.5):.1f} ms, p99 {quantile(sorted(latencies), 0.99):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
