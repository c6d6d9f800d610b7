"""Real inference through what the operator deploys: Triton run by the sandbox's pod runner.

The ModelDeployment opts into the runner's node (node selector on the `local` pool plus a toleration
of the runner taint, both ordinary spec.placement fields). The operator renders its usual Deployment;
the runner executes the fetch-model init container (`modeldeploy fetch`) and tritonserver from the
nvidia-pytriton wheel (CPU, python backend running the ONNX model through onnxruntime), and the pod
is Ready only once Triton's model answered its readiness probe. The test then classifies the digits held-out
split through Triton's HTTP API, the way a user's request goes: into the sandbox gateway with the Service's
host (``<service>.<namespace>``), then to the pod's own IP.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest

from modeldeploy.api import constants as c
from modeldeploy.render import names
from modeldeploy.sandbox.examples import (classify_digits, digits_on_runner, gateway_target, pod_http_url, triton_client,
                                          wait_routed)

from .conftest import wait_for
from .test_operator import condition, create_md, get_md, pods_of, wait_ready

pytestmark = pytest.mark.integration


def local_md(name: str, uri: str, sha256: str | None = None) -> dict:
    return digits_on_runner(name, "", sha256=sha256, uri=uri)


def pod_url(api, namespace: str, name: str) -> str:
    """``podIP:8000`` of the ModelDeployment's (first, not terminating) Triton pod."""
    pod = next(p for p in pods_of(api, namespace, name) if p.metadata.deletion_timestamp is None)
    return pod_http_url(pod.status.pod_ip)


def via_gateway(gateway_url: str, namespace: str, name: str) -> tuple[str, str]:
    """(host:port, Host header) reaching the ModelDeployment's Service through the sandbox gateway."""
    return gateway_target(gateway_url, names.service_name(name), namespace)


def test_digits_served_by_triton_answers_with_high_accuracy(api, operator, namespace, runner_node, digits_model,
                                                            pod_network, gateway_url, sandbox):
    out, _ = digits_model
    model = out / "model.onnx"
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    body = local_md("digits", f"file://{model}", sha256=sha)
    # warm every instance with a full batch of random images before the model is ready
    body["spec"]["serving"]["warmup"] = [{"name": "random-batch", "batchSize": 64, "count": 2,
                                          "inputs": {"input": {"dataType": "FP32", "dims": [1, 8, 8],
                                                               "data": "random"}}}]
    create_md(api, namespace, body)
    md = wait_ready(api, namespace, "digits", timeout=120)
    pod = pods_of(api, namespace, "digits")[0]
    assert pod.spec.node_name == runner_node
    assert sandbox.pod_range().contains(pod.status.pod_ip), pod.status.pod_ip   # the pod's own address

    data = np.load(out / "digits_test.npz")
    x, y = data["x_test"].astype(np.float32), data["y_test"]
    url, host = via_gateway(gateway_url, namespace, "digits")
    wait_routed(url, "digits", host)  # the endpoint reaches the proxy a moment after the pod is Ready
    accuracy = float((classify_digits(url, x, host=host) == y).mean())
    assert accuracy >= 0.97, accuracy
    triton = triton_client(url, host)
    try:
        assert triton.is_model_ready("digits", str(md["status"]["model"]["version"]))
        stats = triton.get_inference_statistics("digits")["model_stats"][0]
    finally:
        triton.close()
    # Triton counts the warmup: 2 runs of a 64-image batch on the one instance, then our requests
    assert int(stats["inference_count"]) == 2 * 64 + len(x)


@pytest.mark.parametrize("case", ["missing file", "bad checksum"])
def test_fetch_failure_is_reported_in_status(api, operator, namespace, runner_node, digits_model, case):
    out, _ = digits_model
    if case == "missing file":
        body = local_md("broken", f"file://{out}/no-such-model.onnx")
        expected = "no-such-model.onnx"
    else:
        body = local_md("broken", f"file://{out}/model.onnx", sha256="0" * 64)
        expected = "0" * 64
    create_md(api, namespace, copy.deepcopy(body))

    def failed():
        md = get_md(api, namespace, "broken")
        ready = condition(md, "Ready")
        return md if ready.get("reason") == c.REASON_FETCH_FAILED else None
    md = wait_for(failed, 90, what="Ready reason ModelFetchFailed")
    message = condition(md, "Ready")["message"]
    assert "fetch-model" in message and expected in message, message
    assert md["status"]["phase"] in ("Progressing", "Failed")  # Failed once the progress deadline passed
