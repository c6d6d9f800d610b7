"""The operator against the real sandbox control plane: children, status, drift, GC, restarts."""

from __future__ import annotations

import copy
import hashlib

import pytest
from kubernetes import client

from modeldeploy.api import constants as c

from .conftest import load_example, wait_for

pytestmark = pytest.mark.integration

H100 = "NVIDIA-H100-80GB-HBM3"


def custom(api):
    return client.CustomObjectsApi(api)


def create_md(api, namespace: str, body: dict) -> dict:
    body = copy.deepcopy(body)
    body["metadata"].pop("namespace", None)
    return custom(api).create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, body)


def get_md(api, namespace: str, name: str) -> dict:
    return custom(api).get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, name)


def patch_md(api, namespace: str, name: str, patch: dict) -> dict:
    return custom(api).patch_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, name, patch)


def condition(md: dict, type_: str) -> dict:
    return next((x for x in (md.get("status") or {}).get("conditions", []) if x["type"] == type_), {})


def wait_ready(api, namespace: str, name: str, timeout: float = 90, generation: int | None = None) -> dict:
    def ready():
        md = get_md(api, namespace, name)
        status = md.get("status") or {}
        gen = generation or md["metadata"]["generation"]
        return md if (status.get("observedGeneration") == gen and condition(md, "Ready").get("status") == "True"
                      and status.get("phase") == "Ready") else None
    return wait_for(ready, timeout, what=f"ModelDeployment {namespace}/{name} Ready")


def digits(replicas: int = 2) -> dict:
    body = load_example("digits.yaml")
    body["spec"]["replicas"] = replicas
    return body


def pods_of(api, namespace: str, name: str) -> list:
    return client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"{c.LABEL_INSTANCE}={name},{c.LABEL_COMPONENT}=predictor").items


def test_create_becomes_ready_with_children_on_gpu_nodes(api, operator, namespace):
    create_md(api, namespace, digits(replicas=2))
    md = wait_ready(api, namespace, "digits")
    status = md["status"]
    assert status["readyReplicas"] == 2 and status["replicas"] == 2
    assert status["deployment"] == "digits-stable" and status["service"] == "digits"
    uri = "https://models.example.com/digits/1/model.onnx"
    assert status["model"] == {"name": "digits", "version": 1, "uri": uri,
                               "uriFingerprint": hashlib.sha256(uri.encode()).hexdigest()}
    assert status["endpoints"]["http"] == f"http://digits.{namespace}.svc:8000"
    assert condition(md, "Reconciling")["status"] == "False"
    assert condition(md, "Stalled")["status"] == "False"

    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    dep = apps.read_namespaced_deployment("digits-stable", namespace)
    assert dep.metadata.owner_references[0].kind == "ModelDeployment"
    assert dep.spec.template.spec.containers[0].resources.limits[c.GPU_RESOURCE] == "1"
    assert core.read_namespaced_service("digits", namespace).spec.ports[0].port == 8000
    cm = core.read_namespaced_config_map(f"digits-config-{status['currentRevision']}", namespace)
    assert "max_batch_size: 32" in cm.data["config.pbtxt"]

    pods = pods_of(api, namespace, "digits")
    assert len(pods) == 2
    for pod in pods:
        node = core.read_node(pod.spec.node_name)
        assert node.metadata.labels[c.GPU_PRODUCT_LABEL] == H100, pod.spec.node_name


def test_spec_edit_rolls_a_new_revision(api, operator, namespace, kubectl):
    create_md(api, namespace, digits(replicas=1))
    first = wait_ready(api, namespace, "digits")["status"]["currentRevision"]

    patched = patch_md(api, namespace, "digits", {"spec": {"serving": {"maxBatchSize": 64}}})
    md = wait_ready(api, namespace, "digits", generation=patched["metadata"]["generation"])
    second = md["status"]["currentRevision"]
    assert second != first
    dep = client.AppsV1Api(api).read_namespaced_deployment("digits-stable", namespace)
    assert dep.spec.template.metadata.labels[c.LABEL_REVISION] == second
    core = client.CoreV1Api(api)
    assert "max_batch_size: 64" in core.read_namespaced_config_map(f"digits-config-{second}", namespace).data[
        "config.pbtxt"]
    # The old revision's config is pruned once the rollout finished.
    wait_for(lambda: [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items
                      if cm.metadata.name.startswith("digits-config-")] == [f"digits-config-{second}"],
             30, what="old config ConfigMap pruned")


def test_replica_change_keeps_revision_and_scale_subresource_works(api, operator, namespace, kubectl):
    create_md(api, namespace, digits(replicas=1))
    rev = wait_ready(api, namespace, "digits")["status"]["currentRevision"]
    kubectl("scale", "-n", namespace, "modeldeployment/digits", "--replicas=3")
    md = wait_ready(api, namespace, "digits", generation=2)
    assert md["status"]["readyReplicas"] == 3
    assert md["status"]["currentRevision"] == rev
    assert client.AppsV1Api(api).read_namespaced_deployment("digits-stable", namespace).spec.replicas == 3


def test_manual_drift_is_reverted(api, operator, namespace):
    create_md(api, namespace, digits(replicas=1))
    wait_ready(api, namespace, "digits")
    apps = client.AppsV1Api(api)
    apps.patch_namespaced_deployment("digits-stable", namespace, {
        "spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "triton", "image": "evil:latest"}]}}}})

    def reverted():
        dep = apps.read_namespaced_deployment("digits-stable", namespace)
        return dep.spec.replicas == 1 and dep.spec.template.spec.containers[0].image.startswith("nvcr.io/")
    wait_for(reverted, 30, what="manual edit of the Deployment reverted")
    wait_ready(api, namespace, "digits")


def test_deleted_child_is_recreated_and_delete_collects_children(api, operator, namespace):
    create_md(api, namespace, digits(replicas=1))
    wait_ready(api, namespace, "digits")
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.delete_namespaced_deployment("digits-stable", namespace)
    wait_for(lambda: apps.read_namespaced_deployment("digits-stable", namespace).metadata.deletion_timestamp is None
             and apps.read_namespaced_deployment("digits-stable", namespace).status.ready_replicas == 1,
             60, what="deleted Deployment recreated")

    custom(api).delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, "digits")
    wait_for(lambda: not apps.list_namespaced_deployment(namespace).items
             and not [s for s in core.list_namespaced_service(namespace).items if s.metadata.name == "digits"]
             and not [m for m in core.list_namespaced_config_map(namespace).items
                      if m.metadata.name.startswith("digits-config-")]
             and not pods_of(api, namespace, "digits"),
             60, what="children garbage-collected")


def test_operator_restart_changes_nothing(api, operator, namespace):
    create_md(api, namespace, digits(replicas=2))
    before = wait_ready(api, namespace, "digits")
    apps = client.AppsV1Api(api)
    dep_before = apps.read_namespaced_deployment("digits-stable", namespace)

    offset = operator.log_size()
    operator.restart()
    # The new process lists everything at start and reconciles each object once: wait for that reconcile
    # of this object (it logs whether it wrote status), after which nothing else is due.
    wait_for(lambda: f"reconciled {namespace}/digits: phase Ready, status written: False" in operator.log_since(offset),
             30, what="operator restarted and reconciled the object without writing")

    after = get_md(api, namespace, "digits")
    assert after["status"] == before["status"]
    deps = apps.list_namespaced_deployment(namespace).items
    assert [d.metadata.name for d in deps] == ["digits-stable"]
    assert deps[0].metadata.resource_version == dep_before.metadata.resource_version
    assert deps[0].metadata.generation == dep_before.metadata.generation


def test_unschedulable_gpu_product_is_reported(api, operator, namespace):
    body = digits(replicas=1)
    body["spec"]["resources"]["gpu"]["product"] = "NVIDIA-B200"
    create_md(api, namespace, body)

    def unschedulable():
        md = get_md(api, namespace, "digits")
        ready = condition(md, "Ready")
        return md if ready.get("reason") == "Unschedulable" else None
    md = wait_for(unschedulable, 60, what="Unschedulable reason on Ready")
    assert "node(s) didn't match Pod's node affinity/selector" in condition(md, "Ready")["message"]
    assert condition(md, "Reconciling")["status"] == "True"
    assert md["status"]["phase"] == "Progressing"


def test_autoscaling_without_metrics_keeps_min_replicas_and_says_so(api, operator, namespace):
    """kwok's simulated pods export no metrics: the autoscaler never scales on missing data (fail-static), it
    runs minReplicas, and ScalingActive says why."""
    body = digits(replicas=1)
    del body["spec"]["replicas"]
    body["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 3, "targetInferencesPerSecondPerReplica": 50}
    create_md(api, namespace, body)
    md = wait_for(lambda: (m := get_md(api, namespace, "digits")).get("status", {}).get("readyReplicas") == 2
                  and condition(m, "ScalingActive") and m, 90, what="2 replicas and a ScalingActive condition")
    assert condition(md, "FieldsSupported")["status"] == "True"
    scaling = condition(md, "ScalingActive")
    assert scaling["status"] == "False" and scaling["reason"] == "MetricsUnavailable", scaling
    assert md["status"]["autoscaling"]["desiredReplicas"] == 2 and md["status"]["autoscaling"]["specReplicasIgnored"]


def test_invalid_spec_that_passes_the_schema_is_reported_with_the_field(api, operator, namespace):
    body = digits(replicas=1)
    body["spec"]["serving"]["dynamicBatching"]["preferredBatchSizes"] = [8, 128]
    create_md(api, namespace, body)

    def stalled():
        md = get_md(api, namespace, "digits")
        return md if condition(md, "Stalled").get("status") == "True" else None
    md = wait_for(stalled, 30, what="Stalled condition")
    assert condition(md, "Stalled")["reason"] == "InvalidSpec"
    assert condition(md, "Ready")["message"].startswith("spec.serving.dynamicBatching.preferredBatchSizes")
    assert md["status"]["phase"] == "Failed"
    assert not client.AppsV1Api(api).list_namespaced_deployment(namespace).items
