"""The model agent against a real ``tritonserver`` (the nvidia-pytriton wheel's CPU build) under load.

The repository is laid out as in the sandbox pod: the operator's ``config.pbtxt`` for the digits model
(adapted by the pod runner for the python backend), version 1 fetched with its shim; Triton started with
the operator's flags (explicit model control, strict readiness). The agent runs as its own process, as
the sidecar does. Three threads send version-less inference requests the whole time, while the agent
swaps to version 2 (another file) and then fails to swap to a broken version 3.

Asserted: no request fails, the Triton process is the same one throughout, version 2 answers after the
swap, version 1 is unloaded and its folder gone; after the failed swap version 2 still answers, the
failed version's folder is gone and Triton's strict readiness is back. The measured numbers are
printed (``pytest -s``) and quoted in docs/architecture.md.

Triton runs with the operator's own arguments (render/triton.py), its control API restricted to the key
of the pod's Secret; the agent holds that key and a token, and the swaps are signed PUTs, as in a pod.
A second test plays the outside caller of the security review: loading a model with a file override
(which would run code in the pod), unloading, reading configs over HTTP and gRPC all fail without the
key, while inference keeps working.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modeldeploy.adapters.agent import AgentClient
from modeldeploy.agent.sandbox import SHIM_ENV
from modeldeploy.api.agent_auth import TRITON_GRPC_KEY_HEADER, TRITON_KEY_ENV, TRITON_KEY_HEADER
from modeldeploy.sandbox.podrunner import triton

ROOT = Path(__file__).resolve().parents[2]
NAME = "digits"
TRITON_KEY = "k3y-only-the-agent-holds"
AGENT_TOKEN = "t0ken-of-the-operator"

try:
    WHEEL = triton.find_wheel()
    triton.prepare_backend_dir  # noqa: B018
    import numpy as np
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import tritonclient.grpc  # noqa: F401
    import tritonclient.http as th
except (triton.TritonNotFound, ImportError) as err:
    pytest.skip(f"needs the sandbox extras (nvidia-pytriton, onnxruntime, onnx, tritonclient[http,grpc]): {err}",
                allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def http_json(port: int, method: str, path: str, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data.strip().startswith((b"{", b"[")) else data
    finally:
        conn.close()


def wait_for(what, predicate, timeout, proc_checks=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, log in proc_checks:
            assert proc.poll() is None, f"{what}: process exited:\n{log.read_text()[-3000:]}"
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Load:
    """Threads sending version-less requests; every outcome recorded as (start, seconds, version, error)."""

    def __init__(self, url: str, x: np.ndarray, threads: int = 3):
        self.url, self.x = url, x
        self.events: list[tuple[float, float, str | None, str | None]] = []
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        client = th.InferenceServerClient(self.url, network_timeout=30)
        try:
            while not self.stop.is_set():
                inp = th.InferInput("input", list(self.x.shape), "FP32")
                inp.set_data_from_numpy(self.x)
                t = time.monotonic()
                try:
                    version, error = client.infer(NAME, [inp]).get_response()["model_version"], None
                except Exception as err:  # noqa: BLE001 - every failure counts
                    version, error = None, f"{type(err).__name__}: {err}"[:300]
                with self.lock:
                    self.events.append((t, time.monotonic() - t, version, error))
        finally:
            client.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def between(self, t0, t1):
        with self.lock:
            return [e for e in self.events if t0 <= e[0] <= t1]

    def run_for(self, requests: int, checks=(), timeout: float = 30) -> None:
        """Wait until ``requests`` more requests have been answered (or failed): a window of load that is the
        same on any CPU, where a sleep would be a few requests on a busy machine and many on an idle one."""
        with self.lock:
            target = len(self.events) + requests
        wait_for(f"{requests} more requests", lambda: len(self.events) >= target, timeout, checks)


class Probes:
    """Polls Triton's server readiness (what the pod's readiness probe asks) and the model's readiness."""

    def __init__(self, port: int):
        self.port, self.stop = port, threading.Event()
        self.results: list[tuple[float, int, int]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _status(self, path):
        try:
            return http_json(self.port, "GET", path)[0]
        except OSError:
            return 0

    def _run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            self.results.append((t, self._status("/v2/health/ready"), self._status(f"/v2/models/{NAME}/ready")))
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)

    def between(self, t0, t1):
        return [r for r in self.results if t0 <= r[0] <= t1]


def summary(label, events, probes):
    versions: dict = {}
    for e in events:
        versions[e[2]] = versions.get(e[2], 0) + 1
    failed = [e for e in events if e[3]]
    server_not_ready = sum(1 for _, s, _ in probes if s != 200)
    model_not_ready = sum(1 for _, _, m in probes if m != 200)
    line = (f"{label}: {len(events)} requests, {len(failed)} failed, by version {versions}, "
            f"max latency {max((e[1] for e in events), default=0):.2f}s; /v2/health/ready not 200 in "
            f"{server_not_ready}/{len(probes)} probes, /v2/models/{NAME}/ready not 200 in {model_not_ready}")
    print(line, flush=True)
    return failed


@pytest.fixture
def pod(tmp_path):
    """A Triton serving digits version 1 as in the sandbox pod, and the agent beside it."""
    from modeldeploy.api.spec import parse_spec
    from modeldeploy.models import digits
    from modeldeploy.render.config_pbtxt import render_config_pbtxt
    from modeldeploy.render.triton import Owner, RenderOptions, render_deployment
    from modeldeploy.sandbox.podrunner import plan

    report = digits.build()
    store = tmp_path / "store"
    store.mkdir()
    v1 = store / "digits-1.onnx"
    shutil.copyfile(report["model_path"], v1)
    model = onnx.load(str(v1))  # version 2: the same network, another file
    model.doc_string = "digits, re-saved as version 2"
    v2 = store / "digits-2.onnx"
    onnx.save(model, str(v2))
    v3 = store / "digits-3.onnx"
    v3.write_bytes(b"not an onnx model")

    repo = tmp_path / "models"
    (repo / NAME / "1").mkdir(parents=True)
    shutil.copyfile(v1, repo / NAME / "1" / "model.onnx")  # what the fetch-model init container does
    for rel in triton.shim_files({"1": os.listdir(repo / NAME / "1")}):  # what the pod runner does
        shutil.copyfile(triton.SHIM_MODEL, repo / NAME / rel)
    spec = parse_spec(NAME, {"model": {"uri": v1.as_uri(), "format": "onnx", "name": NAME, "version": 1},
                             "serving": {"maxBatchSize": 8}, "resources": {"gpu": {"count": 1}}})
    (repo / NAME / "config.pbtxt").write_text(triton.adapt_config_pbtxt(render_config_pbtxt(spec)))

    ports = {8000: free_port(), 8001: free_port(), 8002: free_port()}
    # the operator's Triton arguments, with the repository moved here and the key expanded as the kubelet does
    rendered = render_deployment(Owner(NAME, "ns", "uid"), spec, "rev", RenderOptions())
    args = rendered["spec"]["template"]["spec"]["containers"][0]["args"]
    args = [plan.translate_arg(plan.expand(a, {TRITON_KEY_ENV: TRITON_KEY}), [plan.Mount("/models", str(repo))])
            for a in args if not a.startswith("--load-model=") or a == f"--load-model={NAME}"]
    argv = triton.triton_argv(args, WHEEL / "bin" / "tritonserver",
                              triton.prepare_backend_dir(WHEEL, tmp_path / "backends"), ports)
    assert any(a.startswith("--http-restricted-api=") and a.endswith(f"={TRITON_KEY}") for a in argv)
    env = dict(os.environ, PATH=f"{sys.prefix}/bin:{os.environ.get('PATH', '')}", VIRTUAL_ENV=sys.prefix,
               PYTHONPATH=str(ROOT / "operator"))
    env[SHIM_ENV] = str(triton.SHIM_MODEL)  # what the pod runner sets on modeldeploy-image containers
    agent_env = dict(env, **{TRITON_KEY_ENV: TRITON_KEY})  # the pod gives the agent the key from the Secret
    token_file = tmp_path / "agent-secret" / "token"
    token_file.parent.mkdir()
    token_file.write_text(AGENT_TOKEN)
    triton_log, agent_log = tmp_path / "triton.log", tmp_path / "agent.log"
    procs = []
    with open(triton_log, "wb") as fh:
        procs.append(subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True))
    agent_port = free_port()
    with open(agent_log, "wb") as fh:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "modeldeploy", "agent", "--repository", str(repo), "--name", NAME,
             "--format", "onnx", "--triton-url", f"127.0.0.1:{ports[8000]}",
             "--triton-grpc-url", f"127.0.0.1:{ports[8001]}", "--address", "127.0.0.1", "--port", str(agent_port),
             "--uri", v1.as_uri(), "--version", "1", "--sha256", sha256(v1), "--load-timeout", "60",
             "--token-file", str(token_file), "--termination-log", str(tmp_path / "agent-termination-log")],
            env=agent_env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True))
    checks = list(zip(procs, (triton_log, agent_log)))
    try:
        wait_for("the agent to see version 1 served",
                 lambda: http_json(agent_port, "GET", "/v1/model")[1].get("state") == "Ready", 90, checks)
        yield {"repo": repo, "store": store, "v1": v1, "v2": v2, "v3": v3, "ports": ports, "agent": agent_port,
               "triton": procs[0], "checks": checks, "logs": (triton_log, agent_log)}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


@pytest.mark.timeout(180)
def test_swap_under_load_fails_no_request_and_restarts_nothing(pod):
    from modeldeploy.models import digits

    agent, ports, repo = pod["agent"], pod["ports"], pod["repo"]
    triton_pid = pod["triton"].pid
    status, body = http_json(agent, "GET", "/v1/model")
    assert {k: body["served"][k] for k in ("version", "uri", "sha256")} == {
        "version": 1, "uri": pod["v1"].as_uri(), "sha256": sha256(pod["v1"])}
    assert body["loadedVersions"] == [1]
    x = np.load(digits.build()["test_path"])["x_test"][:1]

    def state(expected_state, version):
        snap = http_json(agent, "GET", "/v1/model")[1]
        ok = snap["state"] == expected_state and (snap["desired"] or {}).get("version") == version
        return snap if ok else None

    with Probes(ports[8000]) as probes, Load(f"127.0.0.1:{ports[8000]}", x) as load:
        load.run_for(30, pod["checks"])
        t0 = time.monotonic()
        body = AgentClient(timeout=10).put(f"http://127.0.0.1:{agent}", {
            "uri": pod["v2"].as_uri(), "version": 2, "sha256": sha256(pod["v2"])}, token=AGENT_TOKEN)
        assert body["state"] == "Swapping" and body["desired"]["version"] == 2
        snap = wait_for("the swap to version 2", lambda: state("Ready", 2), 60, pod["checks"])
        t1 = time.monotonic()
        load.run_for(30, pod["checks"])
        t2 = time.monotonic()
        # a broken version 3: the swap fails, version 2 keeps serving
        AgentClient(timeout=10).put(f"http://127.0.0.1:{agent}", {"uri": pod["v3"].as_uri(), "version": 3},
                                    token=AGENT_TOKEN)
        failed_snap = wait_for("the failed swap to version 3", lambda: state("Failed", 3), 60, pod["checks"])
        t3 = time.monotonic()
        wait_for("Triton's strict readiness after the failed swap",
                 lambda: http_json(ports[8000], "GET", "/v2/health/ready")[0] == 200, 20, pod["checks"])
        load.run_for(30, pod["checks"])
        t4 = time.monotonic()

    print(f"\nswap 1 -> 2: {t1 - t0:.2f}s from PUT to Ready ({snap['message']})")
    failed = summary("swap 1 -> 2 (PUT to Ready)", load.between(t0, t1), probes.between(t0, t1))
    failed += summary("after the swap", load.between(t1, t2), probes.between(t1, t2))
    print(f"failed swap 2 -> 3: {t3 - t2:.2f}s from PUT to Failed ({failed_snap['message']})")
    failed += summary("failed swap 2 -> 3 (PUT to Failed)", load.between(t2, t3), probes.between(t2, t3))
    failed += summary("after the failed swap", load.between(t3, t4), probes.between(t3, t4))
    failed += [e for e in load.events if e[3]]
    assert failed == [], failed[:5]
    middle = (t0 + t1) / 2  # the load really ran through the swap: requests in both halves of it
    assert load.between(t0, middle) and load.between(middle, t1)

    assert pod["triton"].poll() is None and pod["triton"].pid == triton_pid  # never restarted
    assert {k: snap["served"][k] for k in ("version", "uri", "sha256")} == {
        "version": 2, "uri": pod["v2"].as_uri(), "sha256": sha256(pod["v2"])}
    assert snap["loadedVersions"] == [2]
    assert {e[2] for e in load.between(t1, t2)} == {"2"}
    assert not (repo / NAME / "1").exists() and (repo / NAME / "2" / "model.py").is_file()

    assert failed_snap["served"]["version"] == 2 and failed_snap["loadedVersions"] == [2]
    assert failed_snap["message"].startswith("load of version 3 failed: ")
    assert failed_snap["message"].endswith("still serving version 2")
    assert {e[2] for e in load.between(t3, t4)} == {"2"}
    assert not (repo / NAME / "3").exists()
    client = th.InferenceServerClient(f"127.0.0.1:{ports[8000]}")
    index = {e["version"]: (e["state"], e.get("reason", ""))
             for e in client.get_model_repository_index(headers={TRITON_KEY_HEADER: TRITON_KEY})}
    client.close()
    assert index == {"1": ("UNAVAILABLE", "unloaded"), "2": ("READY", ""), "3": ("UNAVAILABLE", "unloaded")}
    assert all(m == 200 for _, _, m in probes.results)  # the model itself was ready throughout


EVIL_MODEL = """
import pathlib
pathlib.Path({marker!r}).write_text("code ran in the pod")

class TritonPythonModel:
    def execute(self, requests):
        return []
"""


@pytest.mark.timeout(120)
def test_outside_callers_cannot_load_unload_or_configure_but_can_infer(pod, tmp_path):
    """The review's attack: without the key, a load with a file override (a python model that runs code
    in the pod) and an unload are refused over HTTP and gRPC; so are the other control APIs. The model
    keeps serving; the agent, which has the key, still reads Triton's state."""
    import base64

    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    from modeldeploy.models import digits

    ports = pod["ports"]
    marker = tmp_path / "PWNED"
    evil = EVIL_MODEL.format(marker=str(marker)).encode()
    override = json.dumps({"parameters": {
        "config": json.dumps({"name": NAME, "backend": "python", "max_batch_size": 0}),
        "file:1/model.py": base64.b64encode(evil).decode()}})
    refused = {
        ("POST", f"/v2/repository/models/{NAME}/load", override),
        ("POST", f"/v2/repository/models/{NAME}/unload", "{}"),
        ("POST", "/v2/repository/index", "{}"),
        ("GET", f"/v2/models/{NAME}/config", None),
        ("GET", "/v2/logging", None),
        ("GET", "/v2/trace/setting", None),
        ("GET", "/v2/systemsharedmemory/status", None),
        ("GET", "/v2/cudasharedmemory/status", None),
    }
    for method, path, body in sorted(refused, key=str):
        for headers in ({}, {TRITON_KEY_HEADER: "wrong"}):
            conn = http.client.HTTPConnection("127.0.0.1", ports[8000], timeout=30)
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
            conn.close()
            assert resp.status == 403, (method, path, resp.status, text)
            assert "restricted" in text

    grpc = tg.InferenceServerClient(f"127.0.0.1:{ports[8001]}")
    try:
        for call in (lambda: grpc.load_model(NAME, config=json.loads(override)["parameters"]["config"],
                                             files={"file:1/model.py": evil}),
                     lambda: grpc.unload_model(NAME),
                     lambda: grpc.get_model_repository_index(),
                     lambda: grpc.get_model_config(NAME),
                     lambda: grpc.unload_model(NAME, headers={TRITON_GRPC_KEY_HEADER: "wrong"})):
            with pytest.raises(InferenceServerException) as err:
                call()
            assert "restricted" in str(err.value).lower() or "permission" in str(err.value).lower(), err.value
        # inference and health stay open, over both protocols
        x = np.load(digits.build()["test_path"])["x_test"][:1]
        inp = tg.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        assert grpc.infer(NAME, [inp]).as_numpy(grpc.get_model_metadata(NAME).outputs[0].name).shape[0] == 1
        assert grpc.is_model_ready(NAME)
    finally:
        grpc.close()
    client = th.InferenceServerClient(f"127.0.0.1:{ports[8000]}")
    try:
        hinp = th.InferInput("input", list(x.shape), "FP32")
        hinp.set_data_from_numpy(x)
        assert client.infer(NAME, [hinp]).get_response()["model_version"] == "1"
        assert client.get_model_metadata(NAME)["name"] == NAME
        index = client.get_model_repository_index(headers={TRITON_KEY_HEADER: TRITON_KEY})  # the agent's way
    finally:
        client.close()
    assert index == [{"name": NAME, "version": "1", "state": "READY"}]
    grpc = tg.InferenceServerClient(f"127.0.0.1:{ports[8001]}")
    try:  # the right key over gRPC (the agent's loads go there)
        assert grpc.get_model_config(NAME, headers={TRITON_GRPC_KEY_HEADER: TRITON_KEY}).config.name == NAME
    finally:
        grpc.close()
    assert not marker.exists()
    snap = http_json(pod["agent"], "GET", "/v1/model")[1]
    assert snap["state"] == "Ready" and snap["loadedVersions"] == [1]  # the agent, with the key, still sees Triton
