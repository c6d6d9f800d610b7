"""One autoscaling look at a ModelDeployment: read Triton's signals, let the policy decide, say so in status.

The decision is pure (policy/autoscaling.py); this module reads the signals through the metrics
provider (reconcile/autoscaling_metrics.py), keeps each object's decision history in memory (the
scale-down window; an empty history after a restart blocks scale-down for one window, which is the
safe side), and turns the decision into ``status.autoscaling``, a ``ScalingActive`` condition and
Events. The replica count goes to the Deployment(s) through the plan, never into ``spec`` (GitOps
tools would fight it).

Cost: the reconciler looks every :data:`PERIOD_SECONDS` while ``spec.autoscaling`` is set (Prometheus
queries only). ``status.autoscaling`` carries the observed signals, which change at every look; it
is rewritten when the decision changes, and otherwise at most every :data:`STATUS_REFRESH_SECONDS`, so
a steady autoscaled model costs two status writes a minute, not twelve.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from modeldeploy.adapters.prometheus import MetricsProvider
from modeldeploy.api.autoscaling import AutoscalingSpec
from modeldeploy.api.conditions import Condition, format_time
from modeldeploy.policy import autoscaling as policy
from modeldeploy.reconcile.autoscaling_metrics import has_data, observe

#: Seconds between two looks while spec.autoscaling is set (HPA syncs every 15 s; Triton's signals lead).
PERIOD_SECONDS = 5.0
#: Seconds a status.autoscaling block may stay unwritten while the decision does not change.
STATUS_REFRESH_SECONDS = 30.0
COND_SCALING_ACTIVE = "ScalingActive"
_NO_DATA = (policy.REASON_METRICS_UNAVAILABLE, policy.REASON_METRICS_PARTIAL)


@dataclass(frozen=True)
class Look:
    replicas: int  # the total to run now (all tracks)
    status: dict[str, Any]  # status.autoscaling, whole
    condition: Condition
    events: tuple[tuple[str, str, str], ...]


def _pod_counts(pods: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    ready = starting = 0
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ()):
            ready += 1
        elif (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            starting += 1
    return ready, starting


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


class Autoscaler:
    """Decisions per ModelDeployment, with the history the policy needs kept between looks."""

    def __init__(self, provider: MetricsProvider | None):
        self.provider = provider
        self._history: dict[tuple[str, str], policy.History] = {}
        self._lock = threading.Lock()

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._history.pop((namespace, name), None)

    def look(self, spec: AutoscalingSpec, namespace: str, name: str, model: str, current: int,
             pods: Sequence[Mapping[str, Any]], previous: Mapping[str, Any] | None, now: datetime,
             canary_weight: int | None = None, spec_replicas_ignored: bool = False) -> Look:
        """The replica total for now and what status says about it (``previous``: status.autoscaling)."""
        previous = previous or {}
        if self.provider is None:
            signals = policy.Signals(error="no Prometheus is configured for the operator "
                                           "(MODELDEPLOY_PROMETHEUS_URL / Helm value prometheusUrl)")
        else:
            signals = observe(self.provider, spec, namespace, name, model=model, at=now)
        ready, starting = _pod_counts(pods)
        key = (namespace, name)
        with self._lock:
            history = self._history.get(key, policy.History())
        decision = policy.decide(spec, signals, current=max(current, 0), ready=ready, starting=starting,
                                 history=history, now=now.timestamp(), canary_weight=canary_weight)
        with self._lock:
            self._history[key] = decision.history
        scaled = decision.replicas != current
        last_scale = format_time(now) if scaled else previous.get("lastScaleTime")
        fresh = policy.status_fields(decision, signals, last_scale, spec_replicas_ignored)
        status = self._throttled(previous, fresh, scaled, now)
        events: list[tuple[str, str, str]] = []
        if scaled:
            events.append(("Normal", decision.reason, decision.message))
        elif decision.reason in _NO_DATA and previous.get("reason") != decision.reason:
            events.append(("Warning", decision.reason, decision.message))
        if decision.reason in _NO_DATA or not has_data(signals):
            condition = Condition(COND_SCALING_ACTIVE, False, decision.reason, decision.message)
        else:
            condition = Condition(COND_SCALING_ACTIVE, True, decision.reason, "the replica count follows Triton's "
                                  "metrics (status.autoscaling.message has the last decision)")
        return Look(decision.replicas, status, condition, tuple(events))

    @staticmethod
    def _throttled(previous: Mapping[str, Any], fresh: dict[str, Any], scaled: bool, now: datetime) -> dict[str, Any]:
        """``fresh`` stamped with ``observedAt``, or the previous block when only the numbers moved and it is
        younger than :data:`STATUS_REFRESH_SECONDS` (no status write for a decision that did not change)."""
        same = (previous.get("desiredReplicas") == fresh.get("desiredReplicas")
                and previous.get("reason") == fresh.get("reason")
                and previous.get("specReplicasIgnored") == fresh.get("specReplicasIgnored"))
        observed_at = _time(previous.get("observedAt"))
        if same and not scaled and observed_at is not None and \
                now - observed_at < timedelta(seconds=STATUS_REFRESH_SECONDS):
            return dict(previous)
        return {**fresh, "observedAt": format_time(now)}
