"""``modeldeploy demo``: the README's first command.

Brings the sandbox up (building the control plane on first use), installs the CRD, starts the operator
in the background, applies examples/digits.yaml, and follows it to Ready, printing each status change
and where the scheduler put each Triton pod. The sandbox and operator stay up afterwards so the user
can keep exploring; ``modeldeploy demo --down`` (``make down``) stops both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from modeldeploy.api import constants as c

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "digits.yaml"


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _operator_pidfile(state_dir: Path) -> Path:
    return state_dir / "operator.pid"


def start_operator(kubeconfig: Path, state_dir: Path) -> Path:
    """Start ``modeldeploy operator`` detached, unless one started by the demo still runs."""
    pidfile, log = _operator_pidfile(state_dir), state_dir / "operator.log"
    if pidfile.exists() and _pid_alive(int(pidfile.read_text())):
        _say(f"operator already running (pid {pidfile.read_text().strip()}), log {log}")
        return log
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT / "operator")}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    _say(f"operator started (pid {proc.pid}), log {log}")
    return log


def stop_operator(state_dir: Path) -> None:
    pidfile = _operator_pidfile(state_dir)
    if pidfile.exists():
        pid = int(pidfile.read_text())
        if _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not _pid_alive(pid):
                    break
                time.sleep(0.2)
            else:
                os.kill(pid, signal.SIGKILL)
            _say(f"operator (pid {pid}) stopped")
        pidfile.unlink()


def _follow(kubectl, name: str, timeout: float = 180) -> bool:
    """Print each status change of ModelDeployment ``name`` and where its pods land, until Ready."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubectl.kubeconfig)
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    deadline, last, seen_pods = time.monotonic() + timeout, None, set()
    while time.monotonic() < deadline:
        md = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, "default", c.PLURAL, name)
        status = md.get("status") or {}
        ready = next((x for x in status.get("conditions", []) if x["type"] == c.COND_READY), {})
        line = (f"{name}: phase={status.get('phase', '-')} ready={status.get('readyReplicas', 0)}/"
                f"{md['spec'].get('replicas', 1)} revision={status.get('currentRevision', '-')} "
                f"({ready.get('reason', '-')}: {ready.get('message', '')})")
        if line != last:
            _say(line)
            last = line
        for pod in core.list_namespaced_pod("default", label_selector=f"{c.LABEL_INSTANCE}={name}").items:
            if pod.spec.node_name and pod.metadata.name not in seen_pods:
                seen_pods.add(pod.metadata.name)
                product = core.read_node(pod.spec.node_name).metadata.labels.get(c.GPU_PRODUCT_LABEL, "no GPU")
                _say(f"  pod {pod.metadata.name} scheduled on {pod.spec.node_name} ({product})")
        if status.get("phase") == c.PHASE_READY and status.get("observedGeneration") == md["metadata"]["generation"]:
            return True
        time.sleep(1)
    return False


class _Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path):
        self.binary, self.kubeconfig = str(binary), str(kubeconfig)

    def __call__(self, *args: str, input: str | None = None) -> str:
        out = subprocess.run([self.binary, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True,
                             input=input)
        if out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout


def run_demo(down: bool = False) -> int:
    from modeldeploy.sandbox.cluster import Sandbox
    from modeldeploy.sandbox.crd import install_crd
    from modeldeploy.sandbox.tools import ensure_kubectl

    box = Sandbox()
    state_dir = Path(box.kubeconfig_path).parent
    if down:
        stop_operator(state_dir)
        box.down()
        return 0

    _say("step 1/5: local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok GPU nodes)")
    if not box.is_up():
        box.up()
    kubectl = _Kubectl(ensure_kubectl(), Path(box.kubeconfig_path))
    _say("nodes:\n" + kubectl("get", "nodes", "-L", c.GPU_PRODUCT_LABEL))

    _say("step 2/5: install the ModelDeployment CRD")
    install_crd(box.kubeconfig_path)

    _say("step 3/5: start the operator")
    log = start_operator(Path(box.kubeconfig_path), state_dir)

    _say(f"step 4/5: kubectl apply -f {EXAMPLE.relative_to(ROOT)} (on simulated kwok GPU nodes)")
    kubectl("apply", "-n", "default", "-f", str(EXAMPLE))
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
    if not _follow(kubectl, name):
        _say(f"{name} did not become Ready in time; operator log: {log}")
        return 1
    print(kubectl("get", "pods", "-n", "default", "-o", "wide", "-l", f"{c.LABEL_INSTANCE}={name}"))

    _say("step 5/5: real inference: the digits CNN served by Triton, run by the sandbox's pod runner")
    ok = _serve_for_real(kubectl, box)
    print(kubectl("get", "modeldeployments", "-n", "default", "-o", "wide"))
    if not ok:
        _say(f"operator log: {log}")
        return 1
    _say(f"explore:  export KUBECONFIG={box.kubeconfig_path} PATH={Path(kubectl.binary).parent}:$PATH")
    _say("          kubectl describe md digits-live; kubectl explain md.spec")
    _say("stop:     make down")
    return 0


def _serve_for_real(kubectl, box) -> bool:
    """Build the digits model, deploy it onto the runner node, and classify the held-out split."""
    import numpy as np
    from kubernetes import client, config

    from modeldeploy.models.digits import build
    from modeldeploy.sandbox.examples import classify_digits, digits_on_runner, file_sha256, local_http_port

    api = config.new_client_from_config(config_file=kubectl.kubeconfig)
    core = client.CoreV1Api(api)
    try:
        core.read_node("local-0")
    except client.ApiException:
        _say("no pod runner in this sandbox (nvidia-pytriton missing): skipping real inference")
        return False
    out = Path(box.kubeconfig_path).parent / "digits-model"
    _say("building the digits model (numpy CNN on scikit-learn's bundled digits, exported to ONNX)")
    report = build(out)
    how = "cached" if report["cached"] else "trained in {:.1f}s".format(report["train_seconds"])
    _say(f"model: held-out accuracy {report['accuracy']:.2%} (numpy), {report['size_bytes']} bytes, {how}")
    model = out / "model.onnx"
    body = digits_on_runner("digits-live", model, sha256=file_sha256(model))
    kubectl("apply", "-n", "default", "-f", "-", input=yaml.safe_dump(body))
    if not _follow(kubectl, "digits-live", timeout=300):
        return False
    pod = next(p for p in core.list_namespaced_pod("default", label_selector=f"{c.LABEL_INSTANCE}=digits-live").items
               if p.metadata.deletion_timestamp is None)
    url = f"127.0.0.1:{local_http_port(pod.metadata.annotations)}"
    data = np.load(out / "digits_test.npz")
    x, y = data["x_test"], data["y_test"]
    predictions = classify_digits(url, x)
    _say(f"Triton at {url} (pod {pod.metadata.name}) classified {len(x)} held-out digits: "
         f"accuracy {float((predictions == y).mean()):.2%}")
    _say(f"first ten: predicted {predictions[:10].tolist()}, true {y[:10].tolist()}")
    return True
