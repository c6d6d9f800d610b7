"""One step of an in-place model swap: ask each ready pod's agent, tell the next one, report progress.

When it runs: only when the pods of the current revision were started with an older model than the
spec now names (``status.model`` is the model confirmed served; the revision did not change, so no
rolling update will replace the pods). A model change that comes with a new revision needs no swap:
the rolling update's new pods fetch the new model at start. So at steady state, and in a cluster
whose pods are only kwok's, no agent is ever called.

The decisions are in policy/model_swap.py; this module does the I/O (pod list, agent GET/PUT, the
restart stamp for same-version file changes) and returns what status needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from modeldeploy.adapters.agent import AgentClient, AgentError, endpoint
from modeldeploy.adapters.kube import Kube
from modeldeploy.api import constants as c
from modeldeploy.api.spec import Spec
from modeldeploy.policy import model_swap as policy
from modeldeploy.render import names

#: Seconds until the next look while a swap runs (the agents' progress makes no Kubernetes event).
POLL_SECONDS = 2.0
#: Seconds until the next look after a failure that needs a person (the agent retries with backoff).
STALLED_POLL_SECONDS = 30.0


@dataclass(frozen=True)
class SwapStep:
    served: Mapping[str, Any] | None  # status.model once every pod serves the desired model, else the old
    condition: tuple[str, str, bool] | None = None
    block: Mapping[str, Any] | None = None  # status.modelSwap
    requeue_after: float | None = None


def desired_of(spec: Spec) -> policy.Desired:
    return policy.Desired(spec.model.uri, spec.model.version, spec.model.sha256)


def model_status(spec: Spec) -> dict[str, Any]:
    """``status.model`` for the model ``spec`` names."""
    model = spec.model
    out: dict[str, Any] = {"name": model.name, "version": model.version, "uri": model.uri}
    if model.sha256:
        out["sha256"] = model.sha256
    return out


def _same(served: Mapping[str, Any], desired: policy.Desired) -> bool:
    if served.get("version") != desired.version:
        return False
    if "uri" in served and served["uri"] != desired.uri:
        return False
    return served.get("sha256") == desired.sha256 or "uri" not in served


def needed(previous: Mapping[str, Any], revision: str, spec: Spec) -> bool:
    """True when running pods of ``revision`` must be moved to ``spec.model`` by their agents."""
    served = previous.get("model") or {}
    return bool(served) and previous.get("currentRevision") == revision and not _same(served, desired_of(spec))


def _ready(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    return any(cond.get("type") == "Ready" and cond.get("status") == "True"
               for cond in (pod.get("status") or {}).get("conditions") or [])


def step(kube: Kube, agents: AgentClient, namespace: str, md_name: str, revision: str, spec: Spec,
         previous: Mapping[str, Any], selector: str, token: Callable[[], str | None] | None = None) -> SwapStep:
    """Ask, tell, report: one round of the swap of the pods of ``revision`` to ``spec.model``.
    ``token()`` gives the agents' token (read only when a pod is told something)."""
    desired = desired_of(spec)
    pods = [p for p in kube.list_pods(namespace, selector)
            if (p.get("metadata", {}).get("labels") or {}).get(c.LABEL_REVISION) == revision and _ready(p)]
    reports = []
    urls: dict[str, str] = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        url = endpoint(pod)
        if url is None:
            reports.append(policy.PodReport(name, None, "no pod address"))
            continue
        urls[name] = url
        try:
            reports.append(policy.PodReport(name, agents.get(url)))
        except AgentError as err:
            reports.append(policy.PodReport(name, None, str(err)))
    plan = policy.plan(desired, reports)
    secret = token() if (plan.put and token is not None) else None
    for name in plan.put:
        try:
            agents.put(urls[name], desired.body(), secret)
        except AgentError:
            pass  # the next round asks again and reports what the agent says
    if plan.restart:
        kube.stamp_pod_template(namespace, names.deployment_name(md_name), c.ANNOTATION_MODEL_FILES,
                                names.short_hash(desired.files_key()))
    if plan.done:
        return SwapStep(served=model_status(spec))
    block = {"version": desired.version, "uri": desired.uri, "podsServing": plan.serving, "pods": plan.total,
             "podStates": dict(plan.pods)}
    stalled = plan.condition is not None and plan.condition[2]
    return SwapStep(served=previous.get("model"), condition=plan.condition, block=block,
                    requeue_after=STALLED_POLL_SECONDS if stalled else POLL_SECONDS)
