"""Observe one ModelDeployment's world: its children from the watch cache, its agents when a swap is due.

Reads only. The Kubernetes objects come from the informer cache (no API request); a child counts as
ours only when its controller owner reference carries this ModelDeployment's uid (labels can be
forged). Serving pods are those labelled with this ModelDeployment's instance and the predictor
component (pods are owned by ReplicaSets, so the label and the owner annotation are what ties them
to us; a same-namespace writer who forges them is outside the threat model, see docs/security.md).

The model agents are asked (HTTP GET, no Kubernetes request) only when the plan will need their
answers: pods of the current revision must move to a new model version and the rollout is finished.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from modeldeploy.adapters.agent import AgentError, endpoint
from modeldeploy.adapters.cache import owned_by
from modeldeploy.api import constants as c
from modeldeploy.api.spec import Spec
from modeldeploy.policy import model_swap, plan as planning
from modeldeploy.reconcile.interfaces import Agents, ClusterView
from modeldeploy.render import names


def _ready(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    return any(cond.get("type") == "Ready" and cond.get("status") == "True"
               for cond in (pod.get("status") or {}).get("conditions") or [])


def serving_pods(view: ClusterView, namespace: str, md_name: str) -> list[dict[str, Any]]:
    instance = names.fit(md_name)
    return [p for p in view.owned("Pod", namespace, md_name)
            if ((p.get("metadata") or {}).get("labels") or {}).get(c.LABEL_INSTANCE) == instance
            and ((p.get("metadata") or {}).get("labels") or {}).get(c.LABEL_COMPONENT) == c.COMPONENT_PREDICTOR]


def children(view: ClusterView, namespace: str, md_name: str, uid: str) -> planning.Observed:
    """The Deployments, ConfigMaps, Services, HTTPRoutes and serving pods of one ModelDeployment, as cached."""
    def ours(kind: str) -> dict[str, dict[str, Any]]:
        return {o["metadata"]["name"]: o for o in view.owned(kind, namespace, md_name) if owned_by(o, uid)}

    return planning.Observed(deployments=ours("Deployment"), pods=serving_pods(view, namespace, md_name),
                             config_maps=list(ours("ConfigMap").values()), services=ours("Service"),
                             routes=ours("HTTPRoute"))


def agent_reports(agents: Agents, pods: list[Mapping[str, Any]], revision: str) -> list[model_swap.PodReport]:
    """What each ready pod of ``revision`` says it serves (its agent's GET /v1/model)."""
    reports = []
    for pod in pods:
        if ((pod.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION) != revision or not _ready(pod):
            continue
        name = pod["metadata"]["name"]
        url = endpoint(pod)
        if url is None:
            reports.append(model_swap.PodReport(name, None, "no pod address"))
            continue
        try:
            reports.append(model_swap.PodReport(name, agents.get(url)))
        except AgentError as err:
            reports.append(model_swap.PodReport(name, None, str(err)))
    return reports


def observe(observed: planning.Observed, agents: Agents | None, md_name: str, spec: Spec, revision: str,
            previous: Mapping[str, Any], replicas: int, verify: bool = False) -> planning.Observed:
    """``observed`` (the children, :func:`children`) with the agents' reports when a swap is due (the pods
    of ``revision`` must move to a new model and all ``replicas`` run the current template), or when a
    steady-state check of what the pods serve is due (``verify``)."""
    if agents is None or not (verify or planning.swap_due(previous, revision, spec)):
        return observed
    deployment = observed.deployments.get(planning.stable_deployment(md_name, previous, observed))
    if not planning.rolled_out(deployment, replicas):
        return observed
    return dataclasses.replace(observed, agent_reports=agent_reports(agents, list(observed.pods), revision))
