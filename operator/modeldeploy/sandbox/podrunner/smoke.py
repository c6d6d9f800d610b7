"""End-to-end check of the pod runner on a sandbox of its own (``python -m modeldeploy.sandbox.podrunner.smoke``).

What it does, and prints timings for: brings up a sandbox in ``--state-dir`` (never the default one)
with kwok-controller restricted to the simulated nodes; starts a PodRunner (node ``local-0``) in a
thread; builds a tiny ONNX classifier with the ``onnx`` helper API; applies the operator's own rendered
ConfigMap, Service and Deployment (``render_children``) for a ModelDeployment that points at it with a
``file://`` URI and is placed on the runner's node; waits until the pod is Ready (which only Triton's
``/v2/health/ready`` can make it), checks it was not Ready earlier, and runs inference on the pod's
remapped HTTP port. Then a second ModelDeployment with a missing model file must end in ``Init:Error``
with the fetcher's message; and a copy placed on a kwok node must still be simulated. Everything is
deleted, the runner stopped and the sandbox brought down.

Needs an interpreter with nvidia-pytriton, onnxruntime, onnx, numpy, tritonclient[http] and pyyaml,
and ``operator/`` on PYTHONPATH (see docs/podrunner.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from modeldeploy.api.spec import parse_spec
from modeldeploy.render.triton import Owner, RenderOptions, render_children
from modeldeploy.sandbox import cluster, tools
from modeldeploy.sandbox.kubeapi import KubeHttp
from modeldeploy.sandbox.podrunner import claim
from modeldeploy.sandbox.podrunner.runner import PodRunner, host_config

NS = "default"


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


def children(name: str, uri: str, local: bool) -> list[dict[str, Any]]:
    placement: dict[str, Any] = {}
    if local:
        placement = {"nodeSelector": {"modeldeploy.io/sandbox-pool": claim.POOL},
                     "tolerations": [{"key": claim.RUNNER_LABEL, "operator": "Exists", "effect": "NoSchedule"}]}
    md = {"model": {"uri": uri, "format": "onnx", "name": "tiny", "version": 1},
          "serving": {"maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [4, 8]}},
          "resources": {"gpu": {"count": 1}}, "replicas": 1, "placement": placement}
    return render_children(Owner(name, NS, f"uid-{name}"), parse_spec(name, md), "smoke00001", RenderOptions())


def apply(api: KubeHttp, objs: list[dict[str, Any]]) -> None:
    paths = {"ConfigMap": f"/api/v1/namespaces/{NS}/configmaps", "Service": f"/api/v1/namespaces/{NS}/services",
             "Deployment": f"/apis/apps/v1/namespaces/{NS}/deployments"}
    for obj in objs:
        obj = json.loads(json.dumps(obj))
        obj["metadata"].pop("ownerReferences", None)  # no ModelDeployment object here
        api.request("POST", paths[obj["kind"]], obj)


def pods_of(api: KubeHttp, name: str) -> list[dict[str, Any]]:
    sel = f"app.kubernetes.io/instance={name}"
    return api.get(f"/api/v1/namespaces/{NS}/pods?labelSelector={sel}").get("items", [])


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def wait(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, default=Path("/tmp/podrunner-sandbox"))
    parser.add_argument("--root", type=Path, default=Path("/tmp/podrunner-smoke"))
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up")
    args = parser.parse_args(argv)
    if args.state_dir.resolve() == cluster.sandbox_dir().resolve():
        parser.error("refusing to use the default sandbox; pass a --state-dir of its own")

    original = cluster.kwokctl_config

    def with_patch(*a, **kw):
        config = original(*a, **kw)
        config["componentsPatches"].append(claim.kwok_controller_patch())
        return config

    cluster.kwokctl_config = with_patch
    sandbox = cluster.Sandbox(state_dir=args.state_dir)
    t0 = time.monotonic()
    sandbox.up()
    print(f"sandbox up in {time.monotonic() - t0:.1f}s", flush=True)
    api = KubeHttp(sandbox.kubeconfig_path)
    runner = PodRunner(KubeHttp(sandbox.kubeconfig_path), host_config(args.root), node_name="local-0", gpus=2, out=sys.stdout)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop.is_set,), daemon=True)
    failures = []
    try:
        thread.start()
        def node_ready():
            code, node = api.request("GET", "/api/v1/nodes/local-0", ok=(404,))
            return code == 200 and any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in (node.get("status") or {}).get("conditions") or [])

        wait("node local-0 Ready", node_ready, 30)
        kwok_log = (sandbox.logs_dir / "kwok-controller.log").read_text(errors="replace")
        watch = next((json.loads(l) for l in kwok_log.splitlines() if '"Watch nodes"' in l), None)
        print(f"kwok-controller watches nodes with annotation selector: {watch and watch.get('annotation')!r}",
              flush=True)
        if not watch or watch.get("annotation") != claim.KWOK_NODE_SELECTOR:
            failures.append("kwok-controller does not select nodes by annotation")

        model = args.root / "models-src" / "model.onnx"
        w, b = build_model(model)
        t_create = time.monotonic()
        apply(api, children("tiny", f"file://{model}", local=True))
        timeline: list[tuple[float, str]] = []

        def observe():
            pods = pods_of(api, "tiny")
            if not pods:
                return None
            p = pods[0]
            local = json.loads((p["metadata"].get("annotations") or {}).get(claim.PORTS_ANNOTATION, "{}"))
            if local.get("8000") and not any("answered" in l for _, l in timeline):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{local['8000']}/v2/health/ready", timeout=1):
                        timeline.append((time.monotonic() - t_create, "triton /v2/health/ready answered 200"))
                except OSError:
                    pass
            st = p.get("status") or {}
            init = [s["state"] for s in st.get("initContainerStatuses") or []]
            main_ = [s["state"] for s in st.get("containerStatuses") or []]
            label = f"{st.get('phase')} init={[next(iter(s)) for s in init]} main={[next(iter(s)) for s in main_]} ready={ready(p)}"
            if not timeline or timeline[-1][1] != label:
                timeline.append((time.monotonic() - t_create, label))
            return p if ready(p) else None

        pod = wait("pod tiny Ready", observe, 180)
        for at, label in timeline:
            print(f"  +{at:6.2f}s {label}", flush=True)
        answered = next((at for at, l in timeline if "answered" in l), None)
        if answered is None or any("ready=True" in l and at < answered for at, l in timeline):
            failures.append("pod was Ready before Triton answered")
        print(f"pod {pod['metadata']['name']} on {pod['spec']['nodeName']} Ready "
              f"{time.monotonic() - t_create:.1f}s after the Deployment was created", flush=True)
        ports = json.loads(pod["metadata"]["annotations"][claim.PORTS_ANNOTATION])
        print(f"ports annotation: {ports}", flush=True)

        import numpy as np
        import tritonclient.http as th

        client = th.InferenceServerClient(f"127.0.0.1:{ports['8000']}")
        print("model config:", json.dumps(client.get_model_config("tiny"))[:400], flush=True)
        x = np.random.default_rng(1).standard_normal((3, w.shape[0])).astype(np.float32)
        inp = th.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("tiny", [inp]).as_numpy("probs")
        logits = x @ w + b
        ref = np.exp(logits - logits.max(1, keepdims=True))
        ref /= ref.sum(1, keepdims=True)
        err = float(np.abs(got - ref).max())
        print(f"inference on 127.0.0.1:{ports['8000']}: shape {got.shape}, max abs error vs numpy {err:.2e}", flush=True)
        if err > 1e-5:
            failures.append(f"inference error {err}")

        client.close()  # Triton's graceful stop waits for open HTTP connections (--exit-timeout-secs)

        # a model that cannot be fetched: Init:Error / Init:CrashLoopBackOff with the fetcher's cause
        apply(api, children("broken", f"file://{args.root}/nope/model.onnx", local=True))

        def init_failure():  # failed twice: now backing off (Init:CrashLoopBackOff), cause in lastState
            for p in pods_of(api, "broken"):
                for s in (p.get("status") or {}).get("initContainerStatuses") or []:
                    if (s["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff":
                        return p, s
            return None

        p, s = wait("broken pod's init crash loop", init_failure, 60)
        print(f"broken: phase={p['status']['phase']} init state={json.dumps(s['state'])[:300]} "
              f"lastState={json.dumps(s.get('lastState'))[:300]}", flush=True)
        if ready(p):
            failures.append("broken pod Ready")

        # the same kind of pod on a kwok node is still simulated (Ready at once, nothing runs)
        t_kwok = time.monotonic()
        apply(api, children("simulated", f"file://{model}", local=False))
        kp = wait("simulated pod Ready", lambda: next((q for q in pods_of(api, "simulated") if ready(q)), None), 60)
        print(f"simulated: on {kp['spec']['nodeName']} Ready {time.monotonic() - t_kwok:.1f}s after create "
              f"(kwok), no local ports annotation: {claim.PORTS_ANNOTATION not in (kp['metadata'].get('annotations') or {})}",
              flush=True)

        kubectl = [str(tools.ensure_kubectl()), "--kubeconfig", str(sandbox.kubeconfig_path)]
        print(subprocess.run([*kubectl, "get", "pods", "-o", "wide"], capture_output=True, text=True).stdout,
              flush=True)

        # deleting the Deployment stops Triton and removes the pod
        t_del = time.monotonic()
        for name in ("tiny", "broken", "simulated"):
            api.request("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}-stable",
                        {"propagationPolicy": "Foreground"})
        wait("pods gone", lambda: not any(pods_of(api, n) for n in ("tiny", "broken", "simulated")), 90)
        print(f"all pods gone {time.monotonic() - t_del:.1f}s after the Deployments were deleted; "
              f"runner processes left: {sum(len(s.procs) for s in runner.pods.values())}", flush=True)
    finally:
        stop.set()
        thread.join(timeout=60)
        if not args.keep:
            sandbox.down()
    print("FAILED: " + "; ".join(failures) if failures else "smoke OK", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
