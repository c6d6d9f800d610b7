"""Benchmark: throughput and latency of the digits model served through the sandbox (CPU figures).

Deploys the digits CNN twice with the operator onto the pod runner's node (Triton 2.51 from the
nvidia-pytriton wheel, python backend running onnxruntime on this CPU): once with Triton's dynamic
batcher, once without. Then, for client concurrency 1, 8 and 32 (threads, one HTTP client each, one
image per request), it sends requests for a fixed time and reports requests/s and client-side p50/p99.

Usage: python tests/bench/bench_serving.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

import numpy as np  # noqa: E402
from kubernetes import client, config  # noqa: E402

from modeldeploy.api import constants as c  # noqa: E402
from modeldeploy.models.digits import build  # noqa: E402
from modeldeploy.sandbox.cluster import Sandbox  # noqa: E402
from modeldeploy.sandbox.crd import install_crd  # noqa: E402
from modeldeploy.sandbox.examples import digits_on_runner, file_sha256, local_http_port  # noqa: E402

NAMESPACE = "bench-serving"


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def deploy(api, variants: dict[str, dict]) -> dict[str, str]:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    for body in variants.values():
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, body)
    deadline = time.monotonic() + 300
    urls: dict[str, str] = {}
    while time.monotonic() < deadline and len(urls) < len(variants):
        for label, body in variants.items():
            name = body["metadata"]["name"]
            md = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, name)
            if (md.get("status") or {}).get("phase") == "Ready":
                pod = core.list_namespaced_pod(NAMESPACE, label_selector=f"{c.LABEL_INSTANCE}={name}").items[0]
                urls[label] = f"127.0.0.1:{local_http_port(pod.metadata.annotations)}"
        time.sleep(1)
    if len(urls) < len(variants):
        raise SystemExit(f"not Ready in time: {sorted(set(variants) - set(urls))}")
    return urls


def load(url: str, images: np.ndarray, concurrency: int, seconds: float) -> dict:
    import tritonclient.http as httpclient

    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop_at = time.monotonic() + seconds

    def worker(i: int) -> None:
        triton = httpclient.InferenceServerClient(url)
        rng = np.random.default_rng(i)
        try:
            while time.monotonic() < stop_at:
                x = images[rng.integers(len(images))][None]
                inp = httpclient.InferInput("input", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                t0 = time.perf_counter()
                try:
                    triton.infer("digits", [inp], outputs=[httpclient.InferRequestedOutput("probs")])
                except Exception:  # noqa: BLE001 - counted, not fatal
                    errors[i] += 1
                    continue
                latencies[i].append(time.perf_counter() - t0)
        finally:
            triton.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    flat = sorted(x for per in latencies for x in per)
    return {
        "requests": len(flat), "errors": sum(errors), "rps": len(flat) / elapsed,
        "p50_ms": 1000 * statistics.median(flat),
        "p99_ms": 1000 * flat[min(len(flat) - 1, int(0.99 * len(flat)))],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    box = Sandbox()
    if not box.is_up():
        box.up()
    kubeconfig = str(box.kubeconfig_path)
    install_crd(kubeconfig)
    api = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api)
    try:
        core.delete_namespace(NAMESPACE)
        while NAMESPACE in {n.metadata.name for n in core.list_namespace().items}:
            time.sleep(1)
    except client.ApiException:
        pass
    core.create_namespace({"metadata": {"name": NAMESPACE}})

    out = box.workdir / "bench-digits"
    report = build(out)
    model = out / "model.onnx"
    batched = digits_on_runner("digits-batching", model, sha256=file_sha256(model))
    unbatched = copy.deepcopy(batched)
    unbatched["metadata"]["name"] = "digits-no-batching"
    del unbatched["spec"]["serving"]["dynamicBatching"]
    variants = {"dynamic batching on (max 64, 100 µs queue)": batched, "dynamic batching off": unbatched}

    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(ROOT / "operator")}
    op_log = open(box.workdir / "bench-serving-operator.log", "w")
    operator = subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator"], env=env, stdout=op_log,
                                stderr=subprocess.STDOUT)
    try:
        urls = deploy(api, variants)
        images = np.load(out / "digits_test.npz")["x_test"].astype(np.float32)
        say(f"model: digits CNN, {report['size_bytes']} bytes; {args.seconds:.0f} s per cell; one image per request")
        rows = []
        for label, url in urls.items():
            for concurrency in (1, 8, 32):
                r = load(url, images, concurrency, args.seconds)
                say(f"{label}, concurrency {concurrency}: {r}")
                rows.append((label, concurrency, r))
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        core.delete_namespace(NAMESPACE)

    print("\n| variant | client concurrency | requests/s | p50 ms | p99 ms | requests | errors |")
    print("|---|---|---|---|---|---|---|")
    for label, concurrency, r in rows:
        print(f"| {label} | {concurrency} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['requests']} | {r['errors']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
