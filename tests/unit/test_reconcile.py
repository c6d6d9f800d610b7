"""reconcile() with an in-memory Kube: which calls it makes, and what status it writes."""

from datetime import datetime, timezone

from modeldeploy.adapters.kube import KubeError
from modeldeploy.reconcile.modeldeployment import reconcile
from modeldeploy.render.triton import RenderOptions

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FakeKube:
    def __init__(self, ready=True, fail_on=None):
        self.calls, self.status, self.ready, self.fail_on = [], None, ready, fail_on

    def apply(self, obj):
        self.calls.append(("apply", obj["kind"]))
        if obj["kind"] == self.fail_on:
            raise KubeError("apply", f"{obj['kind']} ns/x", RuntimeError("forbidden"))
        out = dict(obj)
        if obj["kind"] == "Deployment":
            n = obj["spec"]["replicas"] if self.ready else 0
            out["metadata"] = {**obj["metadata"], "generation": 1}
            out["status"] = {"observedGeneration": 1, "replicas": n, "updatedReplicas": n, "readyReplicas": n,
                             "availableReplicas": n}
        return out

    def patch_status(self, namespace, name, status):
        self.calls.append(("patch_status", name))
        self.status = status

    def list_pods(self, namespace, selector):
        self.calls.append(("list_pods", selector))
        return self.pods

    pods = []

    def create_secret_token(self, namespace, name, key, owner_reference, labels):
        self.calls.append(("create_secret", name))

    def read_secret_key(self, namespace, name, key):
        self.calls.append(("read_secret", name))
        return "t0ken"

    def list_config_maps(self, namespace, selector):
        self.calls.append(("list_configmaps", selector))
        return []

    def delete_config_map(self, namespace, name):
        self.calls.append(("delete_configmap", name))


def md(status=None, **spec):
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}, "replicas": 1, **spec},
            "status": status}


def test_full_reconcile_applies_children_in_order_and_writes_status():
    kube = FakeKube()
    result = reconcile(kube, md(), RenderOptions(), lambda: T0)
    assert [c for c in kube.calls if c[0] == "apply"] == [("apply", "ConfigMap"), ("apply", "ConfigMap"),
                                                          ("apply", "Service"), ("apply", "Deployment")]
    assert result.written and kube.status["phase"] == "Ready"
    assert result.deployment_generation == 1
    assert ("list_configmaps", "modeldeploy.io/modeldeployment=m,app.kubernetes.io/managed-by=modeldeploy") \
        in kube.calls  # pruned on the way into Ready


def test_second_identical_reconcile_writes_nothing():
    kube = FakeKube()
    first = reconcile(kube, md(), RenderOptions(), lambda: T0)
    kube.calls.clear()
    again = reconcile(kube, md(status=first.status), RenderOptions(), lambda: T0)
    assert not again.written and again.event is None
    assert not [c for c in kube.calls if c[0] in ("patch_status", "list_configmaps")]


def test_status_only_reconcile_applies_nothing():
    kube = FakeKube()
    observed = {"metadata": {"generation": 4}, "status": {"observedGeneration": 4, "replicas": 1,
                                                         "updatedReplicas": 1, "availableReplicas": 1}}
    result = reconcile(kube, md(), RenderOptions(), lambda: T0, observed_deployment=observed)
    assert not [c for c in kube.calls if c[0] == "apply"]
    assert result.status["phase"] == "Ready" and result.deployment_generation == 4


def test_invalid_spec_applies_nothing_and_stalls():
    kube = FakeKube()
    result = reconcile(kube, md(serving={"dynamicBatching": {}}), RenderOptions(), lambda: T0)
    assert not [c for c in kube.calls if c[0] == "apply"]
    assert result.status["phase"] == "Failed" and result.retry is None


def test_apply_failure_is_reported_and_retried():
    kube = FakeKube(fail_on="Service")
    result = reconcile(kube, md(), RenderOptions(), lambda: T0)
    assert result.retry and "apply Service ns/x" in result.retry
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ApplyFailed" and "forbidden" in ready["message"]


def test_not_ready_deployment_looks_for_unschedulable_pods():
    kube = FakeKube(ready=False)
    result = reconcile(kube, md(), RenderOptions(), lambda: T0)
    assert any(c[0] == "list_pods" for c in kube.calls)
    assert result.status["phase"] == "Progressing"


def test_fetch_failure_of_a_pod_is_the_ready_reason():
    kube = FakeKube(ready=False)
    kube.pods = [{"status": {"initContainerStatuses": [{"name": "fetch-model", "state": {"waiting": {
        "reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "message":
        "ChecksumMismatch: sha256 of m.onnx is ab12, expected cd34"}}}]}}]
    result = reconcile(kube, md(), RenderOptions(), lambda: T0)
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ModelFetchFailed"
    assert "ChecksumMismatch: sha256 of m.onnx is ab12, expected cd34" in ready["message"]


def test_prune_keeps_the_current_revision_and_the_model_source():
    from modeldeploy.reconcile.modeldeployment import prune_config_maps

    class Listing(FakeKube):
        def list_config_maps(self, namespace, selector):
            return [{"metadata": {"name": n, "labels": labels}} for n, labels in (
                ("m-config-old", {"modeldeploy.io/revision": "old"}),
                ("m-config-new", {"modeldeploy.io/revision": "new"}),
                ("m-model", {}))]

    assert prune_config_maps(Listing(), "ns", "m", keep={"new"}) == ["m-config-old"]


def test_the_agent_token_secret_is_made_when_pods_are_coming_not_on_every_apply():
    kube = FakeKube()
    first = reconcile(kube, md(), RenderOptions(), lambda: T0)
    assert ("create_secret", "m-agent-keys") in kube.calls
    kube.calls.clear()
    reconcile(kube, md(status=first.status), RenderOptions(), lambda: T0)
    assert not [call for call in kube.calls if "secret" in call[0]]
