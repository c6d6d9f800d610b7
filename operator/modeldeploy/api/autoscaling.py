"""``spec.autoscaling``: the typed, defaulted view the autoscaling policy reads. Pure.

Why a module of its own: the policy (``policy/autoscaling.py``) and the metrics glue
(``reconcile/autoscaling_metrics.py``) need the targets as numbers with units in their names, and every
default in one place, whether or not the API server applied the CRD's defaults (unit tests, dry-run
clients and objects stored before a default existed all miss them). ``parse_autoscaling`` raises
:class:`~modeldeploy.api.spec.SpecError` naming the field, like ``parse_spec``, which calls it.

The replicas rule (one rule for autoscaling and the scale subresource; docs/autoscaling.md): ``spec.replicas``
defaults to 1; when ``spec.autoscaling`` is set it wins, ``spec.replicas`` is ignored and status says so. A user
who prefers HPA or KEDA leaves ``spec.autoscaling`` unset and points them at the scale subresource.

Targets come in two kinds, which the policy treats differently (its docstring explains why):

- *capacity* targets are linear in the replica count — the load one replica should carry:
  ``targetInferencesPerSecondPerReplica``, ``targetPendingRequestsPerReplica``;
- *saturation* targets are symptoms of too few replicas, not linear in the count:
  ``targetP99LatencyMilliseconds``, ``targetQueueMicroseconds``, ``targetQueueToComputeRatio``.

>>> a = parse_autoscaling({"maxReplicas": 8, "targetInferencesPerSecondPerReplica": 80})
>>> (a.min_replicas, a.max_replicas, a.target_inferences_per_second_per_replica, a.tolerance)
(1, 8, 80.0, 0.1)
>>> a.scale_down_stabilization_seconds, a.metrics_window_seconds, a.scale_up
(120, 30, None)
>>> parse_autoscaling({"maxReplicas": 8})
Traceback (most recent call last):
...
modeldeploy.api.spec.SpecError: spec.autoscaling: set at least one target (targetP99LatencyMilliseconds, targetInferencesPerSecondPerReplica, targetQueueMicroseconds, targetPendingRequestsPerReplica, targetQueueToComputeRatio)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

# A module import: api/spec.py imports this module the same way, so either may be imported first.
from modeldeploy.api import spec as _spec

PATH = "spec.autoscaling"

#: CRD field -> AutoscalingSpec attribute, for every target (the order is the order of the docs).
TARGET_FIELDS = {
    "targetP99LatencyMilliseconds": "target_p99_latency_ms",
    "targetInferencesPerSecondPerReplica": "target_inferences_per_second_per_replica",
    "targetQueueMicroseconds": "target_queue_us",
    "targetPendingRequestsPerReplica": "target_pending_requests_per_replica",
    "targetQueueToComputeRatio": "target_queue_to_compute_ratio",
}

DEFAULT_MIN_REPLICAS = 1
DEFAULT_TOLERANCE = 0.1
DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS = 120
DEFAULT_METRICS_WINDOW_SECONDS = 30
DEFAULT_SCALE_UP_PERIOD_SECONDS = 60
MAX_STABILIZATION_SECONDS = 3600
MIN_METRICS_WINDOW_SECONDS = 10
MAX_METRICS_WINDOW_SECONDS = 600


@dataclass(frozen=True)
class ScaleUpLimit:
    """``spec.autoscaling.scaleUp``: at most ``replicas`` more, or ``percent`` % more, per ``period_seconds``
    (when both are set the larger allowance wins, as HPA's default ``selectPolicy: Max``)."""

    replicas: int | None = None
    percent: int | None = None
    period_seconds: int = DEFAULT_SCALE_UP_PERIOD_SECONDS


@dataclass(frozen=True)
class AutoscalingSpec:
    max_replicas: int
    min_replicas: int = DEFAULT_MIN_REPLICAS
    target_p99_latency_ms: float | None = None
    target_inferences_per_second_per_replica: float | None = None
    target_queue_us: float | None = None
    target_pending_requests_per_replica: float | None = None
    target_queue_to_compute_ratio: float | None = None
    tolerance: float = DEFAULT_TOLERANCE
    scale_down_stabilization_seconds: int = DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS
    metrics_window_seconds: int = DEFAULT_METRICS_WINDOW_SECONDS
    scale_up: ScaleUpLimit | None = None

    def targets(self) -> dict[str, float]:
        """The targets that are set, by CRD field name (``{"targetInferencesPerSecondPerReplica": 80.0}``)."""
        out = {}
        for name, attr in TARGET_FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                out[name] = value
        return out

    def clamp(self, replicas: int) -> int:
        """``replicas`` brought within [minReplicas, maxReplicas]."""
        return max(self.min_replicas, min(self.max_replicas, replicas))


def _int(data: Mapping[str, Any], key: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _spec.SpecError(f"{PATH}.{key}", f"must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise _spec.SpecError(f"{PATH}.{key}", f"must be {bound}, got {value}")
    return value


def _positive(data: Mapping[str, Any], key: str, path: str = PATH) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _spec.SpecError(f"{path}.{key}", f"must be a number, got {value!r}")
    if value <= 0:
        raise _spec.SpecError(f"{path}.{key}", f"must be > 0, got {value}")
    return float(value)


def _scale_up(data: Any) -> ScaleUpLimit | None:
    if data is None:
        return None
    path = f"{PATH}.scaleUp"
    if not isinstance(data, Mapping):
        raise _spec.SpecError(path, f"must be an object, got {data!r}")
    replicas, percent = data.get("maxReplicasPerPeriod"), data.get("maxPercentPerPeriod")
    for key, value in (("maxReplicasPerPeriod", replicas), ("maxPercentPerPeriod", percent)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise _spec.SpecError(f"{path}.{key}", f"must be an integer >= 1, got {value!r}")
    if replicas is None and percent is None:
        raise _spec.SpecError(path, "set maxReplicasPerPeriod, maxPercentPerPeriod or both (or leave scaleUp out: no limit)")
    period = data.get("periodSeconds", DEFAULT_SCALE_UP_PERIOD_SECONDS)
    if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= 1800:
        raise _spec.SpecError(f"{path}.periodSeconds", f"must be an integer between 1 and 1800, got {period!r}")
    return ScaleUpLimit(replicas=replicas, percent=percent, period_seconds=period)


def parse_autoscaling(data: Mapping[str, Any]) -> AutoscalingSpec:
    """Parse and default ``spec.autoscaling``; raise SpecError naming the field when it cannot be used."""
    if not isinstance(data, Mapping):
        raise _spec.SpecError(PATH, f"must be an object, got {data!r}")
    if data.get("maxReplicas") is None:
        raise _spec.SpecError(f"{PATH}.maxReplicas", "is required")
    hi = _int(data, "maxReplicas", None, 1)
    lo = _int(data, "minReplicas", DEFAULT_MIN_REPLICAS, 1)
    if lo > hi:
        raise _spec.SpecError(f"{PATH}.minReplicas", f"({lo}) must be <= {PATH}.maxReplicas ({hi})")
    targets = {attr: _positive(data, name) for name, attr in TARGET_FIELDS.items()}
    if all(v is None for v in targets.values()):
        raise _spec.SpecError(PATH, f"set at least one target ({', '.join(TARGET_FIELDS)})")
    tolerance = data.get("tolerance", DEFAULT_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise _spec.SpecError(f"{PATH}.tolerance", f"must be a number in [0, 1), got {tolerance!r}")
    return AutoscalingSpec(
        min_replicas=lo,
        max_replicas=hi,
        tolerance=float(tolerance),
        scale_down_stabilization_seconds=_int(data, "scaleDownStabilizationSeconds",
                                              DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS, 0,
                                              MAX_STABILIZATION_SECONDS),
        metrics_window_seconds=_int(data, "metricsWindowSeconds", DEFAULT_METRICS_WINDOW_SECONDS,
                                    MIN_METRICS_WINDOW_SECONDS, MAX_METRICS_WINDOW_SECONDS),
        scale_up=_scale_up(data.get("scaleUp")),
        **targets,
    )
