"""Bad specs are rejected by the real API server at create time, with a message naming the field."""

from __future__ import annotations

import copy
import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modeldeploy.api import constants as c
from tests.bad_specs import BAD_SPECS, bad_spec

pytestmark = pytest.mark.integration

VALID = {
    "apiVersion": c.API_VERSION,
    "kind": c.KIND,
    "metadata": {"name": "v"},
    "spec": {"model": {"uri": "s3://bucket/model.onnx", "format": "onnx"}},
}


def with_spec(**spec_changes) -> dict:
    body = copy.deepcopy(VALID)
    body["spec"].update(spec_changes)
    return body


CASES = {
    "bad uri scheme": (with_spec(model={"uri": "ftp://host/model.onnx", "format": "onnx"}),
                       ["spec.model.uri", "s3://"]),
    "uri without location": (with_spec(model={"uri": "s3://", "format": "onnx"}), ["spec.model.uri"]),
    "pvc uri without path": (with_spec(model={"uri": "pvc://models", "format": "onnx"}),
                             ["spec.model.uri", "pvc://<claim name>/<path inside the claim>"]),
    "unknown format": (with_spec(model={"uri": "s3://b/m", "format": "pickle"}),
                       ["spec.model.format", "Unsupported value"]),
    "missing format": (with_spec(model={"uri": "s3://b/m"}), ["spec.model.format", "Required"]),
    "compression without a model store": (with_spec(compression={"quantization": {"mode": "fp16"},
                                                                 "evaluation": {"dataset": "builtin://digits"}}),
                                          ["spec.compression.modelStore", "Required"]),
    "compression without a technique": (with_spec(compression={"modelStore": {"claimName": "store"},
                                                                "evaluation": {"dataset": "builtin://digits"}}),
                                        ["spec.compression must set at least one of quantization"]),
    "pruning too much": (with_spec(compression={"pruning": {"amount": 0.99}, "modelStore": {"claimName": "s"},
                                                "evaluation": {"dataset": "builtin://digits"}}),
                         ["spec.compression.pruning.amount"]),
    "compression without a dataset": (with_spec(compression={"pruning": {"amount": 0.5}, "modelStore": {"claimName": "s"},
                                                             "evaluation": {"maxAccuracyDrop": 1}}),
                                      ["spec.compression.evaluation.dataset", "Required"]),
    "negative gpu count": (with_spec(resources={"gpu": {"count": -1}}), ["spec.resources.gpu.count"]),
    "min > max replicas": (with_spec(autoscaling={"minReplicas": 5, "maxReplicas": 2, "targetQueueMicroseconds": 500}),
                           ["spec.autoscaling.minReplicas must be <= spec.autoscaling.maxReplicas"]),
    "autoscaling without a target": (with_spec(autoscaling={"maxReplicas": 4}),
                                     ["spec.autoscaling needs at least one target"]),
    "autoscaling target zero": (with_spec(autoscaling={"maxReplicas": 4, "targetP99LatencyMilliseconds": 0}),
                                ["spec.autoscaling.targetP99LatencyMilliseconds must be > 0"]),
    "autoscaling minReplicas zero": (with_spec(autoscaling={"minReplicas": 0, "maxReplicas": 4,
                                                            "targetQueueToComputeRatio": 1.0}),
                                     ["spec.autoscaling.minReplicas"]),
    "scaleUp without a limit": (with_spec(autoscaling={"maxReplicas": 4, "targetPendingRequestsPerReplica": 2,
                                                       "scaleUp": {"periodSeconds": 30}}),
                                ["spec.autoscaling.scaleUp needs maxReplicasPerPeriod or maxPercentPerPeriod"]),
    "negative replicas": (with_spec(replicas=-1), ["spec.replicas"]),
    "step with both": (with_spec(rollout={"strategy": "Canary", "canary": {
        "steps": [{"setWeight": 10, "pause": {"duration": "1m"}}]}}),
        ["spec.rollout.canary.steps[0]", "exactly one of setWeight or pause"]),
    "step with neither": (with_spec(rollout={"strategy": "Canary", "canary": {"steps": [{}]}}),
                          ["spec.rollout.canary.steps[0]", "exactly one of setWeight or pause"]),
    "weight above 100": (with_spec(rollout={"strategy": "Canary", "canary": {"steps": [{"setWeight": 150}]}}),
                         ["spec.rollout.canary.steps[0].setWeight", "100"]),
    "weight below 0": (with_spec(rollout={"strategy": "Canary", "canary": {"steps": [{"setWeight": -5}]}}),
                       ["spec.rollout.canary.steps[0].setWeight"]),
    "bad duration": (with_spec(rollout={"strategy": "Canary", "canary": {
        "steps": [{"setWeight": 10}, {"pause": {"duration": "ten minutes"}}]}}),
        ["spec.rollout.canary.steps[1].pause.duration", "30s"]),
    "canary without steps": (with_spec(rollout={"strategy": "Canary"}), ["spec.rollout.canary.steps"]),
    "batching without batch size": (with_spec(serving={"dynamicBatching": {}}),
                                    ["spec.serving.dynamicBatching needs spec.serving.maxBatchSize > 0"]),
    "bad sha256": (with_spec(model={"uri": "s3://b/m", "format": "onnx", "sha256": "xyz"}), ["spec.model.sha256"]),
    "unknown strategy": (with_spec(rollout={"strategy": "BlueGreen"}), ["spec.rollout.strategy"]),
    "bad mig profile": (with_spec(resources={"gpu": {"count": 1, "migProfile": "big"}}),
                        ["spec.resources.gpu.migProfile"]),
    "credentials in an http uri": (with_spec(model={"uri": "https://alice:PW@h/m.onnx", "format": "onnx"}),
                                   ["spec.model.uri must not contain credentials", "spec.model.credentialsSecret"]),
    "user name in an http uri": (with_spec(model={"uri": "http://alice@h/m.onnx", "format": "onnx"}),
                                 ["spec.model.uri must not contain credentials"]),
    "credentials in an s3 uri": (with_spec(model={"uri": "s3://AKIA:SECRET@bucket/m.onnx", "format": "onnx"}),
                                 ["spec.model.uri must not contain credentials"]),
    "max bytes not a quantity": (with_spec(model={"uri": "s3://b/m", "format": "onnx", "maxBytes": "lots"}),
                                 ["spec.model.maxBytes"]),
    "max bytes zero": (with_spec(model={"uri": "s3://b/m", "format": "onnx", "maxBytes": 0}),
                       ["spec.model.maxBytes must be at least 1 byte"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejected_with_message_naming_the_field(api, crd_installed, namespace, case):
    body, expected = CASES[case]
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PLURAL, body, dry_run="All")
    assert err.value.status == 422, err.value.body
    message = json.loads(err.value.body)["message"]
    for fragment in expected:
        assert fragment in message, message


@pytest.mark.parametrize("uri", ["https://h/m.onnx?X-Amz-Signature=abc", "gs://b/a@b/m.onnx",
                                 "https://h/path@with-at/m.onnx", "s3://bucket/key"])
def test_uris_without_credentials_are_accepted(api, crd_installed, namespace, uri):
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL, with_spec(model={"uri": uri, "format": "onnx", "maxBytes": "20Gi"}),
        dry_run="All")


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_held_out_bad_specs_are_refused_at_apply_naming_the_field(api, crd_installed, namespace, case):
    """The review's held-out specs: each passed the old schema and then retried forever as ApplyFailed.
    parse_spec refuses the same table naming the same field (tests/unit/test_spec.py)."""
    name, spec, field = bad_spec(case)
    body = {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name}, "spec": spec}
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi(api).create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, body)
    assert err.value.status == 422, err.value.body
    message = json.loads(err.value.body)["message"]
    assert f"{field}:" in message or f"{field}[" in message, message
    assert "\n" not in message


def test_valid_spec_is_accepted_with_defaults(api, crd_installed, namespace):
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL, with_spec(rollout={}, resources={"gpu": {}}), dry_run="All")
    spec = created["spec"]
    assert spec["rollout"]["strategy"] == "Rolling"
    assert spec["resources"]["gpu"]["count"] == 1
    assert spec["model"]["version"] == 1
    assert spec["replicas"] == 1  # THE RULE: the scale subresource answers on every ModelDeployment
    assert created["status"] == {"observedGeneration": -1}  # not reconciled yet: kstatus reads InProgress


def test_replicas_beside_autoscaling_are_accepted(api, crd_installed, namespace):
    """spec.autoscaling wins and status says spec.replicas is ignored; an HPA that set spec.replicas through the
    scale subresource must not make the object invalid."""
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL, with_spec(replicas=2, autoscaling={"maxReplicas": 4, "targetPendingRequestsPerReplica": 4}),
        dry_run="All")
    assert created["spec"]["replicas"] == 2 and created["spec"]["autoscaling"]["maxReplicas"] == 4


def test_every_example_is_accepted(api, crd_installed, namespace):
    from .conftest import ROOT
    import yaml

    checked = 0
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for body in yaml.safe_load_all(path.read_text()):
            if not body or body.get("kind") != c.KIND:
                continue  # e.g. the PersistentVolumeClaim next to a compression example
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, body, dry_run="All")
            checked += 1
    assert checked >= 3


def test_autoscaling_is_accepted_with_its_defaults(api, crd_installed, namespace):
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL,
        with_spec(autoscaling={"maxReplicas": 4, "targetInferencesPerSecondPerReplica": 80,
                               "targetQueueToComputeRatio": 0.5, "scaleUp": {"maxPercentPerPeriod": 100}}),
        dry_run="All")
    auto = created["spec"]["autoscaling"]
    assert (auto["minReplicas"], auto["tolerance"], auto["scaleDownStabilizationSeconds"],
            auto["metricsWindowSeconds"], auto["scaleUp"]["periodSeconds"]) == (1, 0.1, 120, 30, 60)
