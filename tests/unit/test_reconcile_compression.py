"""reconcile() of a ModelDeployment with spec.compression, against an in-memory Kube."""

import json

import pytest

from modeldeploy.api import constants as c
from modeldeploy.render import compression_job as r
from modeldeploy.render.triton import RenderOptions
from modeldeploy.api.spec import parse_spec
from modeldeploy.reconcile.compression import compression_key

from .fakes import Cluster

OPTIONS = RenderOptions()
CHOSEN = {"v": 1, "status": "chosen", "selected": "prune+int8-static", "file": "selected/model.onnx",
          "sha256": "ab" * 32, "message": "prune+int8-static chosen", "baseline": {"sizeBytes": 40627},
          "variants": [{"name": "prune+int8-static", "sizeBytes": 8000, "passed": True}]}
GATE_FAILED = {**CHOSEN, "status": "gate-failed", "selected": None, "file": None, "sha256": None,
               "message": "gate maxAccuracyDrop 0 pt: no variant passed"}


def cluster(job=None, job_pods=(), cache=None, deployment=None, **kw):
    """A Cluster whose watch cache already holds ``job`` and its pods, a cache record, a Deployment."""
    cl = Cluster(**kw)
    if job is not None:
        cl.watch("Job", job)
        for i, pod in enumerate(job_pods):
            meta = pod.setdefault("metadata", {})
            meta.update(name=f"job-pod-{i}", namespace="ns",
                        labels={"batch.kubernetes.io/job-name": job["metadata"]["name"]})
            cl.watch("Pod", pod)
    if cache is not None:
        cl.watch("ConfigMap", cache)
    if deployment is not None:
        cl.watch("Deployment", deployment)
    return cl


def body(status=None, uid="u", compression=None):
    return {"metadata": {"name": "m", "namespace": "ns", "uid": uid, "generation": 2},
            "spec": {"model": {"uri": "s3://b/m.onnx", "format": "onnx", "sha256": "cd" * 32}, "replicas": 1,
                     "compression": compression or {"pruning": {"amount": 0.5}, "quantization": {"mode": "int8-static"},
                                                    "evaluation": {"dataset": "builtin://digits"},
                                                    "modelStore": {"claimName": "store"}}},
            "status": status}


def _job_name(b):
    return r.job_name(compression_key(parse_spec("m", b["spec"]), OPTIONS))


def job_pod(job, message, exit_code=0, owner_uid=None):
    """A pod of ``job`` as the Job controller makes it (controller reference to the Job's uid)."""
    return {"metadata": {"creationTimestamp": "t", "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                 "uid": owner_uid or job["metadata"]["uid"], "controller": True}]},
            "status": {"containerStatuses": [{"name": "compress", "state": {
                "terminated": {"exitCode": exit_code, "message": message}}}]}}


def finished(summary, failed=False, uid="u"):
    """The Job this operator created for body(uid=uid), finished with ``summary``, and its pod."""
    cl = cluster()
    cl.reconcile(body(uid=uid))
    (job,) = cl.kube.of_kind("Job")
    cond = {"type": "Failed" if failed else "Complete", "status": "True", "reason": "PodFailurePolicy" if failed else ""}
    job["status"] = {"conditions": [cond]}
    return job, [job_pod(job, json.dumps(summary), 3 if failed else 0)]


def cond(status, ctype):
    return next(x for x in status["conditions"] if x["type"] == ctype)


def kinds(cl):
    return [kind for op, kind in cl.kube.calls if op == "apply"]


def applied(cl, kind, name):
    return cl.kube.objects[(kind, "ns", name)]


JOB = _job_name(body())


def test_first_reconcile_starts_the_job_and_serves_nothing_yet():
    cl = cluster()
    result = cl.reconcile(body())
    [created] = [name for op, name in cl.kube.calls if op == "create_job"]
    assert created == JOB and created.startswith("modeldeploy-compress-") and result.compression_job == created
    assert kinds(cl) == []  # no ConfigMap, Service or Deployment before a variant passed
    s = result.status
    assert s["phase"] == c.PHASE_PENDING
    assert cond(s, c.COND_COMPRESSED)["status"] == "Unknown"
    assert cond(s, c.COND_READY)["reason"] == c.REASON_COMPRESSING
    assert "nothing is served until a variant passes" in cond(s, c.COND_READY)["message"]
    assert s["compression"]["state"] == "Running" and s["compression"]["job"] == created
    assert "endpoints" not in s and "model" not in s


def test_a_running_job_is_followed_not_created_again():
    job, _ = finished(CHOSEN)
    job["status"] = {"active": 1}
    cl = cluster(job=job)
    cl.reconcile(body())
    assert not cl.kube.ops("create_job")


def test_a_chosen_variant_is_recorded_then_rolled_out_from_the_store():
    job, pods = finished(CHOSEN)
    cl = cluster(job=job, job_pods=pods)
    result = cl.reconcile(body())
    key = result.status["compression"]["key"]
    # the result is recorded first: a crash after this point finds it, not the Job
    assert kinds(cl) == ["ConfigMap", "Secret", "ConfigMap", "Deployment", "Service"]
    assert ("ConfigMap", "ns", r.cache_name(key)) in cl.kube.objects
    import base64
    source = json.loads(base64.b64decode(applied(cl, "Secret", "m-stable-model")["data"]["source.json"]))
    assert source == {"uri": f"pvc://store/{key}/selected/model.onnx", "version": 1, "sha256": "ab" * 32}
    volumes = applied(cl, "Deployment", "m-stable")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-source", "persistentVolumeClaim": {"claimName": "store", "readOnly": True}} in volumes
    s = result.status
    assert s["phase"] == c.PHASE_READY and cond(s, c.COND_COMPRESSED)["status"] == "True"
    assert s["compression"]["cached"] is False and s["compression"]["selected"] == "prune+int8-static"
    assert s["model"]["uri"] == f"pvc://store/{key}/selected/model.onnx" and s["model"]["sha256"] == "ab" * 32
    assert result.compression_job is None


def test_a_cached_result_needs_no_job_run_and_says_whose_it_was():
    job, pods = finished(CHOSEN, uid="producer")
    first = cluster(job=job, job_pods=pods)
    result = first.reconcile(body(uid="producer"))
    record = applied(first, "ConfigMap", r.cache_name(result.status["compression"]["key"]))
    assert record["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job",
                                                      "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}]
    for uid, cached in (("producer", False), ("someone-else", True)):
        cl = cluster(cache=record, job=job)  # the Job is kept: it vouches for the record
        result = cl.reconcile(body(uid=uid))
        assert not cl.kube.ops("create_job")
        assert result.status["compression"]["cached"] is cached
        assert result.status["phase"] == c.PHASE_READY


def test_a_gate_failure_keeps_the_previous_model_serving():
    job, pods = finished(GATE_FAILED, failed=True)
    previous_dep = {"metadata": {"name": "m-stable", "namespace": "ns", "generation": 3,
                                 "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY},
                                 "ownerReferences": [{"apiVersion": c.API_VERSION, "kind": c.KIND, "name": "m",
                                                      "uid": "u", "controller": True}]},
                    "status": {"observedGeneration": 3, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                               "availableReplicas": 1}}
    previous = {"phase": "Ready", "currentRevision": "old", "model": {"name": "m", "version": 1, "uri": "s3://old"}}
    cl = cluster(job=job, job_pods=pods, deployment=previous_dep)
    result = cl.reconcile(body(status=previous))
    assert kinds(cl) == ["ConfigMap"]  # only the cache record
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
    cl = cluster()
    result = cl.reconcile(body(compression=compression))
    assert not cl.kube.ops("create_job")
    compressed = cond(result.status, c.COND_COMPRESSED)
    assert compressed["reason"] == c.REASON_INVALID_RECIPE and compressed["message"].startswith(message)
    assert result.status["phase"] == c.PHASE_FAILED


def test_compression_needs_an_onnx_model():
    b = body()
    b["spec"]["model"]["format"] = "torchscript"
    result = cluster().reconcile(b)
    assert "needs spec.model.format onnx" in cond(result.status, c.COND_COMPRESSED)["message"]


def test_names_are_content_addressed():
    cl = cluster()
    key = cl.reconcile(body()).status["compression"]["key"]
    assert ("Job", "ns", r.job_name(key)) in cl.kube.objects


def forged_record(key, summary, owner_uid=None):
    """A cache record written by someone who can create ConfigMaps (the key is computable from public inputs)."""
    meta = {"name": r.cache_name(key), "namespace": "ns", "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY},
            "annotations": {c.ANNOTATION_COMPRESSION_KEY: key, c.ANNOTATION_PRODUCER: "u/1"}}
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": r.job_name(key), "uid": owner_uid}]
    return {"metadata": meta, "data": {r.CACHE_DATA_KEY: json.dumps(summary)}}


def key_of(b=None):
    return cluster().reconcile(b or body()).status["compression"]["key"]


@pytest.mark.parametrize("case", ["no Job behind it", "a Job of another uid", "a path outside the key",
                                  "a path with ..", "unknown fields"])
def test_a_forged_cache_record_is_not_trusted(case):
    key = key_of()
    evil = {**CHOSEN, "file": "selected/model.onnx"}
    job = None
    if case == "no Job behind it":
        record = forged_record(key, evil)
    elif case == "a Job of another uid":
        job, _ = finished(CHOSEN)
        record = forged_record(key, evil, owner_uid="someone-elses-job")
    else:
        job, _ = finished(CHOSEN)
        change = {"a path outside the key": {"file": "../other/selected/model.onnx"},
                  "a path with ..": {"file": "selected/../../etc/model.onnx"},
                  "unknown fields": {"evil": "x", "baseline": {"sizeBytes": 1, "injected": {"a": 1}}}}[case]
        record = forged_record(key, {**CHOSEN, **change}, owner_uid=job["metadata"]["uid"])
    cl = cluster(cache=record, job=job)
    status = cl.reconcile(body()).status
    if case == "unknown fields":  # trusted (our Job vouches), but only known, bounded fields reach status
        assert status["compression"]["baseline"] == {"sizeBytes": 1}
        assert "evil" not in json.dumps(status)
        return
    # the record is not trusted: nothing is rolled out from it, no path from it reaches any object
    assert kinds(cl) == [] and status["compression"]["state"] != "Succeeded"
    if case == "no Job behind it":
        assert cl.kube.ops("create_job")  # the operator runs its own Job instead
        assert status["compression"]["state"] == "Running"


def test_the_served_path_is_always_selected_model_onnx_under_the_key():
    job, pods = finished(CHOSEN)
    result = cluster(job=job, job_pods=pods).reconcile(body())
    key = result.status["compression"]["key"]
    assert result.status["model"]["uri"] == f"pvc://store/{key}/selected/model.onnx"


def test_a_termination_message_with_a_bad_path_is_a_failure_not_a_result():
    job, _ = finished(CHOSEN)
    cl = cluster(job=job, job_pods=[job_pod(job, json.dumps({**CHOSEN, "file": "../../x/model.onnx"}))])
    result = cl.reconcile(body())
    assert result.status["compression"]["state"] == "Failed"
    assert "file: must be selected/model.onnx" in result.status["compression"]["message"]
    assert kinds(cl) == []  # nothing recorded, nothing rolled out


def test_pods_that_are_not_the_jobs_own_are_ignored():
    job, _ = finished(CHOSEN)
    result = cluster(job=job, job_pods=[job_pod(job, json.dumps(CHOSEN), owner_uid="not-the-job")]).reconcile(body())
    assert result.status["compression"]["state"] == "Failed"
    assert "its pod is gone" in result.status["compression"]["message"]


def test_a_job_this_operator_did_not_create_is_not_followed():
    job, pods = finished(CHOSEN)
    job["metadata"]["ownerReferences"] = []  # e.g. created by hand under the computable name
    cl = cluster(job=job, job_pods=pods)
    result = cl.reconcile(body())
    assert result.status["compression"]["state"] == "Failed"
    assert "was not created by modeldeploy" in result.status["compression"]["message"]
    assert kinds(cl) == []
