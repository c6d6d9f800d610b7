"""Does the wheel's Triton serve an ONNX model on this machine? (``python -m modeldeploy.sandbox.podrunner.triton_check``)

No cluster: builds a tiny ONNX classifier (MatMul + Add + Softmax, batch dimension ``N``) with the ``onnx``
helper API, lays out a model repository the way the runner does (the operator's ``config.pbtxt`` for an ONNX
model on a GPU, adapted; ``onnx_python_model.py`` as ``model.py``), starts ``tritonserver`` with the
command line the runner would build, and reports: time to ``/v2/health/ready``, the auto-completed model
config, the error against numpy, sequential and 8-thread throughput (the latter exercising the dynamic
batcher: fewer executions than requests), and how long a SIGTERM takes.

Needs nvidia-pytriton, onnxruntime, onnx, numpy, tritonclient[http] in the running interpreter.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from modeldeploy.sandbox.podrunner import triton

def build_model(path: Path, features: int = 64, classes: int = 10):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((features, classes)).astype(np.float32)
    b = rng.standard_normal(classes).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return w, b


OPERATOR_CONFIG = ('name: "tiny"\nbackend: "onnxruntime"\nmax_batch_size: 32\n'
                   'version_policy: { specific: { versions: [ 1 ] } }\n'
                   'dynamic_batching {\n  preferred_batch_size: [ 8, 16, 32 ]\n  max_queue_delay_microseconds: 200\n}\n'
                   'instance_group [\n  {\n    count: 1\n    kind: KIND_GPU\n  }\n]\n')


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import tritonclient.http as th

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/podrunner-triton-check"))
    args = parser.parse_args(argv)
    shutil.rmtree(args.root, ignore_errors=True)
    model_dir = args.root / "models" / "tiny"
    w, b = build_model(model_dir / "1" / "model.onnx")
    (model_dir / "config.pbtxt").write_text(triton.adapt_config_pbtxt(OPERATOR_CONFIG))
    for rel in triton.shim_files({"1": os.listdir(model_dir / "1")}):
        shutil.copyfile(triton.SHIM_MODEL, model_dir / rel)
    wheel = triton.find_wheel()
    ports = {8000: _free(), 8001: _free(), 8002: _free()}
    argv_ = triton.triton_argv(
        ["tritonserver", f"--model-repository={args.root / 'models'}", "--model-control-mode=explicit",
         "--load-model=tiny", "--strict-readiness=true", "--exit-on-error=true", "--http-port=8000",
         "--grpc-port=8001", "--metrics-port=8002", "--metrics-config=summary_latencies=true"],
        wheel / "bin" / "tritonserver", triton.prepare_backend_dir(wheel, args.root / "backends"), ports)
    print("$", " ".join(argv_), flush=True)
    env = dict(os.environ, PATH=f"{sys.prefix}/bin:{os.environ.get('PATH', '')}", VIRTUAL_ENV=sys.prefix)
    log = open(args.root / "triton.log", "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv_, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    http = f"127.0.0.1:{ports[8000]}"
    metrics = f"http://127.0.0.1:{ports[8002]}/metrics"
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://{http}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                print((args.root / "triton.log").read_text()[-3000:])
                return 1
            time.sleep(0.05)
        print(f"ready {time.monotonic() - t0:.2f}s after start", flush=True)
        client = th.InferenceServerClient(http)
        cfg = client.get_model_config("tiny")
        print("auto-completed config: backend", cfg["backend"], "max_batch_size", cfg["max_batch_size"],
              "inputs", [(i["name"], i["data_type"], i["dims"]) for i in cfg["input"]],
              "outputs", [(o["name"], o["data_type"], o["dims"]) for o in cfg["output"]],
              "instance kind", cfg["instance_group"][0]["kind"], flush=True)

        def expect(x):
            logits = x @ w + b
            e = np.exp(logits - logits.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)

        def request(c, x):
            inp = th.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            return c.infer("tiny", [inp]).as_numpy("probs")

        rng = np.random.default_rng(1)
        x4 = rng.standard_normal((4, w.shape[0])).astype(np.float32)
        print(f"batch of 4: max abs error vs numpy {float(np.abs(request(client, x4) - expect(x4)).max()):.1e}")
        x1 = x4[:1]
        t = time.perf_counter()
        for _ in range(500):
            request(client, x1)
        dt = time.perf_counter() - t
        print(f"500 sequential batch-1 requests: {500 / dt:.0f} req/s, {dt / 500 * 1000:.2f} ms mean", flush=True)

        xs = [rng.standard_normal((1, w.shape[0])).astype(np.float32) for _ in range(50)]
        local, clients = threading.local(), []

        def one(i):
            if not hasattr(local, "c"):
                local.c = th.InferenceServerClient(http)
                clients.append(local.c)
            return i, request(local.c, xs[i % len(xs)])

        with cf.ThreadPoolExecutor(8) as ex:
            list(ex.map(one, range(64)))
            req0, exec0 = _metric(metrics, "nv_inference_request_success"), _metric(metrics, "nv_inference_exec_count")
            t = time.perf_counter()
            results = list(ex.map(one, range(2000)))
            dt = time.perf_counter() - t
        time.sleep(1.2)  # metrics refresh
        reqs = _metric(metrics, "nv_inference_request_success") - req0
        execs = _metric(metrics, "nv_inference_exec_count") - exec0
        err = max(float(np.abs(r - expect(xs[i % len(xs)])).max()) for i, r in results)
        print(f"2000 batch-1 requests from 8 threads: {2000 / dt:.0f} req/s, {reqs:.0f} requests in {execs:.0f} "
              f"executions (dynamic batching), max abs error vs numpy {err:.1e}", flush=True)
        for c in [client, *clients]:
            c.close()  # Triton's graceful stop waits for open HTTP connections
    finally:
        t = time.monotonic()
        proc.terminate()
        try:
            rc = proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            rc = proc.wait()
        print(f"SIGTERM -> exit {rc} in {time.monotonic() - t:.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
