"""A ModelDeployment's status as Prometheus samples. Pure: no client library, no I/O.

Why a pure function: what the operator exports per ModelDeployment is a *view* of the status it just
computed, as kube-state-metrics is a view of objects. Keeping the mapping pure makes it table-testable
and keeps the one rule that matters here in one place: **bounded label cardinality**.

How cardinality stays bounded (the trade-off: less detail in labels, which is what free text would
give, for series counts that cannot grow with user input):

- Per ModelDeployment the labels are ``namespace`` and ``modeldeployment``; the latter is the name cut
  as the pod label is (:func:`modeldeploy.render.names.fit`), so that operator series join Triton's
  series ``on (namespace, modeldeployment)`` (the scrape config copies that pod label to targets).
- Every other label value comes from a closed set: ``phase`` from the five phases, ``condition`` from
  the ``COND_*`` constants of :mod:`modeldeploy.api.constants`, ``reason`` from its ``REASON_*``
  constants (anything else, e.g. a reason another version wrote, becomes ``Other``), compression
  ``state`` from the four outcomes, the canary ``verdict`` from :data:`VERDICTS`. Messages, URIs and
  numbers never become labels.
- Enumerations are exported kube-state-metrics style: one series per possible value, 1 for the current
  one and 0 for the rest, so the series set of a ModelDeployment does not change when its phase does
  (an alert's ``for`` is not reset by a new series) and ``== 1`` selects the current value. Reasons
  are the exception: only the current reason is exported (one series per condition), since the set
  of reasons is large and a reason is read for context, not alerted on.
- The only labels whose value changes over a ModelDeployment's life are ``revision`` (a 10-hex-digit
  hash, one at a time) and ``model`` (the Triton model name, one at a time) in the ``*_info`` series.
- Series of a deleted ModelDeployment disappear: the exporter keeps the latest samples per
  ModelDeployment and drops them on ``forget`` (:mod:`modeldeploy.metrics.exporter`).

At most ``5 (phase) + 3·|COND| + |COND| (reasons) + 4 (compression) + |VERDICTS| + ~12`` series per
ModelDeployment: about 50 with today's five condition types.

Worked example: status ``{"phase": "Ready", "readyReplicas": 2}`` of ``ml/digits`` with spec
``{"replicas": 2}`` gives ``modeldeploy_phase{phase="Ready"} 1`` (and 0 for the four other phases),
``modeldeploy_replicas_ready 2`` and ``modeldeploy_replicas_desired 2``, each labelled
``namespace="ml", modeldeployment="digits"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from modeldeploy.api import constants as c
from modeldeploy.policy import compression_job as cj
from modeldeploy.render.names import fit

OTHER = "Other"
PHASES = (c.PHASE_PENDING, c.PHASE_PROGRESSING, c.PHASE_READY, c.PHASE_DEGRADED, c.PHASE_FAILED)
CONDITION_STATUSES = ("True", "False", "Unknown")
#: Condition types and reasons: the API's constants, so a new one added there is exported without an edit here.
CONDITIONS = tuple(sorted(v for k, v in vars(c).items() if k.startswith("COND_") and isinstance(v, str)))
REASONS = frozenset(v for k, v in vars(c).items() if k.startswith("REASON_") and isinstance(v, str))
COMPRESSION_STATES = (cj.RUNNING, cj.SUCCEEDED, cj.GATE_FAILED, cj.FAILED)
#: Canary analysis verdicts, and the spellings each one is recognised by (case-insensitive).
VERDICTS = ("Passed", "Failed", "Inconclusive")
_VERDICT_SPELLINGS = {
    "passed": "Passed", "pass": "Passed", "success": "Passed", "successful": "Passed", "succeeded": "Passed",
    "failed": "Failed", "fail": "Failed", "failure": "Failed",
    "inconclusive": "Inconclusive", "hold": "Inconclusive", "nodata": "Inconclusive", "unknown": "Inconclusive",
}

ID_LABELS = ("namespace", "modeldeployment")


@dataclass(frozen=True)
class Family:
    """One metric family: its name, help text and label names (the identity labels first)."""

    name: str
    help: str
    labels: tuple[str, ...] = ID_LABELS


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("modeldeploy_info", "1 per ModelDeployment; the revision being rolled out and the Triton model name.",
           ID_LABELS + ("revision", "model")),
    Family("modeldeploy_phase", "1 for the current status.phase, 0 for the others.", ID_LABELS + ("phase",)),
    Family("modeldeploy_condition", "1 for the current status of each condition in status.conditions, 0 for the "
           "other two.", ID_LABELS + ("condition", "status")),
    Family("modeldeploy_condition_reason", "1 per condition, labelled with its current reason (Other when the "
           "reason is not one of the operator's).", ID_LABELS + ("condition", "reason")),
    Family("modeldeploy_replicas_desired", "Replicas the ModelDeployment should run (spec.replicas, or the "
           "autoscaler's decision)."),
    Family("modeldeploy_replicas", "Serving replicas that exist (status.replicas)."),
    Family("modeldeploy_replicas_ready", "Serving replicas that are ready (status.readyReplicas)."),
    Family("modeldeploy_replicas_updated", "Serving replicas that run the current revision (status.updatedReplicas)."),
    Family("modeldeploy_model_version", "Triton model version every pod of the current revision serves "
           "(status.model.version).", ID_LABELS + ("model",)),
    Family("modeldeploy_latency_objective_seconds", "The model's request-latency objective at a quantile "
           "(spec.autoscaling.targetP99LatencyMilliseconds), for alerting on Triton's p99.",
           ID_LABELS + ("quantile",)),
    Family("modeldeploy_compression_state", "1 for status.compression.state, 0 for the other outcomes; absent "
           "without spec.compression.", ID_LABELS + ("state",)),
    Family("modeldeploy_canary_info", "1 while a canary runs, labelled with the canary revision.",
           ID_LABELS + ("revision",)),
    Family("modeldeploy_canary_weight", "Traffic percentage on the canary revision (status.canary.weight)."),
    Family("modeldeploy_canary_step", "Index of the canary step being run (status.canary.step)."),
    Family("modeldeploy_canary_analysis_verdict", "1 for the verdict of the last canary analysis, 0 for the "
           "others (status.canary.lastAnalysis).", ID_LABELS + ("verdict",)),
    Family("modeldeploy_autoscaler_desired_replicas", "Replicas the autoscaler asks for "
           "(status.autoscaling.desiredReplicas)."),
    Family("modeldeploy_autoscaler_reason", "1, labelled with the reason of the autoscaler's last decision "
           "(Other when not one of the operator's reasons).", ID_LABELS + ("reason",)),
)}


@dataclass(frozen=True)
class Sample:
    """One series: family name, label values in the family's label order, and the value."""

    name: str
    labels: tuple[str, ...]
    value: float

    def as_dict(self) -> dict[str, str]:
        return dict(zip(FAMILIES[self.name].labels, self.labels))


def bounded_reason(reason: Any) -> str:
    """``reason`` if it is one of the operator's reason constants, else ``Other``.

    >>> bounded_reason("Unschedulable"), bounded_reason("p99 230ms > 200ms")
    ('Unschedulable', 'Other')
    """
    return reason if isinstance(reason, str) and reason in REASONS else OTHER


def bounded_verdict(verdict: Any) -> str | None:
    """The verdict of ``status.canary.lastAnalysis`` (a mapping with ``verdict`` or a string), normalised to
    :data:`VERDICTS` (a spelling not listed counts as Inconclusive); None when there is none.

    >>> bounded_verdict({"verdict": "Successful"}), bounded_verdict("fail"), bounded_verdict({}) is None
    ('Passed', 'Failed', True)
    """
    if isinstance(verdict, Mapping):
        verdict = verdict.get("verdict", verdict.get("result"))
    if not isinstance(verdict, str) or not verdict:
        return None
    return _VERDICT_SPELLINGS.get(verdict.replace("_", "").replace("-", "").lower(), "Inconclusive")


def _number(value: Any) -> float | None:
    """A finite int/float (not a bool), else None: status written by another version may hold anything."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def desired_replicas(spec: Mapping[str, Any] | None, status: Mapping[str, Any]) -> float | None:
    """What the ModelDeployment should run: the autoscaler's decision when it made one, else
    ``spec.replicas`` (default 1), else (``spec.autoscaling`` without a decision yet) ``minReplicas``.

    >>> desired_replicas({"replicas": 3}, {}), desired_replicas({}, {})
    (3.0, 1.0)
    >>> desired_replicas({"autoscaling": {"maxReplicas": 5}}, {"autoscaling": {"desiredReplicas": 4}})
    4.0
    >>> desired_replicas(None, {}) is None
    True
    """
    decided = _number((status.get("autoscaling") or {}).get("desiredReplicas"))
    if decided is not None:
        return decided
    if spec is None:
        return None
    autoscaling = spec.get("autoscaling")
    if isinstance(autoscaling, Mapping) and "replicas" not in spec:
        return _number(autoscaling.get("minReplicas", 1))
    return _number(spec.get("replicas", 1))


def latency_objective_seconds(spec: Mapping[str, Any] | None) -> float | None:
    """The p99 objective in seconds: ``spec.autoscaling.targetP99LatencyMilliseconds`` / 1000, if set."""
    target = _number(((spec or {}).get("autoscaling") or {}).get("targetP99LatencyMilliseconds"))
    return None if target is None else target / 1000.0


def _one_hot(name: str, ids: tuple[str, str], values: tuple[str, ...], current: str | None,
             prefix: tuple[str, ...] = ()) -> list[Sample]:
    return [Sample(name, ids + prefix + (v,), 1.0 if v == current else 0.0) for v in values]


def samples(namespace: str, name: str, status: Mapping[str, Any] | None,
            spec: Mapping[str, Any] | None = None) -> list[Sample]:
    """Every series the operator exports for one ModelDeployment, from its status (and spec, for the
    desired replicas and the latency objective). Fields that are absent give no series.

    >>> [s for s in samples("ml", "digits", {"phase": "Ready"}) if s.name == "modeldeploy_phase" and s.value]
    [Sample(name='modeldeploy_phase', labels=('ml', 'digits', 'Ready'), value=1.0)]
    """
    status = status or {}
    ids = (namespace, fit(name))
    out: list[Sample] = []
    model = status.get("model") if isinstance(status.get("model"), Mapping) else {}
    model_name = fit(str(model.get("name"))) if model.get("name") else ""
    revision = status.get("currentRevision")
    out.append(Sample("modeldeploy_info", ids + (fit(revision) if isinstance(revision, str) else "", model_name), 1.0))
    phase = status.get("phase")
    out += _one_hot("modeldeploy_phase", ids, PHASES, phase if phase in PHASES else None)

    seen: set[str] = set()
    for cond in status.get("conditions") or ():
        if not isinstance(cond, Mapping) or cond.get("type") not in CONDITIONS or cond["type"] in seen:
            continue
        seen.add(cond["type"])
        state = cond.get("status") if cond.get("status") in CONDITION_STATUSES else "Unknown"
        out += _one_hot("modeldeploy_condition", ids, CONDITION_STATUSES, state, (cond["type"],))
        out.append(Sample("modeldeploy_condition_reason", ids + (cond["type"], bounded_reason(cond.get("reason"))), 1.0))

    for family, value in (("modeldeploy_replicas_desired", desired_replicas(spec, status)),
                          ("modeldeploy_replicas", _number(status.get("replicas", 0))),
                          ("modeldeploy_replicas_ready", _number(status.get("readyReplicas", 0))),
                          ("modeldeploy_replicas_updated", _number(status.get("updatedReplicas", 0)))):
        if value is not None:
            out.append(Sample(family, ids, value))

    version = _number(model.get("version"))
    if version is not None:
        out.append(Sample("modeldeploy_model_version", ids + (model_name,), version))
    objective = latency_objective_seconds(spec)
    if objective is not None:
        out.append(Sample("modeldeploy_latency_objective_seconds", ids + ("0.99",), objective))

    compression = status.get("compression")
    if isinstance(compression, Mapping) and compression.get("state"):
        state = compression["state"]
        out += _one_hot("modeldeploy_compression_state", ids, COMPRESSION_STATES,
                        state if state in COMPRESSION_STATES else None)

    canary = status.get("canary")
    if isinstance(canary, Mapping):
        if isinstance(canary.get("revision"), str) and canary["revision"]:
            out.append(Sample("modeldeploy_canary_info", ids + (fit(canary["revision"]),), 1.0))
        for family, key in (("modeldeploy_canary_weight", "weight"), ("modeldeploy_canary_step", "step")):
            value = _number(canary.get(key))
            if value is not None:
                out.append(Sample(family, ids, value))
        verdict = bounded_verdict(canary.get("lastAnalysis"))
        if verdict is not None:
            out += _one_hot("modeldeploy_canary_analysis_verdict", ids, VERDICTS, verdict)

    autoscaling = status.get("autoscaling")
    if isinstance(autoscaling, Mapping):
        value = _number(autoscaling.get("desiredReplicas"))
        if value is not None:
            out.append(Sample("modeldeploy_autoscaler_desired_replicas", ids, value))
        if autoscaling.get("reason"):
            out.append(Sample("modeldeploy_autoscaler_reason", ids + (bounded_reason(autoscaling["reason"]),), 1.0))
    return out
