"""reconcile() when only the model changed: no new revision; the pods' agents swap it, one at a time."""

from modeldeploy.adapters.agent import AgentError
from modeldeploy.api import constants as c
from modeldeploy.reconcile.modeldeployment import reconcile
from modeldeploy.render import names
from modeldeploy.api.spec import parse_spec
from modeldeploy.render.triton import RenderOptions

from .test_reconcile import T0, FakeKube

OPTIONS = RenderOptions()
V1 = {"uri": "s3://b/1/model.onnx", "format": "onnx", "name": "m", "version": 1}
V2 = {**V1, "uri": "s3://b/2/model.onnx", "version": 2}


class SwapKube(FakeKube):
    def __init__(self, pods, **kw):
        super().__init__(**kw)
        self.pods = pods
        self.stamps = []

    def stamp_pod_template(self, namespace, deployment, annotation, value):
        self.stamps.append((deployment, annotation, value))


class FakeAgents:
    def __init__(self, served):
        self.served = dict(served)  # url -> model dict
        self.puts = []

    def get(self, url):
        if url not in self.served:
            raise AgentError("GET /v1/model: connection refused")
        return {"served": self.served[url], "desired": None, "state": "Ready"}

    def put(self, url, body, token=None):
        assert token == "t0ken"  # the Secret's token, read from the Kube (FakeKube.read_secret_key)
        self.puts.append((url, body))
        self.served[url] = body  # this fake swaps at once


def pod(name, host, revision):
    return {"metadata": {"name": name, "labels": {c.LABEL_REVISION: revision}},
            "status": {"podIP": f"10.244.9.{host}", "conditions": [{"type": "Ready", "status": "True"}]}}


def body(model, status):
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 2},
            "spec": {"model": model, "replicas": 2}, "status": status}


def served_v1_status(revision):
    return {"phase": "Ready", "currentRevision": revision, "model": {"name": "m", "version": 1, "uri": V1["uri"]}}


def revision():
    return names.revision_of(parse_spec("m", {"model": V1}), OPTIONS.triton_image, OPTIONS.fetcher_image)


def test_a_version_change_keeps_the_revision_and_swaps_pods_one_at_a_time():
    rev = revision()
    kube = SwapKube([pod("a", 1, rev), pod("b", 2, rev)])
    agents = FakeAgents({"http://10.244.9.1:8009": {"version": 1, "uri": V1["uri"]},
                         "http://10.244.9.2:8009": {"version": 1, "uri": V1["uri"]}})
    first = reconcile(kube, body(V2, served_v1_status(rev)), OPTIONS, lambda: T0, agents=agents)
    assert first.status["currentRevision"] == rev  # no rolling update
    assert agents.puts == [("http://10.244.9.1:8009", {"uri": V2["uri"], "version": 2})]
    assert first.status["phase"] == c.PHASE_PROGRESSING and first.requeue_after
    assert first.status["model"]["version"] == 1  # confirmed served: still the old one
    assert first.status["modelSwap"]["podsServing"] == 0 and first.status["modelSwap"]["pods"] == 2
    ready = next(x for x in first.status["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "SwappingModel" and "0/2 pods" in ready["message"]

    second = reconcile(kube, body(V2, first.status), OPTIONS, lambda: T0, agents=agents)
    assert agents.puts[-1][0] == "http://10.244.9.2:8009"
    third = reconcile(kube, body(V2, second.status), OPTIONS, lambda: T0, agents=agents)
    assert third.status["phase"] == c.PHASE_READY and third.requeue_after is None
    assert third.status["model"] == {"name": "m", "version": 2, "uri": V2["uri"]}
    assert third.status["modelSwap"] is None  # removed from the stored status (merge patch)
    fourth = reconcile(kube, body(V2, {**third.status, "modelSwap": None}), OPTIONS, lambda: T0, agents=agents)
    assert len(agents.puts) == 2 and not fourth.written  # steady: no agent is told anything


def test_steady_state_and_new_objects_call_no_agent():
    rev = revision()
    agents = FakeAgents({})  # every GET would fail
    for status in (None, served_v1_status(rev)):
        result = reconcile(SwapKube([pod("a", 1, rev)]), body(V1, status), OPTIONS, lambda: T0, agents=agents)
        assert result.status["phase"] == c.PHASE_READY and result.status["model"]["uri"] == V1["uri"]


def test_a_model_change_with_a_new_revision_is_a_rolling_update_not_a_swap():
    rev = revision()
    agents = FakeAgents({})
    v2_new_serving = {**V2}
    b = body(v2_new_serving, served_v1_status(rev))
    b["spec"]["serving"] = {"maxBatchSize": 8}
    result = reconcile(SwapKube([pod("a", 1, rev)]), b, OPTIONS, lambda: T0, agents=agents)
    assert result.status["currentRevision"] != rev and agents.puts == []
    assert result.status["model"]["version"] == 2


def test_same_version_new_files_restarts_the_pods():
    rev = revision()
    kube = SwapKube([pod("a", 1, rev)])
    agents = FakeAgents({"http://10.244.9.1:8009": {"version": 1, "uri": V1["uri"]}})
    moved = {**V1, "uri": "s3://b/1-fixed/model.onnx"}
    result = reconcile(kube, body(moved, served_v1_status(rev)), OPTIONS, lambda: T0, agents=agents)
    assert agents.puts == [] and kube.stamps and kube.stamps[0][1] == c.ANNOTATION_MODEL_FILES
    assert result.status["phase"] == c.PHASE_PROGRESSING
