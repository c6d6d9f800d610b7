"""Which events queue which reconcile, and how urgently: the Operator's routing of watch events
(the Kopf handlers and the informers only call these), and its start: informers synced first, then
the ModelDeployments queued, settled ones behind every change."""

from __future__ import annotations

import threading

import pytest

from modeldeploy.adapters.informer import DELETED, LISTED
from modeldeploy.api import constants as c
from modeldeploy.handlers.modeldeployment import INFORMED, Operator
from modeldeploy.render.triton import RenderOptions

NS = "team-a"


def md(name: str, generation: int = 1, phase: str | None = None, observed: int | None = None) -> dict:
    body = {"apiVersion": c.API_VERSION, "kind": c.KIND,
            "metadata": {"namespace": NS, "name": name, "uid": f"uid-{name}", "generation": generation,
                         "resourceVersion": "1"}, "spec": {}}
    if phase:
        body["status"] = {"phase": phase, "observedGeneration": observed}
    return body


def child(kind: str, name: str, owner: str, **extra) -> dict:
    return {"kind": kind, "metadata": {"namespace": NS, "name": name, "resourceVersion": "2",
                                       "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY},
                                       "ownerReferences": [{"apiVersion": c.API_VERSION, "kind": c.KIND,
                                                            "name": owner, "uid": f"uid-{owner}",
                                                            "controller": True}]}, **extra}


class FakeKube:
    """Lists from a dict of kind -> objects; watches block until the test ends."""

    def __init__(self, objects: dict[str, list[dict]]):
        self.objects = objects
        self.closed = threading.Event()
        self.listed: list[str] = []

    def list_page(self, kind, label_selector, namespace, token, limit):
        self.listed.append(kind)
        return {"items": self.objects.get(kind, []), "metadata": {"resourceVersion": "100"}}

    def list_all(self, kind, label_selector, namespace=None):
        self.listed.append(kind)
        return iter(self.objects.get(kind, []))

    def watch_events(self, kind, label_selector, namespace, resource_version, timeout_seconds):
        self.closed.wait(5)
        return iter(())


def drain(op: Operator) -> list[tuple[str, str]]:
    out = []
    while (key := op.queue.get(0)) is not None:
        out.append(key)
        op.queue.done(key)
    return out


@pytest.fixture
def op():
    operator = Operator(kube=FakeKube({}), options=RenderOptions())
    yield operator
    operator.stop()


def test_a_listed_settled_model_deployment_waits_behind_a_change(op):
    op.model_deployment_event(None, md("settled", 2, "Ready", 2))
    op.model_deployment_event(None, md("edited", 3, "Ready", 2))  # listed, but its spec moved on
    op.model_deployment_event("ADDED", md("new"))
    assert drain(op) == [(NS, "edited"), (NS, "new"), (NS, "settled")]
    assert op.cache.get(c.KIND, NS, "settled") is not None


def test_a_watched_change_of_a_settled_object_is_not_low(op):
    op.model_deployment_event("MODIFIED", md("a", 2, "Ready", 2))
    op.model_deployment_event(None, md("b", 1, "Ready", 1))
    op.model_deployment_event("MODIFIED", md("c"))
    assert drain(op) == [(NS, "a"), (NS, "c"), (NS, "b")]


def test_a_first_list_item_is_stored_without_queueing_its_owner(op):
    op.child_event("Deployment", LISTED, child("Deployment", "m-stable", "m"))
    assert op.cache.get("Deployment", NS, "m-stable") is not None
    assert drain(op) == []
    op.child_event("Deployment", "MODIFIED", child("Deployment", "m-stable", "m"))
    assert drain(op) == [(NS, "m")]
    op.child_event("Deployment", DELETED, child("Deployment", "m-stable", "m"))
    assert op.cache.get("Deployment", NS, "m-stable") is None and drain(op) == [(NS, "m")]


def test_only_a_pod_in_trouble_queues_its_model_deployment(op):
    healthy = child("Pod", "m-1", "m", status={"phase": "Running"})
    stuck = child("Pod", "m-2", "m", status={"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]})
    op.child_event("Pod", "MODIFIED", healthy)
    assert drain(op) == []
    op.child_event("Pod", "MODIFIED", stuck)
    assert drain(op) == [(NS, "m")]
    op.child_event("Pod", DELETED, stuck)
    assert drain(op) == [] and op.cache.get("Pod", NS, "m-2") is None


def test_a_finished_compression_job_queues_every_waiter_once(op):
    op.waiting[(NS, "compress-abc")] |= {"x", "y"}
    job = child("Job", "compress-abc", "x", status={"conditions": [{"type": "Complete", "status": "True"}]})
    op.child_event("Job", "MODIFIED", job)
    assert drain(op) == [(NS, "x"), (NS, "y")]
    assert (NS, "compress-abc") not in op.waiting


def test_prefill_syncs_every_informer_before_listing_model_deployments():
    kube = FakeKube({"Deployment": [child("Deployment", "a-stable", "a")],
                     "ConfigMap": [child("ConfigMap", "a-config-1", "a")],
                     c.KIND: [md("b"), md("a", 4, "Ready", 4)]})
    operator = Operator(kube=kube, options=RenderOptions())
    try:
        keys = operator.prefill(sync_timeout=5)
        assert keys == [((NS, "a"), True), ((NS, "b"), False)]
        assert all(informer.synced for informer in operator.informers)
        assert sorted(i.kind for i in operator.informers) == sorted(INFORMED)
        assert kube.listed.index(c.KIND) > max(kube.listed.index(kind) for kind in INFORMED)
        assert operator.cache.get("Deployment", NS, "a-stable") is not None
        assert drain(operator) == []  # first-list items queue nothing: prefill's keys do
    finally:
        kube.closed.set()
        operator.stop()
