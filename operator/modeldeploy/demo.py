"""``modeldeploy demo``: the README's first command.

Brings the sandbox up (building the control plane on first use), installs the CRD, starts the operator
in the background, applies examples/digits.yaml, and follows it to Ready, printing each status change
and where the scheduler put each Triton pod. Then real inference: the digits CNN served by Triton on the
pod runner's node, reached the way a user's request goes (through the sandbox's Gateway API front door to the
ModelDeployment's Service, host ``<service>.<namespace>``), and the same ModelDeployment compressed by the
operator's Job (pruning + INT8, gated on accuracy), rolled out and queried again. The sandbox and operator stay up afterwards so the user
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

from modeldeploy.sandbox.processes import pid_alive

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "digits.yaml"
NAMESPACE = "default"
COMPONENT = c.COMPONENT_COMPRESSION
LIVE = "digits-live"
#: Step 6's recipe (test_compression.py's PASSING, 20 timed runs): 50% channel pruning + fine-tune, INT8 static QDQ,
#: gate 1 pt below FP32, the smallest passing variant served.
RECIPE = {"pruning": {"amount": 0.5, "fineTuneEpochs": 2}, "quantization": {"mode": "int8-static"},
          "evaluation": {"dataset": "builtin://digits", "maxAccuracyDrop": 1, "runs": 20}, "select": "smallest"}


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _operator_pidfile(state_dir: Path) -> Path:
    return state_dir / "operator.pid"


def start_operator(kubeconfig: Path, state_dir: Path, prometheus_url: str | None = None,
                   metrics_address: str | None = None) -> Path:
    """Start ``modeldeploy operator`` detached (told where the sandbox's Prometheus is, serving its own
    metrics where that Prometheus scrapes them), unless one started by the demo still runs."""
    pidfile, log = _operator_pidfile(state_dir), state_dir / "operator.log"
    if pidfile.exists() and pid_alive(int(pidfile.read_text())):
        _say(f"operator already running (pid {pidfile.read_text().strip()}), log {log}")
        return log
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT / "operator")}
    if prometheus_url:
        env["MODELDEPLOY_PROMETHEUS_URL"] = prometheus_url
    if metrics_address:
        env["MODELDEPLOY_METRICS_ADDRESS"] = metrics_address
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator", "--no-leader-election"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    _say(f"operator started (pid {proc.pid}), log {log}")
    return log


def stop_operator(state_dir: Path) -> None:
    pidfile = _operator_pidfile(state_dir)
    if pidfile.exists():
        pid = int(pidfile.read_text())
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not pid_alive(pid):
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

    _say("step 1/8: local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok GPU nodes)")
    if not box.is_up():
        box.up()
    kubectl = _Kubectl(ensure_kubectl(), Path(box.kubeconfig_path))
    _say("nodes:\n" + kubectl("get", "nodes", "-L", c.GPU_PRODUCT_LABEL))

    _say("step 2/8: install the ModelDeployment CRD")
    install_crd(box.kubeconfig_path)

    _say("step 3/8: start the operator")
    log = start_operator(Path(box.kubeconfig_path), state_dir, box.prometheus_url, box.operator_metrics_address)

    _say(f"step 4/8: kubectl apply -f {EXAMPLE.relative_to(ROOT)} (on simulated kwok GPU nodes)")
    kubectl("apply", "-n", "default", "-f", str(EXAMPLE))
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
    if not _follow(kubectl, name):
        _say(f"{name} did not become Ready in time; operator log: {log}")
        return 1
    print(kubectl("get", "pods", "-n", "default", "-o", "wide", "-l", f"{c.LABEL_INSTANCE}={name}"))

    _say("step 5/8: real inference: the digits CNN served by Triton, run by the sandbox's pod runner, "
         + (f"through the gateway {box.gateway_url}" if box.gateway_url else "on the pod's port (no gateway)"))
    ok = _serve_for_real(kubectl, box)
    print(kubectl("get", "modeldeployments", "-n", "default", "-o", "wide"))
    if not ok:
        _say(f"operator log: {log}")
        return 1

    _say(f"step 6/8: compression before serving: the operator runs a Job that prunes and quantizes {LIVE}, "
         "gates the variants on accuracy and rolls out the chosen one")
    if not _compress_for_real(kubectl, box):
        _say(f"operator log: {log}")
        return 1
    if not _alert_for_real(kubectl, box):
        _say(f"operator log: {log}")
        return 1

    from modeldeploy import demo_autoscale, demo_canary

    _say("step 7/8: canary rollout: version 2 promoted step by step on Prometheus' verdict, version 3 (failing) "
         "rolled back by itself")
    if not demo_canary.run(kubectl, box, NAMESPACE):
        _say(f"operator log: {log}")
        return 1
    _say("step 8/8: autoscaling: a 5x step in load through the gateway, replicas follow Triton's own metrics")
    if not demo_autoscale.run(kubectl, box, NAMESPACE):
        _say(f"operator log: {log}")
        return 1
    _say(f"explore:  export KUBECONFIG={box.kubeconfig_path} PATH={Path(kubectl.binary).parent}:$PATH")
    if box.gateway_url:
        _say(f"          curl -H 'Host: {LIVE}.{NAMESPACE}' {box.gateway_url}/v2/models/digits  "
             "# Gateway gateway-system/sandbox; HTTPRoutes attach to it")
    _say(f"          kubectl describe md {LIVE}; kubectl get md {LIVE} -o jsonpath='{{.status.compression}}'")
    _say(f"          kubectl get jobs,configmaps -l {c.LABEL_COMPONENT}={COMPONENT}; kubectl explain md.spec")
    _say("stop:     make down")
    return 0


UNPLACEABLE = "no-such-gpu"


def _alert_for_real(kubectl, box, timeout: float = 120) -> bool:
    """Monitoring: a ModelDeployment asking for a GPU product no node has fires ModelDeploymentNotReady
    through the sandbox's Prometheus (the operator's metrics, the chart's rules) and Alertmanager."""
    from modeldeploy.sandbox import alertmanager

    if not (box.prometheus_url and box.alertmanager_url):
        _say("monitoring: skipped (no Prometheus or Alertmanager in this sandbox)")
        return True
    _say(f"monitoring: Prometheus {box.prometheus_url}, Alertmanager {box.alertmanager_url}; "
         f"a ModelDeployment {UNPLACEABLE} asks for a GPU product that no node has")
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"name": UNPLACEABLE}
    body["spec"]["replicas"] = 1
    body["spec"]["resources"]["gpu"]["product"] = "NVIDIA-B300-SXM6-AC"
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(body))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            firing = alertmanager.get_alerts(box.alertmanager_url, 'alertname="ModelDeploymentNotReady"',
                                             f'modeldeployment="{UNPLACEABLE}"')
            if firing:
                annotations = firing[0].get("annotations") or {}
                _say(f"alert firing: ModelDeploymentNotReady ({firing[0]['labels'].get('severity')}): "
                     f"{annotations.get('description', annotations.get('summary', ''))} [{annotations.get('sandbox', '')}]")
                return True
            time.sleep(2)
        _say(f"no ModelDeploymentNotReady alert for {UNPLACEABLE} within {timeout:.0f}s")
        return False
    finally:
        kubectl("delete", "modeldeployment", UNPLACEABLE, "-n", NAMESPACE, "--wait=false")


def _model_dir(box) -> Path:
    return Path(box.kubeconfig_path).parent / "digits-model"


def _serving_pod(core, name: str, revision: str | None = None):
    """A running Triton pod of ``name`` (of ``revision`` when given) that has an address."""
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector=f"{c.LABEL_INSTANCE}={name}").items:
        labels = pod.metadata.labels or {}
        if (pod.metadata.deletion_timestamp is None and pod.status.pod_ip
                and (revision is None or labels.get(c.LABEL_REVISION) == revision)):
            return pod
    return None


def _endpoint(core, box, name: str, revision: str | None) -> tuple[str, str | None, str]:
    """(host:port, Host header, how to say it): the sandbox gateway with the Service's host; without a pod
    network (no gateway), the pod's mapped loopback port."""
    import json

    from modeldeploy.render import names
    from modeldeploy.sandbox.examples import gateway_target
    from modeldeploy.sandbox.podrunner import claim

    if box.gateway_url:
        url, host = gateway_target(box.gateway_url, names.service_name(name), NAMESPACE)
        return url, host, f"the gateway {box.gateway_url} (Host: {host}, Service {name})"
    pod = _serving_pod(core, name, revision)
    if pod is None:
        raise RuntimeError(f"no running Triton pod of {name} (revision {revision or 'any'})")
    ports = json.loads((pod.metadata.annotations or {}).get(claim.PORTS_ANNOTATION) or "{}")
    url = f"127.0.0.1:{ports.get(str(c.HTTP_PORT), c.HTTP_PORT)}"
    return url, None, f"Triton at {url} (pod {pod.metadata.name}; no gateway without a pod network)"


def _classify(core, box, name: str, revision: str | None = None):
    """Classify the held-out split through Triton; returns the accuracy."""
    import numpy as np

    from modeldeploy.sandbox.examples import classify_digits, wait_routed

    url, host, where = _endpoint(core, box, name, revision)
    if host:
        wait_routed(url, "digits", host)  # the endpoint reaches the gateway a moment after the pod is Ready
    data = np.load(_model_dir(box) / "digits_test.npz")
    x, y = data["x_test"], data["y_test"]
    predictions = classify_digits(url, x, host=host)
    accuracy = float((predictions == y).mean())
    _say(f"{where} classified {len(x)} held-out digits: accuracy {accuracy:.2%}")
    _say(f"first ten: predicted {predictions[:10].tolist()}, true {y[:10].tolist()}")
    return accuracy


def _serve_for_real(kubectl, box) -> bool:
    """Build the digits model, deploy it onto the runner node, and classify the held-out split."""
    from kubernetes import client, config

    from modeldeploy.models.digits import build
    from modeldeploy.sandbox.examples import digits_on_runner, file_sha256

    api = config.new_client_from_config(config_file=kubectl.kubeconfig)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    try:
        core.read_node("local-0")
    except client.ApiException:
        _say("no pod runner in this sandbox (nvidia-pytriton missing): skipping real inference")
        return False
    out = _model_dir(box)
    _say("building the digits model (numpy CNN on scikit-learn's bundled digits, exported to ONNX)")
    report = build(out)
    how = "cached" if report["cached"] else "trained in {:.1f}s".format(report["train_seconds"])
    _say(f"model: held-out accuracy {report['accuracy']:.2%} (numpy), {report['size_bytes']} bytes, {how}")
    model = out / "model.onnx"
    try:  # an earlier demo run left step 6's recipe: serve the original model first, as a fresh run does
        if custom.get_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, LIVE)["spec"].get("compression"):
            _say(f"{LIVE} still has spec.compression from an earlier run: removing it")
            kubectl("patch", "md", LIVE, "-n", NAMESPACE, "--type", "merge", "-p", '{"spec":{"compression":null}}')
    except client.ApiException as err:
        if err.status != 404:
            raise
    body = digits_on_runner(LIVE, model, sha256=file_sha256(model))
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(body))
    if not _follow(kubectl, LIVE, timeout=300):
        return False
    _classify(core, box, LIVE)
    return True


def _compress_for_real(kubectl, box, timeout: float = 420) -> bool:
    """Give the served model a model store and a recipe; follow the Job, show its variants, query the result."""
    import json

    from kubernetes import client, config

    from modeldeploy.render.compression_job import cache_name
    from modeldeploy.sandbox.examples import model_store, with_compression

    api = config.new_client_from_config(config_file=kubectl.kubeconfig)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    store = model_store(NAMESPACE)
    for obj in store:
        kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))
    claim_name = store[1]["metadata"]["name"]
    _say(f"model store: PersistentVolumeClaim {claim_name} (pre-bound to PersistentVolume {store[0]['metadata']['name']})")

    md = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, LIVE)
    compression = with_compression(md, RECIPE, claim_name=claim_name)["spec"]["compression"]
    patch = json.dumps({"spec": {"compression": compression}}, separators=(",", ":"))
    patched = json.loads(kubectl("patch", "md", LIVE, "-n", NAMESPACE, "--type", "merge", "-p", patch, "-o", "json"))
    generation = patched["metadata"]["generation"]
    _say("kubectl patch md {} --type merge: spec.compression = {}".format(
        LIVE, json.dumps(RECIPE, separators=(",", ":"))))
    _say(f"  + modelStore.claimName {claim_name}, job.placement on the runner node (sandbox tolerations)")

    deadline, start, seen_running, printed = time.monotonic() + timeout, time.monotonic(), False, set()
    while True:
        if time.monotonic() > deadline:
            _say(f"{LIVE} did not finish compressing and rolling out in {timeout:.0f}s")
            return False
        md = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, c.PLURAL, LIVE)
        status = md.get("status") or {}
        if (status.get("observedGeneration") or 0) < generation:  # the operator has not seen the recipe yet
            time.sleep(0.5)
            continue
        conditions = {x["type"]: x for x in status.get("conditions", [])}
        comp, cond = status.get("compression") or {}, conditions.get(c.COND_COMPRESSED, {})
        ready = conditions.get(c.COND_READY, {})
        seen_running = seen_running or comp.get("state") == "Running"
        line = f"job {comp.get('job', '-')}: state={comp.get('state', '-')}, Compressed={cond.get('status', '-')} "
        line += f"({cond.get('reason', '-')})" if cond.get("status") == "True" else \
            f"({cond.get('reason', '-')}: {cond.get('message', '')})"
        lines = [line]
        if cond.get("status") == "True":  # compressed: now the rollout of the chosen variant
            lines.append(f"rollout: phase={status.get('phase')} ready={status.get('readyReplicas', 0)}/"
                         f"{md['spec'].get('replicas', 1)} revision={status.get('currentRevision', '-')} "
                         f"({ready.get('reason', '-')})")
        for line in lines:
            if line not in printed:
                _say(f"  [{time.monotonic() - start:5.1f}s] {line}")
                printed.add(line)
        if cond.get("status") == "False":
            _say(f"compression stopped: {ready.get('message', cond.get('message'))}")
            return False
        if cond.get("status") == "True" and status.get("phase") == c.PHASE_READY:
            break
        time.sleep(0.5)

    if seen_running:
        job = client.BatchV1Api(api).read_namespaced_job(comp["job"], NAMESPACE)
        took = (job.status.completion_time - job.status.start_time).total_seconds() \
            if job.status.completion_time and job.status.start_time else None
        _say(f"Job {comp['job']} succeeded" + (f" in {took:.0f}s" if took is not None else "")
             + f"; result recorded in ConfigMap {cache_name(comp['key'])}, files in {claim_name}/{comp['key'][:12]}…/")
    else:
        _say(f"no Job ran: this model + recipe + image was compressed before (ConfigMap {cache_name(comp['key'])}); "
             f"to compute again: kubectl delete configmap {cache_name(comp['key'])}, then job {comp['job']}")
    _print_variants(comp)
    model = status["model"]
    _say(f"decision: {comp['message']}")
    _say(f"served model: {model['uri']} (sha256 {str(model.get('sha256'))[:12]})")
    chosen = next(v for v in comp["variants"] if v["name"] == comp["selected"])
    served = _classify(core, box, LIVE, status.get("currentRevision"))
    _say(f"served accuracy {served:.2%}; the Job measured {chosen['accuracy']:.2%} for {comp['selected']}, "
         f"FP32 {comp['baseline']['accuracy']:.2%}")
    return True


def _print_variants(comp) -> None:
    """status.compression as a table: FP32 first, then each variant."""
    base = comp.get("baseline") or {}
    header = ("variant", "bytes", "× smaller", "accuracy", "drop pt", "b1 ms", "b32 ms", "passed")
    rows = [("FP32 (input)", f"{base.get('sizeBytes', 0):,}", "1.00", f"{base.get('accuracy', 0):.2%}", "-",
             *(f"{(base.get('latencyMs') or {}).get(b, 0):.3f}" for b in ("1", "32")), "-")]
    for v in comp.get("variants") or []:
        if v.get("error"):
            rows.append((v["name"], "-", "-", "-", "-", "-", "-", f"no: {v['error'][:40]}"))
            continue
        lat = v.get("latencyMs") or {}
        rows.append((v["name"], f"{v.get('sizeBytes', 0):,}", f"{v.get('sizeRatio', 0):.2f}",
                     f"{v.get('accuracy', 0):.2%}", f"{v.get('accuracyDropPt', 0):.2f}",
                     *(f"{lat[b]:.3f}" if b in lat else "-" for b in ("1", "32")),
                     "yes" if v.get("passed") else "no"))
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  " + "  ".join(str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w) in
                              enumerate(zip(row, widths))) for row in (header, *rows)]
    print("\n".join(lines), flush=True)
