"""The reconciler against a fake API server and the real watch cache: which requests it makes, what status it writes."""

import pytest

from modeldeploy.api import constants as c

from .fakes import Cluster


def md(status=None, uid="u", **spec):
    return {"metadata": {"name": "m", "namespace": "ns", "uid": uid, "generation": 1},
            "spec": {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}, "replicas": 1, **spec},
            "status": status}


def cond(status, ctype):
    return next(x for x in status["conditions"] if x["type"] == ctype)


def test_first_reconcile_reads_once_per_child_then_applies_in_order_and_writes_status():
    cluster = Cluster()
    result = cluster.reconcile(md())
    requests = [call for call in cluster.kube.calls if call[0] in ("apply", "get")]
    # a cache miss is checked once (is the name taken by someone else's object?), then applied
    assert requests == [("get", "Secret"), ("apply", "Secret"), ("get", "ConfigMap"), ("apply", "ConfigMap"),
                        ("get", "Deployment"), ("apply", "Deployment"), ("get", "Service"), ("apply", "Service")]
    assert cluster.kube.ops("create_secret") == [("create_secret", "m-agent-keys")]
    assert result.written and result.status["phase"] == "Ready"
    assert cluster.kube.ops("patch_status") == [("patch_status", "m")]


def test_a_reconcile_with_nothing_changed_makes_no_request():
    cluster = Cluster()
    cluster.reconcile(md())
    cluster.kube.calls.clear()
    again = cluster.reconciler.reconcile("ns", "m")
    assert not again.written and again.event is None
    assert cluster.kube.calls == []


def test_a_manual_edit_of_a_child_is_taken_back():
    cluster = Cluster()
    cluster.reconcile(md())
    edit_by_hand(cluster)
    cluster.kube.calls.clear()
    cluster.reconciler.reconcile("ns", "m")
    assert cluster.kube.ops("apply") == [("apply", "Deployment")]
    assert cluster.kube.objects[("Deployment", "ns", "m-stable")]["spec"]["replicas"] == 1


def edit_by_hand(cluster):
    """`kubectl edit deployment m-stable` setting replicas 5, as the API server records it."""
    dep = cluster.kube.objects[("Deployment", "ns", "m-stable")]
    dep["spec"]["replicas"] = 5
    dep["metadata"]["generation"] += 1
    dep["metadata"]["managedFields"].append({"manager": "kubectl-edit", "operation": "Update",
                                             "fieldsV1": {"f:spec": {"f:replicas": {}}}})
    cluster.sync()


def restarted(cluster):
    """The same cluster seen by a new operator process (an empty memory, a new leader): its cache holds what
    the watches deliver (Secrets are not watched)."""
    import copy

    from modeldeploy.adapters.cache import ObjectCache
    from modeldeploy.reconcile.modeldeployment import Reconciler

    cluster.cache = ObjectCache()
    for (kind, _, _), obj in cluster.kube.objects.items():
        if kind != "Secret":
            cluster.cache.store(kind, copy.deepcopy(obj))
    cluster.reconciler = Reconciler(view=cluster.cache, kube=cluster.kube, options=cluster.reconciler.options,
                                    now=cluster.reconciler.now, agents=None)
    return cluster


def test_a_restarted_operator_applies_nothing_that_nobody_changed():
    cluster = Cluster()
    cluster.reconcile(md())
    restarted(cluster).kube.calls.clear()
    result = cluster.reconciler.reconcile("ns", "m")
    assert not result.written
    # the model source Secret is not watched: one read to see its hash and its writers, nothing applied
    assert cluster.kube.calls == [("get", "Secret")]
    cluster.kube.calls.clear()
    cluster.reconciler.reconcile("ns", "m")
    assert cluster.kube.calls == []  # that read is kept: the next round (Kopf's next event) reads nothing


def test_a_restarted_operator_takes_back_an_edit_made_while_it_was_down():
    cluster = Cluster()
    cluster.reconcile(md())
    edit_by_hand(cluster)
    restarted(cluster).kube.calls.clear()
    cluster.reconciler.reconcile("ns", "m")
    assert cluster.kube.ops("apply") == [("apply", "Deployment")]
    assert cluster.kube.objects[("Deployment", "ns", "m-stable")]["spec"]["replicas"] == 1


def test_invalid_spec_applies_nothing_and_stalls():
    cluster = Cluster()
    result = cluster.reconcile(md(serving={"dynamicBatching": {}}))
    assert not cluster.kube.ops("apply")
    assert result.status["phase"] == "Failed" and result.retry is None
    assert cond(result.status, c.COND_STALLED)["status"] == "True"


def test_apply_failure_is_reported_and_retried():
    cluster = Cluster(fail_on="Service")
    result = cluster.reconcile(md())
    assert result.retry and "apply Service ns/m" in result.retry
    ready = cond(result.status, c.COND_READY)
    assert ready["reason"] == "ApplyFailed" and "forbidden" in ready["message"]
    assert cond(result.status, c.COND_STALLED)["status"] == "False"


def test_a_child_the_api_server_rejects_stalls_with_its_message_and_is_not_retried():
    cluster = Cluster(fail_on="Deployment", status_code=422)
    result = cluster.reconcile(md())
    assert result.retry is None and result.status["phase"] == "Failed"
    assert cond(result.status, c.COND_STALLED)["status"] == "True"
    assert "apply Deployment ns/m-stable" in cond(result.status, c.COND_READY)["message"]


@pytest.mark.parametrize("kind,name", [("Service", "m"), ("ConfigMap", None), ("Secret", "m-stable-model"),
                                       ("Secret", "m-agent-keys")])
def test_an_object_that_is_not_ours_is_never_taken_over(kind, name):
    cluster = Cluster()
    if name is None:  # the config ConfigMap of the revision the spec renders to
        from modeldeploy.api.spec import parse_spec
        from modeldeploy.render import names
        from modeldeploy.render.triton import RenderOptions
        o = RenderOptions()
        name = names.config_map_name("m", names.revision_of(parse_spec("m", md()["spec"]), o.triton_image,
                                                             o.fetcher_image))
    foreign = {"metadata": {"name": name, "namespace": "ns", "labels": {"team": "other"}}, "data": {"x": "1"}}
    cluster.kube.put(kind, foreign)  # not labelled as ours: the watch cache never sees it
    result = cluster.reconcile(md())
    ready = cond(result.status, c.COND_READY)
    assert ready["reason"] == "NameTaken" and f"{kind} ns/{name}" in ready["message"]
    assert cond(result.status, c.COND_STALLED)["status"] == "True" and result.retry is None
    assert cluster.kube.objects[(kind, "ns", name)]["metadata"]["labels"] == {"team": "other"}
    assert "ownerReferences" not in cluster.kube.objects[(kind, "ns", name)]["metadata"]


def test_a_labelled_object_owned_by_someone_else_is_not_trusted():
    cluster = Cluster()
    cluster.watch("Service", {"metadata": {"name": "m", "namespace": "ns",
                                           "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY},
                                           "ownerReferences": [{"apiVersion": c.API_VERSION, "kind": c.KIND,
                                                                "name": "m", "uid": "another", "controller": True}]}})
    result = cluster.reconcile(md())
    assert cond(result.status, c.COND_READY)["reason"] == "NameTaken"
    assert not [call for call in cluster.kube.ops("apply") if call[1] == "Service"]


def test_the_pods_problem_is_the_ready_reason():
    cluster = Cluster(ready=False)
    cluster.watch("Pod", {"metadata": {"name": "p", "namespace": "ns", "annotations": {c.ANNOTATION_OWNER: "m"},
                                       "labels": {c.LABEL_INSTANCE: "m", c.LABEL_COMPONENT: c.COMPONENT_PREDICTOR}},
                          "status": {"initContainerStatuses": [{"name": "fetch-model", "state": {"waiting": {
                              "reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "message":
                              "ChecksumMismatch: sha256 of m.onnx is ab12,\nexpected cd34"}}}]}})
    result = cluster.reconcile(md())
    ready = cond(result.status, c.COND_READY)
    assert ready["reason"] == "ModelFetchFailed"
    assert "ChecksumMismatch: sha256 of m.onnx is ab12, expected cd34" in ready["message"]  # one line
    assert not cluster.kube.ops("list")  # the pods came from the cache


def test_a_deployment_that_cannot_create_pods_says_why_at_once():
    cluster = Cluster(ready=False)
    cluster.reconcile(md())
    dep = cluster.kube.objects[("Deployment", "ns", "m-stable")]
    dep["status"]["conditions"] = [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                    "message": 'pods "m-stable-x" is forbidden: violates PodSecurity "restricted"'}]
    cluster.sync()
    result = cluster.reconciler.reconcile("ns", "m")
    ready = cond(result.status, c.COND_READY)
    assert ready["reason"] == "FailedCreate" and 'violates PodSecurity "restricted"' in ready["message"]


def test_stale_config_maps_are_pruned_by_observation_and_running_ones_kept():
    cluster = Cluster()
    owner = [{"apiVersion": c.API_VERSION, "kind": c.KIND, "name": "m", "uid": "u", "controller": True}]
    for name, rev in (("m-config-gone", "gone"), ("m-config-running", "running")):
        cluster.watch("ConfigMap", {"metadata": {"name": name, "namespace": "ns", "ownerReferences": owner,
                                                 "labels": {c.LABEL_REVISION: rev, c.LABEL_MANAGED_BY: c.MANAGED_BY}}})
    cluster.watch("Pod", {"metadata": {"name": "old-pod", "namespace": "ns", "annotations": {c.ANNOTATION_OWNER: "m"},
                                       "labels": {c.LABEL_INSTANCE: "m", c.LABEL_COMPONENT: c.COMPONENT_PREDICTOR,
                                                  c.LABEL_REVISION: "running"}}, "status": {"phase": "Running"}})
    cluster.reconcile(md())
    assert cluster.kube.ops("delete") == [("delete", "ConfigMap/m-config-gone")]
    assert ("ConfigMap", "ns", "m-config-running") in cluster.kube.objects


def test_the_old_model_source_config_map_goes_once_no_old_pod_is_left():
    cluster = Cluster()
    owner = [{"apiVersion": c.API_VERSION, "kind": c.KIND, "name": "m", "uid": "u", "controller": True}]
    cluster.watch("ConfigMap", {"metadata": {"name": "m-model", "namespace": "ns", "ownerReferences": owner,
                                             "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY}}})
    old_pod = cluster.watch("Pod", {"metadata": {"name": "old", "namespace": "ns",
                                                 "annotations": {c.ANNOTATION_OWNER: "m"},
                                                 "labels": {c.LABEL_INSTANCE: "m", c.LABEL_REVISION: "old",
                                                            c.LABEL_COMPONENT: c.COMPONENT_PREDICTOR}},
                                    "status": {"phase": "Running"}})
    cluster.reconcile(md())
    assert not cluster.kube.ops("delete")  # an old pod still mounts it
    cluster.cache.delete("Pod", "ns", old_pod["metadata"]["name"])
    cluster.reconciler.reconcile("ns", "m")
    assert cluster.kube.ops("delete") == [("delete", "ConfigMap/m-model")]


def test_the_agent_token_secret_is_made_when_pods_are_coming_not_on_every_reconcile():
    cluster = Cluster()
    cluster.reconcile(md())
    cluster.kube.calls.clear()
    cluster.reconciler.reconcile("ns", "m")
    assert not [call for call in cluster.kube.calls if "secret" in call[0].lower()]


def test_a_deleted_model_deployment_is_gone():
    cluster = Cluster()
    assert cluster.reconciler.reconcile("ns", "nothing").gone


def test_a_presigned_url_shows_redacted_in_status_and_a_second_reconcile_changes_nothing():
    cluster = Cluster()
    signed = "https://store.example.com/m.onnx?X-Amz-Signature=s3cr3t&X-Amz-Expires=600"
    result = cluster.reconcile(md(model={"uri": signed, "format": "onnx"}))
    assert result.status["model"]["uri"] == "https://store.example.com/m.onnx?…"
    assert "s3cr3t" not in str(result.status)
    cluster.kube.calls.clear()
    again = cluster.reconciler.reconcile("ns", "m")  # compared by fingerprint: no swap, no write
    assert not again.written and cluster.kube.calls == []
