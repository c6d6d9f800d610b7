"""reconcile() of a ModelDeployment with spec.compression, against an in-memory Kube."""

import json

import pytest

from modeldeploy.api import constants as c
from modeldeploy.reconcile.modeldeployment import reconcile
from modeldeploy.render import compression_job as r
from modeldeploy.render.triton import RenderOptions

from .test_reconcile import T0, FakeKube

OPTIONS = RenderOptions()
CHOSEN = {"v": 1, "status": "chosen", "selected": "prune+int8-static", "file": "selected/model.onnx",
          "sha256": "ab" * 32, "message": "prune+int8-static chosen", "baseline": {"sizeBytes": 40627},
          "variants": [{"name": "prune+int8-static", "sizeBytes": 8000, "passed": True}]}
GATE_FAILED = {**CHOSEN, "status": "gate-failed", "selected": None, "file": None, "sha256": None,
               "message": "gate maxAccuracyDrop 0 pt: no variant passed"}


class CompressionKube(FakeKube):
    def __init__(self, job=None, job_pods=(), cache=None, deployment=None, **kw):
        super().__init__(**kw)
        self.job, self.job_pods, self.cache, self.deployment = job, list(job_pods), cache, deployment
        self.applied = []

    def apply(self, obj):
        self.applied.append(obj)
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("modeldeploy-compressed-"):
            self.calls.append(("apply", "cache"))
            self.cache = obj
            return obj
        return super().apply(obj)

    def get_config_map(self, namespace, name):
        self.calls.append(("get_configmap", name))
        return self.cache if self.cache and self.cache["metadata"]["name"] == name else None

    def get_job(self, namespace, name):
        self.calls.append(("get_job", name))
        return self.job

    def create_job(self, job):
        self.calls.append(("create_job", job["metadata"]["name"]))
        self.job = {**job, "status": {}}
        return self.job

    def get_deployment(self, namespace, name):
        self.calls.append(("get_deployment", name))
        return self.deployment

    def list_pods(self, namespace, selector):
        if selector.startswith("batch.kubernetes.io/job-name="):
            self.calls.append(("list_job_pods", selector))
            return self.job_pods
        return super().list_pods(namespace, selector)


def body(status=None, uid="u", compression=None):
    return {"metadata": {"name": "m", "namespace": "ns", "uid": uid, "generation": 2},
            "spec": {"model": {"uri": "s3://b/m.onnx", "format": "onnx", "sha256": "cd" * 32}, "replicas": 1,
                     "compression": compression or {"pruning": {"amount": 0.5}, "quantization": {"mode": "int8-static"},
                                                    "evaluation": {"dataset": "builtin://digits"},
                                                    "modelStore": {"claimName": "store"}}},
            "status": status}


def finished(summary, failed=False):
    cond = {"type": "Failed" if failed else "Complete", "status": "True", "reason": "PodFailurePolicy" if failed else ""}
    job = {"metadata": {"name": "j", "annotations": {c.ANNOTATION_OWNER: "m"}}, "status": {"conditions": [cond]}}
    pod = {"metadata": {"creationTimestamp": "t"}, "status": {"containerStatuses": [{"name": "compress", "state": {
        "terminated": {"exitCode": 3 if failed else 0, "message": json.dumps(summary)}}}]}}
    return job, [pod]


def cond(status, ctype):
    return next(x for x in status["conditions"] if x["type"] == ctype)


def kinds(kube):
    return [o["kind"] for o in kube.applied]


def test_first_reconcile_starts_the_job_and_serves_nothing_yet():
    kube = CompressionKube()
    result = reconcile(kube, body(), OPTIONS, lambda: T0)
    [created] = [name for op, name in kube.calls if op == "create_job"]
    assert created.startswith("modeldeploy-compress-") and result.compression_job == created
    assert kinds(kube) == []  # no ConfigMap, Service or Deployment before a variant passed
    s = result.status
    assert s["phase"] == c.PHASE_PENDING
    assert cond(s, c.COND_COMPRESSED)["status"] == "Unknown"
    assert cond(s, c.COND_READY)["reason"] == c.REASON_COMPRESSING
    assert "nothing is served until a variant passes" in cond(s, c.COND_READY)["message"]
    assert s["compression"]["state"] == "Running" and s["compression"]["job"] == created
    assert "endpoints" not in s and "model" not in s


def test_a_running_job_is_followed_not_created_again():
    kube = CompressionKube(job={"metadata": {"name": "j"}, "status": {"active": 1}})
    reconcile(kube, body(), OPTIONS, lambda: T0)
    assert not [1 for op, _ in kube.calls if op == "create_job"]


def test_a_chosen_variant_is_recorded_then_rolled_out_from_the_store():
    job, pods = finished(CHOSEN)
    kube = CompressionKube(job=job, job_pods=pods)
    result = reconcile(kube, body(), OPTIONS, lambda: T0)
    key = result.status["compression"]["key"]
    # the result is recorded first: a crash after this point finds it, not the Job
    assert kube.applied[0]["metadata"]["name"] == r.cache_name(key)
    assert kinds(kube) == ["ConfigMap", "ConfigMap", "ConfigMap", "Service", "Deployment"]
    source = json.loads(kube.applied[1]["data"]["source.json"])  # ConfigMap m-model: what pods fetch
    assert source == {"uri": f"pvc://store/{key}/selected/model.onnx", "version": 1, "sha256": "ab" * 32}
    volumes = kube.applied[-1]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-source", "persistentVolumeClaim": {"claimName": "store", "readOnly": True}} in volumes
    s = result.status
    assert s["phase"] == c.PHASE_READY and cond(s, c.COND_COMPRESSED)["status"] == "True"
    assert s["compression"]["cached"] is False and s["compression"]["selected"] == "prune+int8-static"
    assert s["model"]["uri"] == f"pvc://store/{key}/selected/model.onnx" and s["model"]["sha256"] == "ab" * 32
    assert result.compression_job is None


def test_a_cached_result_needs_no_job_and_says_whose_it_was():
    job, pods = finished(CHOSEN)
    first = CompressionKube(job=job, job_pods=pods)
    reconcile(first, body(uid="producer"), OPTIONS, lambda: T0)
    for uid, cached in (("producer", False), ("someone-else", True)):
        kube = CompressionKube(cache=first.cache)
        result = reconcile(kube, body(uid=uid), OPTIONS, lambda: T0)
        assert not [op for op, _ in kube.calls if op in ("get_job", "create_job", "list_job_pods")]
        assert result.status["compression"]["cached"] is cached
        assert result.status["phase"] == c.PHASE_READY


def test_a_gate_failure_keeps_the_previous_model_serving():
    job, pods = finished(GATE_FAILED, failed=True)
    previous_dep = {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "replicas": 1,
                    "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}}
    previous = {"phase": "Ready", "currentRevision": "old", "model": {"name": "m", "version": 1, "uri": "s3://old"}}
    kube = CompressionKube(job=job, job_pods=pods, deployment=previous_dep)
    result = reconcile(kube, body(status=previous), OPTIONS, lambda: T0)
    assert kinds(kube) == ["ConfigMap"] and kube.cache is not None  # only the cache record
    s = result.status
    assert s["phase"] == c.PHASE_FAILED and s["currentRevision"] == "old" and s["model"]["uri"] == "s3://old"
    ready, stalled = cond(s, c.COND_READY), cond(s, c.COND_STALLED)
    assert ready["status"] == "False" and ready["reason"] == c.REASON_GATE_FAILED
    assert ready["message"] == ("gate maxAccuracyDrop 0 pt: no variant passed; "
                                "the previous model keeps serving (1/1 available)")
    assert stalled["status"] == "True" and cond(s, c.COND_RECONCILING)["status"] == "False"
    assert s["compression"]["state"] == "GateFailed" and s["readyReplicas"] == 1


@pytest.mark.parametrize("compression,message", [
    ({"quantization": {"mode": "fp16"}, "select": "biggest", "modelStore": {"claimName": "s"}},
     "spec.compression: recipe: select: 'biggest' is neither smallest, fastest"),
    ({"quantization": {"mode": "fp16"}, "modelStore": {"claimName": "s"}},
     "spec.compression: evaluation.dataset: required"),
])
def test_an_invalid_recipe_stalls_without_a_job(compression, message):
    kube = CompressionKube()
    result = reconcile(kube, body(compression=compression), OPTIONS, lambda: T0)
    assert not [op for op, _ in kube.calls if op in ("create_job", "get_job")]
    compressed = cond(result.status, c.COND_COMPRESSED)
    assert compressed["reason"] == c.REASON_INVALID_RECIPE and compressed["message"].startswith(message)
    assert result.status["phase"] == c.PHASE_FAILED


def test_compression_needs_an_onnx_model():
    b = body()
    b["spec"]["model"]["format"] = "torchscript"
    result = reconcile(CompressionKube(), b, OPTIONS, lambda: T0)
    assert "needs spec.model.format onnx" in cond(result.status, c.COND_COMPRESSED)["message"]


def test_names_are_content_addressed():
    kube = CompressionKube()
    key = reconcile(kube, body(), OPTIONS, lambda: T0).status["compression"]["key"]
    assert kube.job["metadata"]["name"] == r.job_name(key)
