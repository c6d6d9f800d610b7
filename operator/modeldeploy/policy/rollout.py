"""Revisions side by side under ``strategy: Canary``: which Deployments serve, how traffic is split. Pure.

Design (docs/architecture.md, "Canary rollouts"): **one Deployment per revision, promoted by moving
traffic, never by restarting pods** — as Argo Rollouts promotes by switching ReplicaSets. Triton loads
of big models take minutes on real GPUs, so the pods that were judged are the pods that stay.

- The **stable** revision is what ``status.currentRevision`` names, served by the Deployment
  ``status.deployment``. While a canary runs, the stable Deployment is only *scaled* (its template is
  what it was; the spec now describes the canary).
- A **canary** revision is the template revision plus the model (``names.rollout_revision``): a new
  model version, serving config, image or compression result all make one. Its Deployment is
  ``<name>-<revision>``, selected by the pod set label (fixed at creation), with its own model source
  Secret and config ConfigMap, so a stable pod that restarts meanwhile still fetches the stable model.
- **Promotion** (the step machine, policy/canary.py, says when): once the canary Deployment runs every
  replica, the stable role moves to it (status.currentRevision/deployment/model, the stable Service's
  selector, the route's weights); the old Deployment is no track any more and is deleted.
- **Rollback**: all traffic to stable at once, the canary scaled to zero, then deleted.
- A ModelDeployment that switches from Rolling keeps its ``<name>-stable`` Deployment as stable: a
  canary starts only when the template revision or the model differs from what stable serves.

Traffic: with ``trafficRouting`` an HTTPRoute splits between the role Services (render/traffic.py);
without, the ModelDeployment's Service spreads requests over both Deployments' pods and the replica
split is the weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from modeldeploy.api import canary as cs
from modeldeploy.api import constants as c
from modeldeploy.api.spec import Spec
from modeldeploy.policy import canary as machine
from modeldeploy.policy import model_swap
from modeldeploy.render import names


@dataclass(frozen=True)
class Stable:
    """The serving revision, as status and the cache show it."""

    revision: str
    deployment: str
    template_revision: str | None  # the Deployment's annotation (absent on Deployments made before it)
    model: Mapping[str, Any]  # status.model


@dataclass(frozen=True)
class Traffic:
    """What the HTTPRoute and the role Services say (Gateway API routing only)."""

    stable_revision: str
    canary_revision: str | None  # None: no canary Service behind the route
    canary_weight: int | None  # None: everything to stable
    header: bool
    routing: cs.TrafficRouting


def stable_of(previous: Mapping[str, Any], deployments: Mapping[str, Mapping[str, Any]]) -> Stable | None:
    """The stable revision from the stored status and the cached Deployments; None before the first rollout.

    >>> dep = {"metadata": {"annotations": {c.ANNOTATION_TEMPLATE_REVISION: "t1"}}}
    >>> stable_of({"currentRevision": "r1", "deployment": "m-r1", "model": {"version": 1}}, {"m-r1": dep})
    Stable(revision='r1', deployment='m-r1', template_revision='t1', model={'version': 1})
    >>> stable_of({"currentRevision": "r1", "deployment": "m-r1"}, {}) is None  # its Deployment is gone
    True
    """
    revision, deployment = previous.get("currentRevision"), previous.get("deployment")
    if not revision or not deployment or deployment not in deployments:
        return None
    meta = deployments[deployment].get("metadata") or {}
    template = (meta.get("annotations") or {}).get(c.ANNOTATION_TEMPLATE_REVISION)
    if template is None and deployment.endswith(f"-{c.TRACK_STABLE}"):
        template = revision  # made by the Rolling strategy, whose pods' revision is the template's
    return Stable(revision, deployment, template, previous.get("model") or {})


def desired_revision(spec: Spec, template_revision: str, stable: Stable | None) -> str:
    """The revision the spec asks for: stable's own when neither the template nor the model changed."""
    model = spec.model
    if stable is not None and stable.template_revision == template_revision and _serves(stable.model, spec):
        return stable.revision
    return names.rollout_revision(template_revision, model.uri, model.version, model.sha256)


def _serves(served: Mapping[str, Any], spec: Spec) -> bool:
    want = model_swap.Desired(spec.model.uri, spec.model.version, spec.model.sha256)
    return (served.get("version") == want.version and model_swap.same_uri(served, want)
            and served.get("sha256") == want.sha256)


def describe_change(stable: Stable | None, spec: Spec, template_revision: str) -> str:
    """What a canary changes, in words, for its history entry and Events."""
    if stable is None:
        return ""
    parts = []
    old_version = stable.model.get("version")
    if old_version != spec.model.version:
        parts.append(f"model version {old_version} -> {spec.model.version}")
    elif not _serves(stable.model, spec):
        parts.append("model files")
    if stable.template_revision != template_revision:
        parts.append(f"pod template {stable.template_revision} -> {template_revision}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Roles:
    """Deployments for this round: (role, deployment name, revision, replicas, render from spec?)."""

    stable: tuple[str, str, int, bool]  # (deployment, revision, replicas, rendered from spec)
    canary: tuple[str, str, int] | None  # (deployment, revision, replicas), always rendered from spec
    promoted: bool  # the stable role moved to the canary in this round
    traffic: Traffic | None


def roles(md_name: str, spec: Spec, desired: str, stable: Stable | None, decision: machine.Decision | None,
          canary_deployment: Mapping[str, Any] | None, total: int) -> Roles:
    """Which Deployments serve this round and with how many replicas (see the module docstring).

    ``decision`` is the step machine's (None when no canary runs or the spec asks for stable's revision).
    ``canary_deployment`` is the canary's Deployment as cached, to promote only once it runs ``total``.

    >>> from modeldeploy.api.spec import parse_spec
    >>> spec = parse_spec("m", {"model": {"uri": "s3://b/m", "format": "onnx"}, "replicas": 2,
    ...                         "rollout": {"strategy": "Canary", "canary": {"steps": [{"setWeight": 50}]}}})
    >>> roles("m", spec, "r1", None, None, None, 2).stable  # the first rollout: straight to stable
    ('m-r1', 'r1', 2, True)
    """
    routing = spec.canary.traffic_routing if spec.canary is not None else None
    if stable is None:  # nothing serves yet: the first revision becomes stable at once
        deployment = names.revision_deployment_name(md_name, desired)
        return Roles((deployment, desired, total, True), None, False, _traffic(routing, desired, None, None, False))
    if desired == stable.revision or decision is None or decision.phase is None:
        steady = desired == stable.revision
        return Roles((stable.deployment, stable.revision, total, steady), None, False,
                     _traffic(routing, stable.revision, None, None, False))
    canary_name = names.revision_deployment_name(md_name, desired)
    if decision.promote and _runs(canary_deployment, total):
        return Roles((canary_name, desired, total, True), None, True, _traffic(routing, desired, None, None, False))
    canary = (canary_name, desired, decision.canary_replicas) if decision.active or decision.canary_replicas else None
    weight = decision.weight if canary is not None else None
    return Roles((stable.deployment, stable.revision, decision.stable_replicas, False), canary, False,
                 _traffic(routing, stable.revision, desired if canary else None, weight,
                          decision.header_routing and canary is not None))


def _traffic(routing: cs.TrafficRouting | None, stable: str, canary: str | None, weight: int | None,
             header: bool) -> Traffic | None:
    return None if routing is None else Traffic(stable, canary, weight, header, routing)


def _runs(deployment: Mapping[str, Any] | None, want: int) -> bool:
    status = (deployment or {}).get("status") or {}
    generation = ((deployment or {}).get("metadata") or {}).get("generation", 0)
    return (deployment is not None and status.get("observedGeneration", 0) >= generation
            and status.get("availableReplicas", 0) >= want and status.get("updatedReplicas", 0) >= want)
