"""One round of a canary rollout: observe both revisions, judge the canary, let the step machine decide.

Reads only (the watch cache, Prometheus); the reconciler (reconcile/modeldeployment.py) then renders
and applies what :func:`plan_round` returns and writes ``status.canary``. The decisions themselves are
pure: the step machine (policy/canary.py), the verdict (policy/analysis.py), which Deployments serve
(policy/rollout.py).

Safe by default: without a metrics provider (no Prometheus configured) every due analysis is NoData,
so a judged canary holds — it is never promoted unjudged and never rolled back on missing data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from modeldeploy.adapters.prometheus import SeriesProvider
from modeldeploy.api import constants as c
from modeldeploy.api.spec import Spec
from modeldeploy.policy import analysis as an
from modeldeploy.policy import canary as machine
from modeldeploy.policy import commands
from modeldeploy.policy import measurements as ms
from modeldeploy.policy import plan as planning
from modeldeploy.policy import rollout
from modeldeploy.policy.pods import diagnose_pods
from modeldeploy.reconcile.analysis import AnalysisTarget, measure
from modeldeploy.render import names

NO_PROVIDER = "no Prometheus is configured for the operator (MODELDEPLOY_PROMETHEUS_URL / Helm value prometheusUrl)"


@dataclass(frozen=True)
class Round:
    template_revision: str
    desired: str  # the revision the spec asks for
    stable: rollout.Stable | None
    decision: machine.Decision
    roles: rollout.Roles
    tracks: tuple[planning.Track, ...]
    observed: planning.Observed


def _of_revision(pods: Sequence[Mapping[str, Any]], revision: str | None) -> list[Mapping[str, Any]]:
    return [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION) == revision
            and not (p.get("metadata") or {}).get("deletionTimestamp")]


def _ready(pods: Sequence[Mapping[str, Any]]) -> int:
    return sum(1 for p in pods if any(cond.get("type") == "Ready" and cond.get("status") == "True"
                                      for cond in (p.get("status") or {}).get("conditions") or ()))


def _verdict(metrics: SeriesProvider | None, spec: Spec, namespace: str, name: str, desired: str,
             stable: str | None, previous: Mapping[str, Any], now: datetime) -> an.Verdict | None:
    assert spec.canary is not None
    due = machine.analysis_due(spec.canary, previous.get("canary"), now)
    if due is None or spec.canary.analysis is None:
        return None
    if metrics is None:
        end = now.timestamp()
        data = ms.Measurements(end, end, unavailable=NO_PROVIDER)
    else:
        data = measure(metrics, AnalysisTarget(namespace, name, spec.model.name, desired, stable),
                       spec.canary.analysis, started_at=due.started_at, now=now)
    return an.judge(spec.canary.analysis, data, started_at=due.started_at, now=now, previous=due.previous)


def plan_round(observed: planning.Observed, metrics: SeriesProvider | None, body: Mapping[str, Any], spec: Spec,
               template_revision: str, previous: Mapping[str, Any], now: datetime, total: int) -> Round:
    """Everything the reconciler needs to act on one round of ``spec.rollout.canary``; ``total`` is the
    replica count of the whole ModelDeployment (spec, or the autoscaler's), which the step machine splits."""
    assert spec.canary is not None
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    stable = rollout.stable_of(previous, observed.deployments)
    desired = rollout.desired_revision(spec, template_revision, stable)
    canary_pods = _of_revision(observed.pods, desired) if stable is None or desired != stable.revision else []
    stable_pods = _of_revision(observed.pods, stable.revision if stable else None)
    problem = diagnose_pods(canary_pods)
    verdict = None
    if stable is not None and desired != stable.revision:
        verdict = _verdict(metrics, spec, namespace, name, desired, stable.revision, previous, now)
    decision = machine.decide(
        spec.canary, previous.get("canary"),
        machine.Target(desired, stable.revision if stable else None,
                       change=rollout.describe_change(stable, spec, template_revision),
                       spec_snapshot={k: v for k, v in (body.get("spec") or {}).items()
                                      if k in commands.SNAPSHOT_FIELDS}),
        machine.Observed(canary_ready=_ready(canary_pods), canary_pods=len(canary_pods),
                         stable_ready=_ready(stable_pods), canary_problem=problem[1] if problem else None),
        verdict, commands.parse(meta.get("annotations")), now, total)
    canary_deployment = observed.deployments.get(names.revision_deployment_name(name, desired))
    roles = rollout.roles(name, spec, desired, stable, decision, canary_deployment, total)
    return Round(template_revision, desired, stable, decision, roles, _tracks(name, spec, roles, observed), observed)


def _tracks(md_name: str, spec: Spec, roles: rollout.Roles, observed: planning.Observed) -> tuple[planning.Track, ...]:
    deployment, revision, replicas, render = roles.stable
    live = observed.deployments.get(deployment)
    # A new per-revision Deployment selects its pod set; an existing one keeps the selector it has.
    pod_set = planning.pod_set_of(live) if live is not None else (
        None if deployment == names.deployment_name(md_name) else revision)
    tracks = [planning.Track(c.TRACK_STABLE, deployment, revision, replicas, spec, pod_set=pod_set, render=render)]
    if roles.canary is not None:
        name, revision, replicas = roles.canary
        tracks.append(planning.Track(c.TRACK_CANARY, name, revision, replicas, spec, pod_set=revision))
    return tuple(tracks)


def condition(decision: machine.Decision) -> tuple[str, str, bool] | None:
    """(reason, message, stalled) that stands for Ready while a canary runs or after it was aborted."""
    if decision.stalled is not None:
        return decision.stalled[0], decision.stalled[1], True
    if decision.active:
        message = (decision.status or {}).get("message") or f"canary {decision.phase}"
        return f"Canary{decision.phase}", f"canary {decision.status.get('revision')}: {message}", False
    return None
