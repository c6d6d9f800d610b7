"""Status policy: what a ModelDeployment's status should say, given what was observed.

A pure function of (generation, spec facts, the observed Triton Deployment, the previous status,
errors, now). The reconciler computes it whole, compares it with the stored status and writes only
when something changed (argo-rollouts' persistRolloutStatus does the same).

Conditions follow kstatus: ``Ready`` (the contract for users and GitOps health checks),
``Reconciling`` (True while work is in progress) and ``Stalled`` (True when progress stopped and a
person has to act). ``FieldsSupported`` is False while the spec asks for something this version
accepts but does not implement, so nothing is ignored silently.

Worked example: a Deployment with spec.replicas 2, status.updatedReplicas 1, availableReplicas 1
and observedGeneration current gives phase Progressing, Ready False (reason RollingOut,
"1/2 replicas updated, 1/2 available"), Reconciling True.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from modeldeploy.api import constants as c
from modeldeploy.api.conditions import Condition, find, merge_conditions


@dataclass(frozen=True)
class Observation:
    """What the reconciler saw and did this round."""

    generation: int
    desired_replicas: int
    revision: str | None = None
    deployment_name: str | None = None
    service_name: str | None = None
    namespace: str | None = None
    selector: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    deployment: Mapping[str, Any] | None = None  # the live apps/v1 Deployment, None if absent
    unimplemented: tuple[str, ...] = ()
    spec_error: str | None = None  # message naming the field
    # (reason, message) when a person must act though the spec parsed: a child's name is taken by an
    # object that is not ours, or the API server rejects a child (422) — no retry can fix either.
    blocked: tuple[str, str] | None = None
    apply_error: str | None = None
    replica_failure: str | None = None  # the Deployment's ReplicaFailure (FailedCreate) message
    pod_problem: tuple[str, str] | None = None  # (reason, message) from policy.pods.diagnose_pods
    model_uri: str | None = None  # redacted (api/redact.py)
    model_sha256: str | None = None
    model_fingerprint: str | None = None  # uri_fingerprint of the whole URI
    # spec.compression: the Compressed condition, status.compression, and (reason, message, stalled)
    # when the rollout waits for a Job or stopped at a gate (policy.compression_job.hold_reason).
    compressed: Condition | None = None
    compression: Mapping[str, Any] | None = None
    hold: tuple[str, str, bool] | None = None
    # An in-place model swap that has not reached every pod: (reason, message, stalled) and status.modelSwap.
    swap: tuple[str, str, bool] | None = None
    model_swap: Mapping[str, Any] | None = None
    # A canary rollout (policy/canary.py): status.canary whole, and its own conditions (MetricsAvailable,
    # CanaryAnalysis). Its Ready override travels in ``swap`` (same meaning: every replica up, spec not done).
    canary: Mapping[str, Any] | None = None
    extra_conditions: tuple[Condition, ...] = ()
    autoscaling: Mapping[str, Any] | None = None  # status.autoscaling (reconcile/autoscaling.py)
    extra: Mapping[str, Any] = field(default_factory=dict)


def _deployment_progress(obs: Observation, previous_phase: str | None
                         ) -> tuple[str, Condition, Condition, Condition, dict[str, int]]:
    """Phase and (Ready, Reconciling, Stalled) conditions from the Deployment's status."""
    dep = obs.deployment
    want = obs.desired_replicas
    if dep is None:
        counts = {"replicas": 0, "readyReplicas": 0, "updatedReplicas": 0}
        msg = f"creating Deployment {obs.deployment_name}"
        return (c.PHASE_PENDING, Condition(c.COND_READY, False, c.REASON_CREATING, msg),
                Condition(c.COND_RECONCILING, True, c.REASON_CREATING, msg),
                Condition(c.COND_STALLED, False, c.REASON_CREATING, "progressing"), counts)

    status = dep.get("status") or {}
    dep_gen = (dep.get("metadata") or {}).get("generation", 0)
    observed = status.get("observedGeneration", 0)
    replicas = status.get("replicas", 0)
    updated = status.get("updatedReplicas", 0)
    ready = status.get("readyReplicas", 0)
    available = status.get("availableReplicas", 0)
    counts = {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": updated}
    progress = f"{updated}/{want} replicas updated, {available}/{want} available"

    dep_conditions = status.get("conditions") or []
    progressing = find(dep_conditions, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        msg = f"Deployment {obs.deployment_name} exceeded its progress deadline: {progress}"
        ready_reason = c.REASON_PROGRESS_DEADLINE
        if obs.pod_problem:
            msg += f"; {obs.pod_problem[1]}"
            ready_reason = obs.pod_problem[0]  # the cause is more useful to a reader of Ready than the symptom
        return (c.PHASE_FAILED, Condition(c.COND_READY, False, ready_reason, msg),
                Condition(c.COND_RECONCILING, False, c.REASON_PROGRESS_DEADLINE, msg),
                Condition(c.COND_STALLED, True, c.REASON_PROGRESS_DEADLINE, msg), counts)

    done = observed >= dep_gen and updated >= want and available >= want and replicas == want
    if done:
        if want == 0:
            msg = "scaled to zero replicas"
            ready_cond = Condition(c.COND_READY, True, c.REASON_SCALED_TO_ZERO, msg)
        else:
            msg = f"{available}/{want} replicas available"
            ready_cond = Condition(c.COND_READY, True, c.REASON_AVAILABLE, msg)
        return (c.PHASE_READY, ready_cond,
                Condition(c.COND_RECONCILING, False, c.REASON_AVAILABLE, msg),
                Condition(c.COND_STALLED, False, c.REASON_AVAILABLE, msg), counts)

    rolling = observed < dep_gen or updated < want or replicas > want
    reason = c.REASON_ROLLING_OUT if rolling else c.REASON_SCALING
    if obs.replica_failure:  # no pod gets created (Pod Security, quota, an invalid pod): say why at once
        reason = c.REASON_REPLICA_FAILURE
        progress += f"; pods cannot be created: {obs.replica_failure}"
    elif obs.pod_problem:
        reason = obs.pod_problem[0]
        progress += f"; {obs.pod_problem[1]}"
    # Degraded means "was serving fully, lost replicas"; short of Ready on the way up is Progressing.
    was_serving = previous_phase in (c.PHASE_READY, c.PHASE_DEGRADED)
    phase = c.PHASE_DEGRADED if was_serving and not rolling and available > 0 else c.PHASE_PROGRESSING
    return (phase, Condition(c.COND_READY, False, reason, progress),
            Condition(c.COND_RECONCILING, True, reason, progress),
            Condition(c.COND_STALLED, False, reason, "progressing"), counts)


def _held(obs: Observation) -> tuple[str, Condition, Condition, Condition, dict[str, int]]:
    """The rollout waits for (or stopped at) compression; whatever Deployment exists keeps serving."""
    assert obs.hold is not None
    reason, message, stuck = obs.hold
    dstat = (obs.deployment or {}).get("status") or {}
    counts = {k: dstat.get(k, 0) for k in ("replicas", "readyReplicas", "updatedReplicas")}
    available = dstat.get("availableReplicas", 0)
    if obs.deployment is None:
        message += "; nothing is served until a variant passes"
    else:
        message += f"; the previous model keeps serving ({available}/{obs.desired_replicas} available)"
    phase = c.PHASE_FAILED if stuck else (c.PHASE_PROGRESSING if obs.deployment is not None else c.PHASE_PENDING)
    return (phase, Condition(c.COND_READY, False, reason, message),
            Condition(c.COND_RECONCILING, not stuck, reason, message),
            Condition(c.COND_STALLED, stuck, reason, message if stuck else "progressing"), counts)


def compute_status(obs: Observation, previous: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The complete status for ``obs``; ``previous`` only supplies lastTransitionTime and prior phase."""
    previous = previous or {}
    if obs.spec_error or obs.blocked or obs.apply_error:
        if obs.spec_error:
            reason, msg = c.REASON_INVALID_SPEC, obs.spec_error
        elif obs.blocked:
            reason, msg = obs.blocked
        else:
            reason, msg = c.REASON_APPLY_FAILED, obs.apply_error or ""
        needs_person = bool(obs.spec_error or obs.blocked)
        phase = c.PHASE_FAILED
        ready = Condition(c.COND_READY, False, reason, msg)
        # An invalid spec or a blocked child needs a person (Stalled); a failed apply is retried (Reconciling).
        reconciling = Condition(c.COND_RECONCILING, not needs_person, reason, msg)
        stalled = Condition(c.COND_STALLED, needs_person, reason, msg)
        counts = {k: previous.get(k, 0) for k in ("replicas", "readyReplicas", "updatedReplicas")}
        if obs.deployment is not None:
            dstat = obs.deployment.get("status") or {}
            counts = {k: dstat.get(k, 0) for k in counts}
    elif obs.hold:
        phase, ready, reconciling, stalled, counts = _held(obs)
    else:
        phase, ready, reconciling, stalled, counts = _deployment_progress(obs, previous.get("phase"))
        if obs.swap and (phase == c.PHASE_READY or obs.swap[2]):
            # Every replica is up, but not every one serves what the spec names yet (an in-place swap, a
            # canary); or that work stopped and needs a person, whatever the replicas are doing.
            reason, message, stuck = obs.swap
            phase = c.PHASE_FAILED if stuck else c.PHASE_PROGRESSING
            ready = Condition(c.COND_READY, False, reason, message)
            reconciling = Condition(c.COND_RECONCILING, not stuck, reason, message)
            stalled = Condition(c.COND_STALLED, stuck, reason, message if stuck else "progressing")

    if obs.unimplemented:
        fields = ", ".join(obs.unimplemented)
        supported = Condition(
            c.COND_FIELDS_SUPPORTED, False, c.REASON_NOT_IMPLEMENTED,
            f"{fields}: accepted but not implemented by this modeldeploy version; "
            "serving the model as given with a rolling update",
        )
    else:
        supported = Condition(c.COND_FIELDS_SUPPORTED, True, c.REASON_ALL_SUPPORTED,
                              "every field in the spec is implemented")

    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "phase": phase,
        "conditions": merge_conditions(previous.get("conditions"),
                                       [ready, reconciling, stalled, *([obs.compressed] if obs.compressed else []),
                                        *obs.extra_conditions, supported], obs.generation, now),
        **counts,
    }
    for key, value in (
        ("selector", obs.selector),
        ("currentRevision", obs.revision),
        ("deployment", obs.deployment_name),
        ("service", obs.service_name),
    ):
        if value is not None:
            status[key] = value
    if obs.model_name is not None:
        status["model"] = {"name": obs.model_name, "version": obs.model_version}
        if obs.model_uri is not None:
            status["model"]["uri"] = obs.model_uri
        if obs.model_sha256 is not None:
            status["model"]["sha256"] = obs.model_sha256
        if obs.model_fingerprint is not None:
            status["model"]["uriFingerprint"] = obs.model_fingerprint
    if obs.compression is not None:
        status["compression"] = dict(obs.compression)
    if obs.model_swap is not None:
        status["modelSwap"] = dict(obs.model_swap)
    if obs.canary is not None:
        status["canary"] = replace_block(previous.get("canary"), obs.canary)
    if obs.autoscaling is not None:
        status["autoscaling"] = replace_block(previous.get("autoscaling"), obs.autoscaling)
    for key in ("compression", "modelSwap", "canary", "autoscaling"):
        if previous.get(key) is not None and key not in status:
            status[key] = None  # a merge patch keeps what it does not mention: remove it explicitly
    if obs.service_name is not None and obs.namespace is not None:
        host = f"{obs.service_name}.{obs.namespace}.svc"
        status["endpoints"] = {
            "http": f"http://{host}:{c.HTTP_PORT}",
            "grpc": f"{host}:{c.GRPC_PORT}",
            "metrics": f"http://{host}:{c.METRICS_PORT}/metrics",
        }
    return status


def replace_block(old: Any, new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` as a JSON merge patch over ``old``: keys of ``old`` that ``new`` lacks become None (removed),
    in nested objects too, so the stored block ends up equal to ``new``.

    >>> replace_block({"a": 1, "b": {"x": 1, "y": 2}}, {"b": {"x": 3}})
    {'b': {'x': 3, 'y': None}, 'a': None}
    """
    out: dict[str, Any] = {}
    for key, value in new.items():
        prev = old.get(key) if isinstance(old, Mapping) else None
        out[key] = replace_block(prev, value) if isinstance(value, Mapping) and isinstance(prev, Mapping) else value
    if isinstance(old, Mapping):
        for key in old:
            if key not in new:
                out[key] = None
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """``patch`` applied to ``target`` as a JSON merge patch (RFC 7386), as the API server applies it.

    >>> merge_patch({"a": 1, "b": {"x": 1}}, {"a": None, "b": {"y": 2}})
    {'b': {'x': 1, 'y': 2}}
    """
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def status_changed(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when writing ``new`` (a merge patch) would change anything in the stored status."""
    previous = dict(previous or {})
    return merge_patch(previous, new) != previous


def transition_event(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event to emit when the phase changed, else None."""
    old_phase = (previous or {}).get("phase")
    new_phase = new.get("phase")
    if old_phase == new_phase:
        return None
    ready = find(new.get("conditions"), c.COND_READY) or {}
    kind = "Warning" if new_phase in (c.PHASE_FAILED, c.PHASE_DEGRADED) else "Normal"
    return kind, str(new_phase), f"phase {old_phase or 'None'} -> {new_phase}: {ready.get('message', '')}"
