"""ModelDeployments whose model lives in an object store, end to end in the sandbox.

The digits model is uploaded to SeaweedFS (S3) or fake-gcs-server (GCS), started by this module; the
credentials Secret holds what a user would put there (for s3:// the read-only identity's keys and the
endpoint as AWS_* variables, taken with envFrom; for gs:// a service-account key file under gcs.json and
the endpoint under STORAGE_EMULATOR_HOST). The operator renders its usual pod; the pod runner runs the
fetch-model init container with that Secret, then Triton, and the test classifies the digits held-out
split through Triton; version 2, from the same store, is then swapped in place by the pod's model agent,
which fetches with the same credentials. A wrong key must surface as ModelFetchFailed with the store's answer in the Ready
condition.

The servers listen on the sandbox pods' side of the network (loopback by default,
MODELDEPLOY_OBJECT_STORE_HOST to change it): the pod runner's pods share the host's network namespace.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest
from kubernetes import client

from modeldeploy.api import constants as c
from modeldeploy.sandbox.examples import classify_digits, digits_on_runner

from .conftest import wait_for
from .stores import gcs_store, s3_store, token_endpoint  # noqa: F401
from .test_dataplane import pod_url
from .test_operator import condition, create_md, get_md, patch_md, pods_of, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.objectstores]

SECRET = "model-store-credentials"


def upload_digits(scheme: str, namespace: str, model, s3_store, gcs_store, version: int = 1) -> str:
    key = f"{namespace}/digits/{version}/model.onnx"
    if scheme == "s3":
        s3_store.client().upload_file(str(model), "models", key)
    else:
        gcs_store.client().bucket("models").blob(key).upload_from_filename(str(model))
    return f"{scheme}://models/{key}"


def credentials(scheme: str, s3_store, gcs_store, token_endpoint, wrong: bool = False) -> dict[str, str]:
    """The credentials Secret's data, as a user would write it for this store."""
    if scheme == "s3":
        data = s3_store.secret_env()
        if wrong:
            data["AWS_SECRET_ACCESS_KEY"] = "revoked-" + data["AWS_SECRET_ACCESS_KEY"][:10]
        return data
    key = token_endpoint.service_account_key(register=not wrong)
    return {"gcs.json": json.dumps(key), "STORAGE_EMULATOR_HOST": gcs_store.endpoint}


def deploy(api, namespace: str, uri: str, sha256: str | None, secret_data: dict[str, str]) -> None:
    client.CoreV1Api(api).create_namespaced_secret(namespace, {
        "metadata": {"name": SECRET}, "type": "Opaque", "stringData": secret_data})
    body = digits_on_runner("digits", "", sha256=sha256, uri=uri)
    body["spec"]["model"]["credentialsSecret"] = SECRET
    create_md(api, namespace, body)


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_model_from_object_store_is_served(api, operator, namespace, runner_node, digits_model, tmp_path,
                                           s3_store, gcs_store, token_endpoint, scheme):
    out, _ = digits_model
    model = out / "model.onnx"
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    uri = upload_digits(scheme, namespace, model, s3_store, gcs_store)
    deploy(api, namespace, uri, sha, credentials(scheme, s3_store, gcs_store, token_endpoint))

    started = time.monotonic()
    md = wait_ready(api, namespace, "digits", timeout=180)
    print(f"\n{scheme}: Ready {time.monotonic() - started:.1f} s after create")
    assert md["status"]["model"]["version"] == 1
    data = np.load(out / "digits_test.npz")
    x, y = data["x_test"].astype(np.float32), data["y_test"]
    accuracy = float((classify_digits(pod_url(api, namespace, "digits"), x) == y).mean())
    assert accuracy >= 0.97, accuracy

    # version 2 from the same store: the running pod's model agent fetches it with the same Secret, in place
    import onnx

    v2 = tmp_path / "model.onnx"
    proto = onnx.load(model)
    proto.doc_string = "digits, version 2"  # other bytes, same answers
    onnx.save(proto, v2)
    sha2 = hashlib.sha256(v2.read_bytes()).hexdigest()
    uri2 = upload_digits(scheme, namespace, v2, s3_store, gcs_store, version=2)
    before = [p.metadata.uid for p in pods_of(api, namespace, "digits")]
    patched = patch_md(api, namespace, "digits", {"spec": {"model": {"uri": uri2, "version": 2, "sha256": sha2}}})

    def swapped():
        m = get_md(api, namespace, "digits")
        st = m.get("status") or {}
        return m if (st.get("observedGeneration") == patched["metadata"]["generation"] and st.get("phase") == "Ready"
                     and (st.get("model") or {}).get("version") == 2) else None
    md = wait_for(swapped, 120, what="status.model.version 2 and Ready")
    assert md["status"]["model"]["sha256"] == sha2
    assert [p.metadata.uid for p in pods_of(api, namespace, "digits")] == before  # swapped in place


@pytest.mark.parametrize("scheme, cause", [("s3", "403 SignatureDoesNotMatch"),
                                           ("gs", "invalid_grant: Invalid JWT Signature.")])
def test_wrong_key_is_model_fetch_failed_with_the_cause(api, operator, namespace, runner_node, digits_model,
                                                        s3_store, gcs_store, token_endpoint, scheme, cause):
    out, _ = digits_model
    uri = upload_digits(scheme, namespace, out / "model.onnx", s3_store, gcs_store)
    secret_data = credentials(scheme, s3_store, gcs_store, token_endpoint, wrong=True)
    deploy(api, namespace, uri, None, secret_data)

    def failed():
        md = get_md(api, namespace, "digits")
        return md if condition(md, "Ready").get("reason") == c.REASON_FETCH_FAILED else None
    md = wait_for(failed, 120, what="Ready reason ModelFetchFailed")
    message = condition(md, "Ready")["message"]
    print(f"\n{scheme} wrong key, Ready: {message}")
    assert "fetch-model" in message and uri in message and cause in message, message
    assert "\n" not in message
    secret = (secret_data["AWS_SECRET_ACCESS_KEY"] if scheme == "s3"
              else json.loads(secret_data["gcs.json"])["private_key"].splitlines()[1])
    assert secret not in message  # the cause, never the key
