"""The reconciler under strategy: Canary, against a fake API server and the real cache: revisions side
by side, traffic objects, promotion without restarting pods, rollback, holding without metrics."""

from datetime import timedelta

from modeldeploy.api import constants as c
from modeldeploy.policy import commands

from .fakes import T0, Cluster

V1 = {"uri": "s3://b/1/model.onnx", "format": "onnx", "name": "m", "version": 1}
V2 = {**V1, "uri": "s3://b/2/model.onnx", "version": 2}


def md(model=V1, canary=None, replicas=2):
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"model": model, "replicas": replicas,
                     "rollout": {"strategy": "Canary", "canary": canary or {"steps": [{"setWeight": 50}],
                                                                           "skipAnalysis": True}}}}


class Clock:
    def __init__(self):
        self.t = T0

    def __call__(self):
        return self.t


def cluster(**kw):
    cl = Cluster(**kw)
    cl.clock = Clock()
    cl.reconciler.now = cl.clock
    return cl


def ready_pods(cl, revision, n, prefix):
    for i in range(n):
        cl.watch("Pod", {"metadata": {"name": f"{prefix}-{i}", "namespace": "ns",
                                      "annotations": {c.ANNOTATION_OWNER: "m"},
                                      "labels": {c.LABEL_INSTANCE: "m", c.LABEL_COMPONENT: c.COMPONENT_PREDICTOR,
                                                 c.LABEL_REVISION: revision}},
                         "status": {"phase": "Running", "podIP": f"10.0.0.{i + 1}",
                                    "conditions": [{"type": "Ready", "status": "True"}]}})


def edit(cl, **spec):
    stored = cl.md()
    stored["spec"].update(spec)
    stored["metadata"]["generation"] += 1
    cl.sync()


def deployments(cl):
    return {d["metadata"]["name"]: d["spec"]["replicas"] for d in cl.kube.of_kind("Deployment")}


def cond(status, ctype):
    return next((x for x in status["conditions"] if x["type"] == ctype), None)


def test_the_first_revision_is_served_at_once_by_a_deployment_of_its_own():
    cl = cluster()
    result = cl.reconcile(md())
    rev = result.status["currentRevision"]
    assert deployments(cl) == {f"m-{rev}": 2} and result.status["deployment"] == f"m-{rev}"
    dep = cl.kube.objects[("Deployment", "ns", f"m-{rev}")]
    assert dep["spec"]["selector"]["matchLabels"][c.LABEL_POD_SET] == rev
    assert result.status["phase"] == c.PHASE_READY and "canary" not in result.status or \
        result.status.get("canary", {}).get("phase") is None


def test_a_new_model_runs_beside_stable_and_is_promoted_without_restarting_either():
    cl = cluster()
    stable = cl.reconcile(md(canary={"steps": [{"setWeight": 50}, {"pause": {"duration": "30s"}}],
                                     "skipAnalysis": True})).status["currentRevision"]
    ready_pods(cl, stable, 2, "stable")
    edit(cl, model=V2)
    first = cl.reconciler.reconcile("ns", "m")
    canary = first.status["canary"]["revision"]
    assert canary != stable and first.status["currentRevision"] == stable
    assert deployments(cl) == {f"m-{stable}": 2, f"m-{canary}": 1}  # 50% of 2, stable kept until canary is Ready
    assert first.status["canary"]["phase"] == "Progressing"
    assert cond(first.status, c.COND_READY)["status"] == "False"
    assert cond(first.status, c.COND_RECONCILING)["status"] == "True"
    assert ("Normal", "RolloutStarted") in [(t, r) for t, r, _ in first.events]
    stable_template = cl.kube.objects[("Deployment", "ns", f"m-{stable}")]["spec"]["template"]

    ready_pods(cl, canary, 1, "canary")
    second = cl.reconciler.reconcile("ns", "m")
    assert second.status["canary"]["weight"] == 50 and deployments(cl)[f"m-{stable}"] == 1  # replica ratio
    assert second.status["canary"]["phase"] == "Paused" and second.requeue_after == 30

    cl.clock.t += timedelta(seconds=31)
    promoting = cl.reconciler.reconcile("ns", "m")
    ready_pods(cl, canary, 2, "canary")
    assert promoting.status["canary"]["phase"] == "Promoting"
    cl.reconciler.reconcile("ns", "m")  # the canary Deployment runs every replica: stable moves to it
    status = cl.md()["status"]
    assert status["currentRevision"] == canary and status["deployment"] == f"m-{canary}"
    assert status["model"]["version"] == 2
    assert f"m-{stable}" not in deployments(cl)  # the old revision's Deployment is gone
    # the stable pods were never re-rendered while the canary ran
    assert cl.kube.objects.get(("Deployment", "ns", f"m-{stable}")) is None and stable_template
    cl.reconciler.reconcile("ns", "m")
    assert cl.md()["status"]["canary"]["phase"] == "Promoted"
    assert cl.md()["status"]["canary"]["history"][0]["outcome"] == "Promoted"


def test_with_analysis_and_no_metrics_the_canary_holds_and_is_never_promoted():
    cl = cluster()
    stable = cl.reconcile(md(canary={"steps": [{"setWeight": 50}],
                                     "analysis": {"interval": "10s"}})).status["currentRevision"]
    ready_pods(cl, stable, 2, "stable")
    edit(cl, model=V2)
    cl.reconciler.reconcile("ns", "m")
    canary = cl.md()["status"]["canary"]["revision"]
    ready_pods(cl, canary, 2, "canary")
    for _ in range(5):
        cl.clock.t += timedelta(seconds=15)
        result = cl.reconciler.reconcile("ns", "m")
    assert result.status["canary"]["phase"] == "Holding"
    assert cond(result.status, "MetricsAvailable")["status"] == "False"
    assert "no Prometheus is configured" in cond(result.status, "MetricsAvailable")["message"]
    assert result.status["currentRevision"] == stable  # never promoted unjudged, never rolled back


def test_gateway_routing_splits_by_weight_with_role_services_and_a_header_rule():
    routing = {"parentRefs": [{"name": "sandbox", "namespace": "gw"}],
               "headerMatch": {"name": "x-canary", "value": "1"}}
    cl = cluster()
    stable = cl.reconcile(md(canary={"steps": [{"setWeight": 10}, {"pause": {}}], "skipAnalysis": True,
                                     "trafficRouting": routing})).status["currentRevision"]
    route = cl.kube.objects[("HTTPRoute", "ns", "m")]
    assert [[(b["name"], b["weight"]) for b in r["backendRefs"]] for r in route["spec"]["rules"]] == \
        [[("m-stable", 100)]]
    assert cl.kube.objects[("Service", "ns", "m-stable")]["spec"]["selector"][c.LABEL_REVISION] == stable
    ready_pods(cl, stable, 2, "stable")
    edit(cl, model=V2)
    cl.reconciler.reconcile("ns", "m")
    canary = cl.md()["status"]["canary"]["revision"]
    assert deployments(cl)[f"m-{stable}"] == 2  # with a router, stable keeps every replica
    ready_pods(cl, canary, 1, "canary")
    result = cl.reconciler.reconcile("ns", "m")
    route = cl.kube.objects[("HTTPRoute", "ns", "m")]
    assert [[(b["name"], b["weight"]) for b in r["backendRefs"]] for r in route["spec"]["rules"]] == \
        [[("m-canary", 1)], [("m-stable", 90), ("m-canary", 10)]]
    assert route["spec"]["rules"][0]["matches"][0]["headers"] == [{"type": "Exact", "name": "x-canary", "value": "1"}]
    assert cl.kube.objects[("Service", "ns", "m-canary")]["spec"]["selector"][c.LABEL_REVISION] == canary
    cl.clock.t += timedelta(seconds=1)
    result = cl.reconciler.reconcile("ns", "m")
    assert result.status["canary"]["phase"] == "Paused"  # until promoted by hand

    # modeldeploy promote: an annotation the operator clears once status records the outcome
    stored = cl.md()
    stored["metadata"].setdefault("annotations", {})[commands.ANNOTATION] = commands.encode(
        commands.Command("promote", "id-1", revision=canary))
    cl.sync()
    result = cl.reconciler.reconcile("ns", "m")
    assert result.status["canary"]["lastCommand"]["id"] == "id-1"
    assert ("patch_md", "m") in cl.kube.calls  # the annotation is removed after the status write
    assert commands.ANNOTATION not in cl.md()["metadata"]["annotations"]


def test_abort_sends_all_traffic_back_and_removes_the_canary():
    cl = cluster()
    stable = cl.reconcile(md(canary={"steps": [{"setWeight": 50}, {"pause": {}}], "skipAnalysis": True})
                          ).status["currentRevision"]
    ready_pods(cl, stable, 2, "stable")
    edit(cl, model=V2)
    cl.reconciler.reconcile("ns", "m")
    canary = cl.md()["status"]["canary"]["revision"]
    ready_pods(cl, canary, 1, "canary")
    cl.reconciler.reconcile("ns", "m")
    stored = cl.md()
    stored["metadata"].setdefault("annotations", {})[commands.ANNOTATION] = commands.encode(
        commands.Command("abort", "id-2"))
    cl.sync()
    result = cl.reconciler.reconcile("ns", "m")
    assert result.status["canary"]["phase"] in ("RollingBack", "Aborted")
    assert deployments(cl) == {f"m-{stable}": 2, f"m-{canary}": 0}
    for i in range(1):
        cl.cache.delete("Pod", "ns", f"canary-{i}")
    result = cl.reconciler.reconcile("ns", "m")
    assert result.status["canary"]["phase"] == "Aborted" and result.status["currentRevision"] == stable
    assert cond(result.status, c.COND_STALLED)["status"] == "True"
    cl.reconciler.reconcile("ns", "m")
    assert deployments(cl) == {f"m-{stable}": 2}  # the canary's Deployment is deleted


def test_switching_from_rolling_keeps_the_stable_deployment_and_starts_no_canary():
    cl = cluster()
    rolling = md()
    rolling["spec"].pop("rollout")
    first = cl.reconcile(rolling)
    assert first.status["deployment"] == "m-stable"
    ready_pods(cl, first.status["currentRevision"], 2, "stable")
    edit(cl, rollout={"strategy": "Canary", "canary": {"steps": [{"setWeight": 50}], "skipAnalysis": True}})
    cl.kube.calls.clear()
    result = cl.reconciler.reconcile("ns", "m")
    assert result.status["deployment"] == "m-stable" and result.status["currentRevision"] == \
        first.status["currentRevision"]
    assert deployments(cl) == {"m-stable": 2} and (result.status.get("canary") or {}).get("phase") is None
    assert not cl.kube.ops("apply")  # nothing re-rendered: same template, same model


def test_a_canary_in_progress_checks_the_token_secret_once_a_minute_and_a_command_recreates_it():
    from modeldeploy.reconcile import agents as rmd

    cl = cluster()
    stable = cl.reconcile(md(canary={"steps": [{"setWeight": 50}, {"pause": {}}],
                                     "skipAnalysis": True})).status["currentRevision"]
    ready_pods(cl, stable, 2, "stable")
    edit(cl, model=V2)
    creates = lambda: cl.kube.calls.count(("create_secret", "m-agent-keys"))  # noqa: E731
    cl.clock.t += rmd.RECHECK_TOKEN
    before = creates()
    for _ in range(10):  # two revisions side by side: every round wants the Secret to exist
        cl.clock.t += timedelta(seconds=5)
        cl.reconciler.reconcile("ns", "m")
    assert creates() - before == 1  # once in 50 s, not on every round
    cl.clock.t += rmd.RECHECK_TOKEN
    cl.reconciler.reconcile("ns", "m")
    assert creates() - before == 2

    del cl.kube.objects[("Secret", "ns", "m-agent-keys")]  # deleted by someone: the next command recreates it
    from modeldeploy.api.spec import parse_spec

    owner = rmd.Owner(name="m", namespace="ns", uid="u")
    assert cl.reconciler.commands.token(owner, parse_spec("m", cl.md()["spec"])) == "t0ken"
    assert ("Secret", "ns", "m-agent-keys") in cl.kube.objects
