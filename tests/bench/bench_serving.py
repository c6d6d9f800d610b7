"""Benchmark: throughput and latency of the digits and MiniLM models served through the sandbox (CPU figures).

Deploys each model twice with the operator onto the pod runner's node (Triton 2.51 from the
nvidia-pytriton wheel, python backend running onnxruntime on this CPU): once with Triton's dynamic
batcher, once without. Then, for client concurrency 1, 8 and 32 (threads, one HTTP client each), it
sends requests for a fixed time and reports requests/s and client-side p50/p99. One request is one
digits image (1×1×8×8) or one MiniLM sentence, tokenized and padded to a fixed length (``--tokens``,
32 by default) so that the dynamic batcher can merge requests. The models are measured one after the
other; each model's two deployments are deleted before the next model is deployed.

Usage: python tests/bench/bench_serving.py [--model digits|minilm|all] [--seconds 10] [--tokens 32]
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
from modeldeploy.models import digits as digits_model  # noqa: E402
from modeldeploy.sandbox.cluster import Sandbox  # noqa: E402
from modeldeploy.sandbox.crd import install_crd  # noqa: E402
from modeldeploy.sandbox.examples import (  # noqa: E402
    digits_on_runner, file_sha256, minilm_on_runner, pod_http_url)
from bench_namespace import fresh_namespace  # noqa: E402

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
                urls[label] = pod_http_url(pod.status.pod_ip)
        time.sleep(1)
    if len(urls) < len(variants):
        raise SystemExit(f"not Ready in time: {sorted(set(variants) - set(urls))}")
    return urls


def undeploy(api, variants: dict[str, dict]) -> None:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    names = [body["metadata"]["name"] for body in variants.values()]
    for name in names:
        custom.delete_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for the pods to go, so their Tritons stop using the CPU
        pods = core.list_namespaced_pod(NAMESPACE).items
        if not any(p.metadata.labels.get(c.LABEL_INSTANCE) in names for p in pods):
            return
        time.sleep(1)


def digits_requests(images: np.ndarray):
    """``(model, make_inputs, output)``: ``make_inputs(rng)`` gives one random image as Triton inputs."""
    import tritonclient.http as httpclient

    def make(rng) -> list:
        x = images[rng.integers(len(images))][None]
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return [inp]
    return "digits", make, "probs"


def minilm_requests(texts: list[str], tokens: int):
    """One sentence per request, padded (or truncated) to exactly ``tokens`` tokens."""
    import tritonclient.http as httpclient

    from modeldeploy.models import minilm

    feed = minilm.encode(texts, tokens, pad_to=tokens)

    def make(rng) -> list:
        i = rng.integers(len(texts))
        inputs = []
        for key in minilm.INPUTS:
            inp = httpclient.InferInput(key, [1, tokens], "INT64")
            inp.set_data_from_numpy(np.ascontiguousarray(feed[key][i:i + 1]))
            inputs.append(inp)
        return inputs
    return "minilm", make, minilm.EMBEDDING


def counts(url: str, model: str) -> tuple[int, int]:
    """Triton's (inference_count, execution_count) for ``model``: their ratio is the mean batch it ran."""
    import tritonclient.http as httpclient

    triton = httpclient.InferenceServerClient(url)
    try:
        stats = triton.get_inference_statistics(model)["model_stats"][0]
    finally:
        triton.close()
    return int(stats["inference_count"]), int(stats["execution_count"])


def load(url: str, requests, concurrency: int, seconds: float) -> dict:
    import tritonclient.http as httpclient

    model, make_inputs, output = requests

    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop_at = time.monotonic() + seconds

    def worker(i: int) -> None:
        triton = httpclient.InferenceServerClient(url)
        rng = np.random.default_rng(i)
        try:
            while time.monotonic() < stop_at:
                inputs = make_inputs(rng)
                t0 = time.perf_counter()
                try:
                    triton.infer(model, inputs, outputs=[httpclient.InferRequestedOutput(output)])
                except Exception:  # noqa: BLE001 - counted, not fatal
                    errors[i] += 1
                    continue
                latencies[i].append(time.perf_counter() - t0)
        finally:
            triton.close()

    before = counts(url, model)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    after = counts(url, model)
    executions = after[1] - before[1]
    flat = sorted(x for per in latencies for x in per)
    return {
        "requests": len(flat), "errors": sum(errors), "rps": len(flat) / elapsed,
        "mean_batch": (after[0] - before[0]) / executions if executions else float("nan"),
        "p50_ms": 1000 * statistics.median(flat) if flat else float("nan"),
        "p99_ms": 1000 * flat[min(len(flat) - 1, int(0.99 * len(flat)))] if flat else float("nan"),
    }


def on_and_off(batched: dict, name: str, batching_label: str) -> dict[str, dict]:
    """The deployment as given (dynamic batching on) and a copy named ``name`` without the batcher."""
    unbatched = copy.deepcopy(batched)
    unbatched["metadata"]["name"] = name
    del unbatched["spec"]["serving"]["dynamicBatching"]
    return {f"dynamic batching on ({batching_label})": batched, "dynamic batching off": unbatched}


def digits_setup(workdir: Path, args) -> tuple[dict[str, dict], tuple, str]:
    out = workdir / "bench-digits"
    report = digits_model.build(out)
    model = out / "model.onnx"
    batched = digits_on_runner("digits-batching", model, sha256=file_sha256(model))
    variants = on_and_off(batched, "digits-no-batching", "max 64, 100 µs queue")
    images = np.load(out / "digits_test.npz")["x_test"].astype(np.float32)
    return variants, digits_requests(images), f"digits CNN, {report['size_bytes']} bytes; one image per request"


def minilm_setup(workdir: Path, args) -> tuple[dict[str, dict], tuple, str]:
    from modeldeploy.models import minilm

    report = minilm.build(workdir / "bench-minilm", log=None)
    model = report["model_path"]  # the standard-op graph (model.onnx)
    batched = minilm_on_runner("minilm-batching", model, sha256=report["files"][minilm.MODEL_FILE]["sha256"])
    variants = on_and_off(batched, "minilm-no-batching", "max 32, 100 µs queue")
    describe = (f"all-MiniLM-L6-v2 model.onnx, {report['files'][minilm.MODEL_FILE]['size_bytes']} bytes; "
                f"one sentence per request, {args.tokens} tokens")
    return variants, minilm_requests(minilm.sentences(320), args.tokens), describe


SETUPS = {"digits": digits_setup, "minilm": minilm_setup}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=[*SETUPS, "all"], default="all")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per (variant, concurrency) cell")
    parser.add_argument("--tokens", type=int, default=32, help="MiniLM: tokens per sentence (padded/truncated)")
    args = parser.parse_args()
    models = list(SETUPS) if args.model == "all" else [args.model]

    box = Sandbox()
    if not box.is_up():
        box.up()
    kubeconfig = str(box.kubeconfig_path)
    install_crd(kubeconfig)
    api = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api)
    fresh_namespace(core, NAMESPACE)

    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(ROOT / "operator")}
    op_log = open(box.workdir / "bench-serving-operator.log", "w")
    operator = subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator", "--no-leader-election"], env=env,
                                stdout=op_log,
                                stderr=subprocess.STDOUT)
    rows = []
    try:
        for name in models:
            variants, requests, describe = SETUPS[name](box.workdir, args)
            urls = deploy(api, variants)
            say(f"model: {describe}; {args.seconds:g} s per cell")
            for label in variants:
                url = urls[label]
                for concurrency in (1, 8, 32):
                    r = load(url, requests, concurrency, args.seconds)
                    say(f"{name}, {label}, concurrency {concurrency}: {r}")
                    rows.append((name, label, concurrency, r))
            undeploy(api, variants)
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        core.delete_namespace(NAMESPACE)

    print("\n| model | variant | client concurrency | requests/s | p50 ms | p99 ms | mean batch run | requests | "
          "errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, label, concurrency, r in rows:
        print(f"| {name} | {label} | {concurrency} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['mean_batch']:.1f} | {r['requests']} | {r['errors']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
