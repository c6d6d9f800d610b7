"""The reconciler when only the model changed: no new revision; the pods' agents swap it, one at a time."""

from modeldeploy.adapters.agent import AgentError
from modeldeploy.api import constants as c
from modeldeploy.api.redact import uri_fingerprint
from modeldeploy.reconcile.modeldeployment import VERIFY_SECONDS

from .fakes import T0, Cluster

V1 = {"uri": "s3://b/1/model.onnx", "format": "onnx", "name": "m", "version": 1}
V2 = {**V1, "uri": "s3://b/2/model.onnx", "version": 2}


class FakeAgents:
    def __init__(self, served):
        self.served = dict(served)  # url -> model dict
        self.puts = []
        self.tokens = []
        self.gets = 0

    def get(self, url):
        self.gets += 1
        if url not in self.served:
            raise AgentError("GET /v1/model: connection refused")
        return {"served": self.served[url], "desired": None, "state": "Ready"}

    token = "t0ken"  # what the token Secret holds (None: do not check)

    def put(self, url, body, token=None):
        if self.token is not None:
            assert token == self.token  # the agent token Secret's value, read from the API (owner checked)
        self.tokens.append(token)
        self.puts.append((url, body))
        self.served[url] = body  # this fake swaps at once


def md(model, generation=1):
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": generation},
            "spec": {"model": model, "replicas": 2}}


def serving(cluster, model=V1, ips=("10.0.0.1", "10.0.0.2")):
    """A ModelDeployment serving ``model`` on ready pods (one per IP), as after a finished rollout."""
    first = cluster.reconcile(md(model))
    revision = first.status["currentRevision"]
    for i, ip in enumerate(ips):
        cluster.watch("Pod", {"metadata": {"name": "abc"[i], "namespace": "ns", "annotations": {c.ANNOTATION_OWNER: "m"},
                                           "labels": {c.LABEL_INSTANCE: "m", c.LABEL_COMPONENT: c.COMPONENT_PREDICTOR,
                                                      c.LABEL_REVISION: revision}},
                              "status": {"phase": "Running", "podIP": ip,
                                         "conditions": [{"type": "Ready", "status": "True"}]}})
    return revision


def change_model(cluster, model, generation=2):
    stored = cluster.md()
    stored["spec"]["model"] = model
    stored["metadata"]["generation"] = generation
    cluster.sync()


def test_a_version_change_keeps_the_revision_and_swaps_pods_one_at_a_time():
    agents = FakeAgents({"http://10.0.0.1:8009": {"version": 1, "uri": V1["uri"]},
                         "http://10.0.0.2:8009": {"version": 1, "uri": V1["uri"]}})
    cluster = Cluster(agents=agents)
    revision = serving(cluster)
    change_model(cluster, V2)
    first = cluster.reconciler.reconcile("ns", "m")
    assert first.status["currentRevision"] == revision  # no rolling update
    # bound to the ModelDeployment's generation: the agent refuses a replay of an older command
    assert agents.puts == [("http://10.0.0.1:8009", {"uri": V2["uri"], "version": 2, "generation": 2})]
    assert first.status["phase"] == c.PHASE_PROGRESSING and first.requeue_after
    assert first.status["model"]["version"] == 1  # confirmed served: still the old one
    assert first.status["modelSwap"]["podsServing"] == 0 and first.status["modelSwap"]["pods"] == 2
    ready = next(x for x in first.status["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "SwappingModel" and "0/2 pods" in ready["message"]
    source = cluster.kube.objects[("Secret", "ns", "m-stable-model")]
    import base64
    import json
    assert json.loads(base64.b64decode(source["data"]["source.json"]))["version"] == 2  # restarts fetch v2

    second = cluster.reconciler.reconcile("ns", "m")
    assert agents.puts[-1][0] == "http://10.0.0.2:8009"
    third = cluster.reconciler.reconcile("ns", "m")
    # no quick look any more: only the steady-state check of what the pods serve, every few minutes
    assert third.status["phase"] == c.PHASE_READY and third.requeue_after == VERIFY_SECONDS
    assert third.status["model"] == {"name": "m", "version": 2, "uri": V2["uri"],
                                     "uriFingerprint": uri_fingerprint(V2["uri"])}
    assert cluster.md()["status"].get("modelSwap") is None  # removed from the stored status (merge patch)
    gets = agents.gets
    fourth = cluster.reconciler.reconcile("ns", "m")
    assert len(agents.puts) == 2 and not fourth.written and agents.gets == gets  # checked just now: not asked
    assert second.status["currentRevision"] == revision


def test_an_unreachable_agent_changes_nothing_and_is_asked_once_per_check():
    agents = FakeAgents({})  # every GET fails (e.g. kwok's simulated pods: no agent behind the address)
    cluster = Cluster(agents=agents)
    serving(cluster)
    result = cluster.reconciler.reconcile("ns", "m")
    assert result.status["phase"] == c.PHASE_READY and result.status["model"]["uri"] == V1["uri"]
    assert agents.gets == 2 and agents.puts == []  # one steady-state check: each pod asked once
    cluster.reconciler.reconcile("ns", "m")
    assert agents.gets == 2  # not due again before VERIFY_SECONDS


def test_the_steady_state_check_moves_back_a_pod_that_serves_something_else():
    """A replayed or hand-made command left a pod on another version while status says all serve v1."""
    agents = FakeAgents({"http://10.0.0.1:8009": {"version": 1, "uri": V1["uri"]},
                         "http://10.0.0.2:8009": {"version": 3, "uri": "s3://b/3/model.onnx"}})
    cluster = Cluster(agents=agents)
    serving(cluster)
    result = cluster.reconciler.reconcile("ns", "m")
    assert agents.puts == [("http://10.0.0.2:8009", {"uri": V1["uri"], "version": 1, "generation": 1})]
    assert result.status["phase"] == c.PHASE_PROGRESSING and result.requeue_after == 2.0
    result = cluster.reconciler.reconcile("ns", "m")
    assert result.status["phase"] == c.PHASE_READY


def test_an_old_agent_token_is_rotated_and_the_old_one_signs_until_the_pods_have_the_new_one():
    from datetime import timedelta

    from modeldeploy.reconcile import agents as rmd

    agents = FakeAgents({"http://10.0.0.1:8009": {"version": 1, "uri": V1["uri"]}})
    agents.token = None
    cluster = Cluster(agents=agents)
    serving(cluster, ips=("10.0.0.1",))
    secret = cluster.kube.objects[("Secret", "ns", "m-agent-keys")]
    secret["metadata"]["creationTimestamp"] = "2025-12-01T00:00:00Z"  # a month before the fakes' clock
    old = secret["data"]["token"]
    change_model(cluster, V2)
    cluster.reconciler.reconcile("ns", "m")
    assert ("patch_secret", "m-agent-keys") in cluster.kube.calls
    assert secret["data"]["previous-token"] == old and secret["data"]["token"] != old
    assert agents.tokens == ["t0ken"]  # within the grace the old token signs: the pods only know that one
    cluster.reconciler.now = lambda: T0 + rmd.ROTATION_GRACE + timedelta(seconds=1)
    change_model(cluster, {**V2, "version": 3, "uri": "s3://b/3/model.onnx"}, generation=3)
    cluster.reconciler.reconcile("ns", "m")
    assert agents.tokens[-1] != "t0ken"  # after it, the new one


def test_a_model_change_with_a_new_revision_is_a_rolling_update_not_a_swap():
    agents = FakeAgents({})
    cluster = Cluster(agents=agents)
    revision = serving(cluster)
    stored = cluster.md()
    stored["spec"]["model"] = V2
    stored["spec"]["serving"] = {"maxBatchSize": 8}
    cluster.sync()
    result = cluster.reconciler.reconcile("ns", "m")
    assert result.status["currentRevision"] != revision and agents.puts == [] and agents.gets == 0
    assert result.status["model"]["version"] == 2


def test_same_version_new_files_restarts_the_pods():
    agents = FakeAgents({"http://10.0.0.1:8009": {"version": 1, "uri": V1["uri"]}})
    cluster = Cluster(agents=agents)
    serving(cluster, ips=("10.0.0.1",))
    stored = cluster.md()
    stored["spec"]["replicas"] = 1
    cluster.sync()
    cluster.reconciler.reconcile("ns", "m")
    change_model(cluster, {**V1, "uri": "s3://b/1-fixed/model.onnx"})
    result = cluster.reconciler.reconcile("ns", "m")
    assert agents.puts == [] and [s for s in cluster.kube.ops("stamp") if c.ANNOTATION_MODEL_FILES in s[1]]
    assert result.status["phase"] == c.PHASE_PROGRESSING


def test_pods_that_cannot_fetch_the_old_model_are_replaced_when_the_model_changes():
    """No agent runs in a pod stuck in its fetch init container: a model fix restarts those pods."""
    agents = FakeAgents({})
    cluster = Cluster(agents=agents, ready=False)
    first = cluster.reconcile(md({**V1, "uri": "s3://b/typo/model.onnx"}))
    cluster.watch("Pod", {"metadata": {"name": "a", "namespace": "ns", "annotations": {c.ANNOTATION_OWNER: "m"},
                                       "labels": {c.LABEL_INSTANCE: "m", c.LABEL_COMPONENT: c.COMPONENT_PREDICTOR,
                                                  c.LABEL_REVISION: first.status["currentRevision"]}},
                          "status": {"phase": "Pending", "initContainerStatuses": [{"name": "fetch-model", "state": {
                              "waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {
                                  "exitCode": 1, "message": "SourceError: 404 Not Found"}}}]}})
    stored = cluster.md()
    stored["status"]["model"] = {"name": "m", "version": 1, "uri": "s3://b/typo/model.onnx"}
    cluster.sync()
    cluster.reconciler.reconcile("ns", "m")
    assert not cluster.kube.ops("stamp")  # the same (broken) model: restarting would not help
    change_model(cluster, V1)  # the URI fixed
    cluster.reconciler.reconcile("ns", "m")
    assert [s for s in cluster.kube.ops("stamp") if c.ANNOTATION_MODEL_FILES in s[1]] and agents.gets == 0

