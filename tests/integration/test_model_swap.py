"""A new model version reaches running Triton pods in place: no restart, no failed request.

The ModelDeployment serves digits version 1 on the runner node. A load generator sends inference
requests (no version: whatever Triton serves) while the spec moves to version 2 (a different file).
The operator keeps the revision (no rolling update) and tells each pod's model agent to load version
2 next to version 1 and then drop version 1.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from kubernetes import client

from modeldeploy.api import constants as c
from modeldeploy.sandbox.examples import file_sha256

from .conftest import wait_for
from .test_dataplane import local_md, pod_url
from .test_operator import create_md, get_md, patch_md, pods_of, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


class Load:
    """Threads sending inference requests until stopped; counts successes, failures and versions seen."""

    def __init__(self, url: str, x, threads: int = 2):
        self.url, self.x = url, x.astype(np.float32)
        self.ok = self.failed = 0
        self.versions: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        import tritonclient.http as httpclient

        triton = httpclient.InferenceServerClient(self.url, connection_timeout=10, network_timeout=10)
        i = 0
        try:
            while not self.stop.is_set():
                batch = np.ascontiguousarray(self.x[i % len(self.x):][:8])
                i += 8
                inp = httpclient.InferInput("input", list(batch.shape), "FP32")
                inp.set_data_from_numpy(batch)
                try:
                    result = triton.infer("digits", [inp])
                    version = result.get_response()["model_version"]
                    with self.lock:
                        self.ok += 1
                        self.versions.append(version)
                except Exception as err:  # noqa: BLE001 - counting failures is the point
                    with self.lock:
                        self.failed += 1
                        self.errors.append(str(err)[:200])
        finally:
            triton.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def restarts(pods) -> dict[str, int]:
    return {f"{p.metadata.name}/{s.name}": s.restart_count for p in pods for s in (p.status.container_statuses or [])}


def test_new_version_is_swapped_in_place_under_load(api, operator, namespace, runner_node, digits_model, tmp_path,
                                                    pod_network):
    import onnx

    out, _ = digits_model
    v1 = out / "model.onnx"
    v2 = tmp_path / "v2" / "model.onnx"
    v2.parent.mkdir()
    model = onnx.load(v1)
    model.doc_string = "digits, version 2"  # other bytes, same answers
    onnx.save(model, v2)
    assert file_sha256(v1) != file_sha256(v2)

    create_md(api, namespace, local_md("digits", f"file://{v1}", sha256=file_sha256(v1)))
    md = wait_ready(api, namespace, "digits", timeout=120)
    revision = md["status"]["currentRevision"]
    assert md["status"]["model"]["version"] == 1
    before = pods_of(api, namespace, "digits")
    data = np.load(out / "digits_test.npz")

    with Load(pod_url(api, namespace, 'digits'), data["x_test"]) as load:
        wait_for(lambda: load.ok > 20, 30, what="load generator running")
        started = time.monotonic()
        patched = patch_md(api, namespace, "digits", {"spec": {"model": {
            "uri": f"file://{v2}", "version": 2, "sha256": file_sha256(v2)}}})

        def swapped():
            m = get_md(api, namespace, "digits")
            s = m.get("status") or {}
            return m if (s.get("observedGeneration") == patched["metadata"]["generation"]
                         and s.get("phase") == "Ready" and (s.get("model") or {}).get("version") == 2) else None
        md = wait_for(swapped, 120, what="status.model.version 2 and Ready")
        seconds = time.monotonic() - started
        wait_for(lambda: load.versions and load.versions[-1] == "2", 30, what="responses from version 2")
        answered = load.ok + load.failed
        wait_for(lambda: load.ok + load.failed >= answered + 50, 30, what="50 more requests after the swap")
    print(f"\nswap: {load.ok} requests, {load.failed} failed, {seconds:.1f} s from patch to Ready")

    assert load.failed == 0, load.errors[:5]
    assert md["status"]["currentRevision"] == revision  # no rolling update
    assert md["status"]["model"]["sha256"] == file_sha256(v2) and "modelSwap" not in md["status"]
    after = pods_of(api, namespace, "digits")
    assert [p.metadata.uid for p in after] == [p.metadata.uid for p in before]  # the same pods
    assert set(restarts(after).values()) == {0}  # and no container restarted
    assert "1" in load.versions and load.versions[-1] == "2"
    assert load.versions.index("2") > load.versions.index("1")
    # only the operator (holding the Secret's token) may tell an agent what to serve
    from modeldeploy.adapters.agent import AgentClient, AgentError, endpoint

    url = endpoint(client.ApiClient().sanitize_for_serialization(after[0]))
    assert AgentClient().get(url)["served"]["version"] == 2
    with pytest.raises(AgentError, match="HTTP 401"):
        AgentClient().put(url, {"uri": f"file://{v1}", "version": 3})
    events = client.CoreV1Api(api).list_namespaced_event(namespace).items
    assert not [e for e in events if e.reason in ("Killing", "BackOff")]
    assert md["status"]["conditions"][0]["type"] == c.COND_READY
