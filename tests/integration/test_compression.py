"""Compression before serving, end to end: the operator's Job runs `modeldeploy compress` for real.

The pod runner executes the Job's pod (init container `modeldeploy fetch`, then `modeldeploy compress`
writing into the model store claim, a folder of the runner) and then the Triton pod that fetches the
chosen variant from the same claim. Inference goes through Triton's HTTP API.
"""

from __future__ import annotations

import numpy as np
import pytest
from kubernetes import client
from kubernetes.utils import create_from_dict

from modeldeploy.api import constants as c
from modeldeploy.sandbox.examples import (classify_digits, digits_on_runner, file_sha256, model_store,
                                          with_compression)

from .conftest import wait_for
from .test_dataplane import pod_url
from .test_operator import condition, create_md, get_md, patch_md, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# A gate every variant passes on any CPU (how many images INT8 or pruning lose depends on the network trained
# on this machine), and one no variant can pass: 90% of the channels cut without fine-tuning (tens of points
# lost) against a zero-drop gate.
PASSING = {"pruning": {"amount": 0.5, "fineTuneEpochs": 2}, "quantization": {"mode": "int8-static"},
           "evaluation": {"dataset": "builtin://digits", "maxAccuracyDrop": 100, "runs": 5}, "select": "smallest"}
FAILING = {"pruning": {"amount": 0.9, "fineTuneEpochs": 0}, "evaluation": {"dataset": "builtin://digits", "maxAccuracyDrop": 0, "runs": 5}}


@pytest.fixture
def store(api, namespace):
    objects = model_store(namespace)
    for obj in objects:
        create_from_dict(api, obj)
    core = client.CoreV1Api(api)
    wait_for(lambda: core.read_namespaced_persistent_volume_claim("model-store", namespace).status.phase == "Bound",
             60, what="model store claim Bound")
    yield "model-store"
    core.delete_persistent_volume(objects[0]["metadata"]["name"])


def jobs(api, namespace: str, key: str | None = None) -> list:
    selector = f"{c.LABEL_COMPONENT}={c.COMPONENT_COMPRESSION}"
    if key:
        selector += f",{c.LABEL_COMPRESSION_KEY}={key[:40]}"
    return client.BatchV1Api(api).list_namespaced_job(namespace, label_selector=selector).items


def compressed_md(name: str, model, recipe: dict) -> dict:
    return with_compression(digits_on_runner(name, model, sha256=file_sha256(model)), recipe)


def accuracy(api, namespace: str, name: str, data) -> float:
    x, y = data["x_test"].astype(np.float32), data["y_test"]
    return float((classify_digits(pod_url(api, namespace, name), x) == y).mean())


def test_compressed_variant_is_produced_gated_served_and_cached(api, operator, namespace, runner_node, digits_model,
                                                              store, pod_network):
    out, _ = digits_model
    model, data = out / "model.onnx", np.load(out / "digits_test.npz")
    create_md(api, namespace, compressed_md("digits", model, PASSING))
    md = wait_ready(api, namespace, "digits", timeout=240)

    comp = md["status"]["compression"]
    assert comp["state"] == "Succeeded" and comp["cached"] is False
    assert comp["selected"] == "prune+int8-static", comp
    assert [v["name"] for v in comp["variants"]] == ["int8-static", "prune", "prune+int8-static"]
    chosen = next(v for v in comp["variants"] if v["name"] == comp["selected"])
    assert chosen["passed"] and chosen["sizeBytes"] * 4 < comp["baseline"]["sizeBytes"]
    assert condition(md, "Compressed")["status"] == "True"
    assert md["status"]["model"]["uri"] == f"pvc://{store}/{comp['key']}/selected/model.onnx"
    [job] = jobs(api, namespace, comp["key"])
    assert job.status.succeeded == 1

    # what Triton serves is the compressed model the Job measured (one image is 0.0028)
    served = accuracy(api, namespace, "digits", data)
    assert abs(served - chosen["accuracy"]) < 1e-4, (served, comp)

    # the same model and recipe again (another ModelDeployment): no new Job, the result is reused
    create_md(api, namespace, compressed_md("digits-again", model, PASSING))
    again = wait_ready(api, namespace, "digits-again", timeout=180)
    assert again["status"]["compression"]["key"] == comp["key"] and again["status"]["compression"]["cached"] is True
    assert len(jobs(api, namespace)) == 1

    # a recipe that cannot pass: the Job ends with the numbers, the compressed model keeps serving
    revision = md["status"]["currentRevision"]
    patch_md(api, namespace, "digits", {"spec": {"compression": {**FAILING, "quantization": None}}})  # merge patch

    def gate_failed():
        m = get_md(api, namespace, "digits")
        return m if condition(m, "Compressed").get("reason") == c.REASON_GATE_FAILED else None
    failed = wait_for(gate_failed, 180, what="Compressed reason CompressionGateFailed")
    status = failed["status"]
    assert status["phase"] == "Failed" and condition(failed, "Stalled")["status"] == "True"
    message = condition(failed, "Ready")["message"]
    assert "no variant passed" in message and "pt below FP32" in message, message
    assert "the previous model keeps serving (1/1 available)" in message, message
    assert status["currentRevision"] == revision and status["compression"]["state"] == "GateFailed"
    [failed_job] = jobs(api, namespace, status["compression"]["key"])
    assert failed_job.status.failed == 1  # exit code 3 is a result: podFailurePolicy, no retry
    assert accuracy(api, namespace, "digits", data) == served


def test_operator_killed_mid_job_picks_the_job_up(api, operator, namespace, runner_node, digits_model, store):
    out, _ = digits_model
    model = out / "model.onnx"
    create_md(api, namespace, compressed_md("digits", model, {"quantization": {"mode": "fp16"},
                                                             "evaluation": {"dataset": "builtin://digits", "runs": 5}}))
    wait_for(lambda: jobs(api, namespace), 60, what="a compression Job")
    operator.restart()
    md = wait_ready(api, namespace, "digits", timeout=240)
    assert md["status"]["compression"]["selected"] == "fp16"
    assert len(jobs(api, namespace)) == 1
