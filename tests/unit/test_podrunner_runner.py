"""The runner loop against an in-memory API server, with real processes: the operator's rendered pod runs its
``fetch-model`` init container (``python -m modeldeploy fetch``, file:// URI) and a stand-in ``tritonserver``
(a small HTTP server answering Triton's health endpoints), and becomes Ready only once that server answers.
No cluster, no Triton; a few seconds."""

import copy
import io
import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modeldeploy.api.spec import parse_spec
from modeldeploy.render.triton import Owner, RenderOptions, render_children
from modeldeploy.sandbox.kubeapi import KubeHttpError
from modeldeploy.sandbox import podnet
from modeldeploy.sandbox.podrunner import claim, plan
from modeldeploy.sandbox.podrunner.runner import PodRunner

OPERATOR_SRC = str(Path(__file__).resolve().parents[2] / "operator")

FAKE_TRITON = textwrap.dedent("""\
    #!{python}
    # Stands in for tritonserver: checks the repository the runner prepared, then answers health checks.
    import http.server, os, sys, time
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    model = os.path.join(args["model-repository"], args["load-model"])
    config = open(os.path.join(model, "config.pbtxt")).read()
    assert 'backend: "python"' in config and "KIND_CPU" in config, config
    assert os.path.isfile(os.path.join(model, "1", "model.onnx")) and os.path.isfile(os.path.join(model, "1", "model.py"))
    started = time.monotonic()
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ready = time.monotonic() - started > {ready_after}
            code = 200 if self.path == "/v2/health/live" or (self.path in ("/v2/health/ready", "/v2/models/digits/ready") and ready) else 400
            self.send_response(code); self.end_headers()
        def log_message(self, *a): pass
    print("fake triton serving", model, flush=True)
    http.server.HTTPServer((args["http-address"], int(args["http-port"])), H).serve_forever()
""")


class FakeApi:
    """Just enough of the API server for one node: pods, ConfigMaps, the node and its Lease."""

    def __init__(self):
        self.pods, self.configmaps, self.nodes, self.leases = {}, {}, {}, {}
        self.status_patches = []

    def request(self, method, path, body=None, content_type="application/json", ok=()):
        path = path.split("?")[0]
        parts = path.strip("/").split("/")
        if path == "/api/v1/pods":
            return 200, {"items": [copy.deepcopy(p) for p in self.pods.values()]}
        if path.startswith("/api/v1/nodes"):
            name = parts[3] if len(parts) > 3 else body["metadata"]["name"]
            if method == "POST":
                self.nodes[name] = copy.deepcopy(body)
            elif method == "PATCH":
                _merge(self.nodes[name], body)
            elif method == "DELETE":
                self.nodes.pop(name, None)
            return 200, copy.deepcopy(self.nodes.get(name, {}))
        if "leases" in parts:
            name = parts[-1]
            if method == "PATCH" and name not in self.leases:
                return self._missing(method, path, ok)
            self.leases[body["metadata"]["name"] if method == "POST" else name] = body
            return 200, body
        ns, kind, name = parts[3], parts[4], parts[5]
        if kind in ("configmaps", "secrets"):  # both kept in one table, keyed by (namespace, name)
            cm = self.configmaps.get((ns, name))
            return (200, copy.deepcopy(cm)) if cm else self._missing(method, path, ok)
        if kind == "pods":
            pod = self.pods.get((ns, name))
            if pod is None:
                return self._missing(method, path, ok)
            if method == "DELETE":
                del self.pods[(ns, name)]
                return 200, {}
            if parts[-1] == "status":
                self.status_patches.append(copy.deepcopy(body["status"]))
                pod["status"] = {**pod.get("status", {}), **body["status"]}
            else:
                _merge(pod, body)
            return 200, copy.deepcopy(pod)
        raise AssertionError(f"unexpected {method} {path}")

    def get(self, path):
        return self.request("GET", path)[1]

    @staticmethod
    def _missing(method, path, ok):
        if 404 in ok:
            return 404, {}
        raise KubeHttpError(method, path, 404, "not found")


def _merge(target, patch):
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = v


def operator_pod(uri):
    md = {"model": {"uri": uri, "format": "onnx", "name": "digits", "version": 1},
          "serving": {"maxBatchSize": 8}, "resources": {"gpu": {"count": 1}}}
    source, cm, _, deployment = render_children(Owner("digits", "t-unit", "uid-1"), parse_spec("digits", md),
                                                 "rev1", RenderOptions())
    spec = copy.deepcopy(deployment["spec"]["template"]["spec"])
    spec.update(nodeName="local-0", restartPolicy="Always")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec["containers"][0][probe]["periodSeconds"] = 1  # the rendered 5-10 s would only slow the test
    pod = {"metadata": {"name": "digits-stable-abc", "namespace": "t-unit", "uid": "0123456789abcdef",
                        "annotations": {}}, "spec": spec,
           "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                                                          "lastTransitionTime": "2026-11-28T00:00:00Z"}]}}
    return pod, cm, source


def host_config(tmp_path):
    triton = tmp_path / "tritonserver"
    triton.write_text(FAKE_TRITON.format(python=sys.executable, ready_after=1.0))
    triton.chmod(0o755)
    return plan.HostConfig(pods_root=tmp_path / "pods", pvc_root=tmp_path / "pvc", triton_binary=triton,
                           backend_dir=tmp_path / "backends", python=sys.executable,
                           base_env={"PYTHONPATH": OPERATOR_SRC, "PATH": "/usr/bin:/bin"})


@pytest.fixture
def setup(tmp_path):
    """The runner in the fallback without a pod network: 127.0.0.1 and mapped ports."""
    api = FakeApi()
    runner = PodRunner(api, host_config(tmp_path), node_name="local-0", period=0.1, out=io.StringIO())
    yield api, runner, tmp_path
    runner.shutdown()


class RecordedAddresses:
    """Stands in for `ip addr` on lo: the test's range is inside 127.0.0.0/8, where every address already
    answers, so processes really bind their pod's address; this only records what the runner asked for."""

    def __init__(self):
        self.present, self.added, self.removed = set(), [], []

    def add(self, ip):
        self.added.append(ip)
        self.present.add(ip)

    def remove(self, ip):
        self.removed.append(ip)
        self.present.discard(ip)

    def addresses(self):
        return sorted(self.present)


@pytest.fixture
def podnet_setup(tmp_path):
    """The runner with a pod range: a random /24 of 127.0.0.0/8, so concurrent test runs do not collide."""
    import random

    pod_range = podnet.PodRange.parse(f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.0/24")
    addresses = RecordedAddresses()
    api = FakeApi()
    runner = PodRunner(api, host_config(tmp_path), node_name="local-0", period=0.1, out=io.StringIO(),
                       pod_range=pod_range, addresses=addresses)
    yield api, runner, tmp_path, addresses
    runner.shutdown()


def run_until(runner, check, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        runner.sync_once()
        if check():
            return True
        time.sleep(0.1)
    return False


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


@pytest.mark.timeout(60)
def test_operator_pod_runs_and_is_ready_only_when_triton_answers(setup):
    api, runner, tmp = setup
    model = tmp / "src" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(b"not really onnx, the fake triton does not care")
    pod, cm, source = operator_pod(f"file://{model}")
    api.pods[("t-unit", pod["metadata"]["name"])] = pod
    api.configmaps[("t-unit", cm["metadata"]["name"])] = cm
    api.configmaps[("t-unit", source["metadata"]["name"])] = source
    api.configmaps[("t-unit", "digits-agent-keys")] = {"metadata": {"name": "digits-agent-keys"},
                                                        "data": {"token": "dDBrZW4=", "triton-key": "azN5"}}
    runner.register_node()
    assert "kwok.x-k8s.io/node" not in api.nodes["local-0"]["metadata"]["annotations"]
    assert api.nodes["local-0"]["status"]["conditions"][-1]["type"] == "Ready"
    assert api.leases["local-0"]["spec"]["holderIdentity"] == "local-0"

    stored = lambda: api.pods[("t-unit", "digits-stable-abc")]  # noqa: E731
    assert run_until(runner, lambda: ready(stored())), runner.out.getvalue()
    pod = stored()
    ports = json.loads(pod["metadata"]["annotations"][claim.PORTS_ANNOTATION])
    assert sorted(ports) == ["8000", "8001", "8002", "8009"]  # Triton's and the model agent's
    assert pod["status"]["phase"] == "Running"
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0 and init["state"]["terminated"]["reason"] == "Completed"
    assert {c["type"]: c for c in pod["status"]["conditions"]}["PodScheduled"]["lastTransitionTime"] == \
        "2026-11-28T00:00:00Z"
    # never Ready before the stand-in answered /v2/health/ready (it refuses for its first second)
    readiness = [ready({"status": s}) for s in api.status_patches if "conditions" in s]
    assert readiness[-1] and not any(readiness[:-1])
    assert any(s["containerStatuses"][0]["state"].get("running") and not s["containerStatuses"][0]["ready"]
               for s in api.status_patches)
    # the status is written only when it changes
    count = len(api.status_patches)
    for _ in range(5):
        runner.sync_once()
    assert len(api.status_patches) == count

    # deletion: processes stopped, pod removed with grace 0
    pid = runner.pods["0123456789abcdef"].procs["triton"].pid
    stored()["metadata"]["deletionTimestamp"] = "2026-11-28T00:01:00Z"
    stored()["metadata"]["deletionGracePeriodSeconds"] = 5
    assert run_until(runner, lambda: ("t-unit", "digits-stable-abc") not in api.pods, 15)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert runner.pods == {}


@pytest.mark.timeout(60)
def test_failed_fetch_shows_init_error_with_the_fetchers_message(setup):
    api, runner, tmp = setup
    pod, cm, source = operator_pod(f"file://{tmp}/missing/model.onnx")
    api.pods[("t-unit", pod["metadata"]["name"])] = pod
    api.configmaps[("t-unit", cm["metadata"]["name"])] = cm
    api.configmaps[("t-unit", source["metadata"]["name"])] = source
    api.configmaps[("t-unit", "digits-agent-keys")] = {"metadata": {"name": "digits-agent-keys"},
                                                        "data": {"token": "dDBrZW4=", "triton-key": "azN5"}}
    stored = lambda: api.pods[("t-unit", "digits-stable-abc")]  # noqa: E731

    def failed_twice():
        st = stored()["status"].get("initContainerStatuses") or [{}]
        return st[0].get("restartCount", 0) >= 1 and "waiting" in st[0].get("state", {})

    assert run_until(runner, failed_twice), runner.out.getvalue()
    st = stored()["status"]
    init = st["initContainerStatuses"][0]
    assert init["state"]["waiting"]["reason"] == "CrashLoopBackOff"      # Init:CrashLoopBackOff
    term = init["lastState"]["terminated"]
    assert term["exitCode"] == 1 and term["reason"] == "Error"
    assert "missing/model.onnx" in term["message"]
    assert st["phase"] == "Pending" and not ready(stored())
    first = next(s for s in api.status_patches if (s.get("initContainerStatuses") or [{}])[0].get("state", {}).get("terminated"))
    assert first["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Error"   # Init:Error
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}


@pytest.mark.timeout(30)
def test_unrunnable_image_waits_with_reason(setup):
    api, runner, _ = setup
    pod = {"metadata": {"name": "other", "namespace": "t-unit", "uid": "u-other", "annotations": {}},
           "spec": {"nodeName": "local-0", "containers": [{"name": "c", "image": "busybox:1.36"}]}}
    api.pods[("t-unit", "other")] = pod
    runner.sync_once()
    st = api.pods[("t-unit", "other")]["status"]["containerStatuses"][0]
    assert st["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    assert runner.pods["u-other"].procs == {}


def test_checks_import_without_triton_installed():
    import modeldeploy.sandbox.podrunner.triton_check as triton_check

    assert callable(triton_check.main)


def add_operator_pod(api, uri, name, uid):
    pod, cm, source = operator_pod(uri)
    pod["metadata"].update(name=name, uid=uid)
    api.pods[("t-unit", name)] = pod
    for obj in (cm, source):
        api.configmaps[("t-unit", obj["metadata"]["name"])] = obj
    api.configmaps[("t-unit", "digits-agent-keys")] = {"metadata": {"name": "digits-agent-keys"},
                                                       "data": {"token": "dDBrZW4=", "triton-key": "azN5"}}
    return pod


def cmdline(pid):
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


@pytest.mark.timeout(120)
def test_pods_get_their_own_address_and_keep_serving_through_pre_stop(podnet_setup):
    import urllib.request

    api, runner, tmp, addresses = podnet_setup
    model = tmp / "src" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(b"not really onnx")
    for name in ("a", "b"):
        add_operator_pod(api, f"file://{model}", name, f"uid-{name}-0000000")
    runner.register_node()
    assert api.nodes["local-0"]["spec"]["podCIDR"] == runner.pod_range.cidr
    stored = lambda name: api.pods[("t-unit", name)]  # noqa: E731
    assert run_until(runner, lambda: ready(stored("a")) and ready(stored("b"))), runner.out.getvalue()

    ips = {name: stored(name)["status"]["podIP"] for name in ("a", "b")}
    assert len(set(ips.values())) == 2 and all(runner.pod_range.contains(ip) for ip in ips.values()), ips
    assert runner.pod_range.gateway not in ips.values()
    assert sorted(addresses.added) == sorted(ips.values())
    for name, ip in ips.items():
        assert claim.PORTS_ANNOTATION not in stored(name)["metadata"]["annotations"]   # no port mapping
        with urllib.request.urlopen(f"http://{ip}:8000/v2/health/ready", timeout=5) as resp:  # real port
            assert resp.status == 200
        agent = cmdline(runner.pods[f"uid-{name}-0000000"].procs["model-agent"].pid)
        assert agent[agent.index("--triton-url") + 1] == f"{ip}:8000", agent  # $(POD_IP) expanded
        assert f"--address={ip}" in agent and agent[agent.index("--port") + 1] == "8009", agent

    # Deleting a: the agent (no hook) is stopped at once, Triton only after its preStop sleep, still serving
    # meanwhile; the status is kept current while the pod terminates; then its address is released.
    stored("a")["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 4}}}
    stored("a")["metadata"].update(deletionTimestamp="2026-11-30T00:00:00Z", deletionGracePeriodSeconds=30)
    state = runner.pods["uid-a-0000000"]
    started = time.monotonic()
    runner.sync_once()
    assert state.term_at["triton"] - state.term_at["model-agent"] == pytest.approx(4.0, abs=0.5)
    assert "model-agent" in state.termed and "triton" not in state.termed
    assert run_until(runner, lambda: state.procs.get("model-agent") is None, 10)
    if "triton" not in state.termed:  # still in its preStop sleep (a loaded machine may take longer): serving
        assert state.procs["triton"].poll() is None
        with urllib.request.urlopen(f"http://{ips['a']}:8000/v2/health/ready", timeout=5) as resp:
            assert resp.status == 200
    agent_status = {c["name"]: c for c in stored("a")["status"]["containerStatuses"]}["model-agent"]
    assert "terminated" in agent_status["state"], agent_status
    assert run_until(runner, lambda: ("t-unit", "a") not in api.pods, 15)
    assert time.monotonic() - started >= 4.0
    assert addresses.removed == [ips["a"]]

    # a new pod gets a fresh address, not the one just released (round-robin)
    add_operator_pod(api, f"file://{model}", "c", "uid-c-0000000")
    assert run_until(runner, lambda: stored("c").get("status", {}).get("podIP"), 10)
    assert stored("c")["status"]["podIP"] not in ips.values()

    runner.shutdown()
    assert addresses.present == set(), addresses.present
