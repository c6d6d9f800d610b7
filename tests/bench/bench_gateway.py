"""Benchmark: one Triton pod reached directly (its pod IP) vs through the sandbox gateway (HAProxy), same run.

Deploys the digits model with the operator onto the pod runner's node (one replica, dynamic batching as
``digits_on_runner`` sets it), then, for each client concurrency, measures the two paths in alternating
rounds (direct, gateway, direct, gateway, ...) so that both see the same machine load: threads with one
keep-alive HTTP/1.1 connection each send Triton's JSON inference request (one 1×1×8×8 image) for a fixed
time. Reports requests/s and client-side p50/p99 per path and the gateway's cost as ratios. The gateway
path carries the Service's Host header (``<service>.<namespace>``), as a user's request would.

Usage: python tests/bench/bench_gateway.py [--seconds 5] [--rounds 3] [--concurrency 1 8]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from kubernetes import client, config  # noqa: E402

from modeldeploy.api import constants as c  # noqa: E402
from modeldeploy.models import digits as digits_model  # noqa: E402
from modeldeploy.render import names  # noqa: E402
from modeldeploy.sandbox.cluster import Sandbox  # noqa: E402
from modeldeploy.sandbox.crd import install_crd  # noqa: E402
from modeldeploy.sandbox.examples import digits_on_runner, file_sha256, gateway_target, pod_http_url  # noqa: E402
from modeldeploy.sandbox.traffic import infer_body  # noqa: E402
from bench_namespace import fresh_namespace  # noqa: E402

NAMESPACE = "bench-gateway"
NAME = "digits"


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def measure(hostport: str, host: str | None, concurrency: int, seconds: float) -> dict:
    body = infer_body()
    headers = {"Content-Type": "application/json", **({"Host": host} if host else {})}
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop_at = time.monotonic() + seconds
    address, port = hostport.rsplit(":", 1)

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(address, int(port), timeout=30)
        try:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/v2/models/digits/infer", body=body, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 200:
                        errors[i] += 1
                        continue
                except (OSError, http.client.HTTPException):
                    errors[i] += 1
                    conn.close()
                    conn = http.client.HTTPConnection(address, int(port), timeout=30)
                    continue
                latencies[i].append(time.perf_counter() - t0)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    flat = sorted(x for per in latencies for x in per)
    return {"requests": len(flat), "errors": sum(errors), "seconds": elapsed, "latencies": flat}


def summary(runs: list[dict]) -> dict:
    flat = sorted(x for r in runs for x in r["latencies"])
    seconds = sum(r["seconds"] for r in runs)
    return {"rps": len(flat) / seconds, "p50_ms": 1000 * statistics.median(flat),
            "p99_ms": 1000 * flat[min(len(flat) - 1, int(0.99 * len(flat)))],
            "requests": len(flat), "errors": sum(r["errors"] for r in runs)}


def deploy(api, workdir: Path) -> str:
    out = workdir / "bench-digits"
    digits_model.build(out)
    model = out / "model.onnx"
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    custom.create_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL,
                                           digits_on_runner(NAME, model, sha256=file_sha256(model)))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        md = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, NAME)
        if (md.get("status") or {}).get("phase") == "Ready":
            pod = next(p for p in core.list_namespaced_pod(NAMESPACE, label_selector=f"{c.LABEL_INSTANCE}={NAME}").items
                       if p.metadata.deletion_timestamp is None)
            return pod_http_url(pod.status.pod_ip)
        time.sleep(1)
    raise SystemExit(f"{NAME} not Ready in time")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per round and path")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    box = Sandbox()
    if not box.is_up():
        box.up()
    if not box.gateway_url:
        raise SystemExit(f"the sandbox runs no gateway (network: {box.network()}); see {box.log_path('gateway')}")
    kubeconfig = str(box.kubeconfig_path)
    install_crd(kubeconfig)
    api = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api)
    fresh_namespace(core, NAMESPACE)
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(ROOT / "operator")}
    op_log = open(box.workdir / "bench-gateway-operator.log", "w")
    operator = subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator", "--no-leader-election"], env=env, stdout=op_log,
                                stderr=subprocess.STDOUT)
    rows = []
    try:
        direct = deploy(api, box.workdir)
        gateway, host = gateway_target(box.gateway_url, names.service_name(NAME), NAMESPACE)
        paths = {"direct (pod IP)": (direct, None), f"gateway ({box.gateway_url}, Host {host})": (gateway, host)}
        measure(direct, None, 2, 2.0)   # warm-up, not counted
        measure(gateway, host, 2, 2.0)
        say(f"one Triton pod at {direct}; {args.rounds} alternating rounds of {args.seconds:g} s per path")
        for concurrency in args.concurrency:
            runs: dict[str, list[dict]] = {label: [] for label in paths}
            for _ in range(args.rounds):
                for label, (hostport, h) in paths.items():
                    runs[label].append(measure(hostport, h, concurrency, args.seconds))
            results = {label: summary(r) for label, r in runs.items()}
            for label, r in results.items():
                say(f"concurrency {concurrency}, {label}: {r}")
            rows.append((concurrency, results))
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        core.delete_namespace(NAMESPACE)

    print("\n| client concurrency | path | requests/s | p50 ms | p99 ms | requests | errors |")
    print("|---|---|---|---|---|---|---|")
    for concurrency, results in rows:
        for label, r in results.items():
            print(f"| {concurrency} | {label} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['requests']} | {r['errors']} |")
    print("\n| client concurrency | gateway / direct: requests/s | p50 | p99 |")
    print("|---|---|---|---|")
    for concurrency, results in rows:
        d, g = list(results.values())
        print(f"| {concurrency} | {g['rps'] / d['rps']:.2f} | {g['p50_ms'] / d['p50_ms']:.2f} | "
              f"{g['p99_ms'] / d['p99_ms']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
