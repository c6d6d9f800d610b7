"""One autoscaling look at a ModelDeployment: read Triton's signals, let the policy decide, say so in status.

The decision is pure (policy/autoscaling.py); this module reads the signals through the metrics
provider (reconcile/autoscaling_metrics.py), keeps each object's decision history in memory (the
scale-down window; an empty history after a restart blocks scale-down for one window, which is the
safe side), and turns the decision into ``status.autoscaling``, a ``ScalingActive`` condition and
Events. The replica count goes to the Deployment(s) through the plan, never into ``spec`` (GitOps
tools would fight it).

A failing Prometheus is asked once, not once per query and object: after a query fails on Prometheus'
side (unreachable, an error, a timeout), every query of every ModelDeployment fails at once for
:data:`PROMETHEUS_BACKOFF_SECONDS` (:class:`_Backoff`). A hung Prometheus would otherwise cost each query
its full timeout, one look a minute and more, and hold the operator's few workers meanwhile — while
status still said nothing: the fail-static condition must come within about one timeout.

Missing metrics turn ``ScalingActive`` False at once, but the Warning Event waits for
:func:`missing_metrics_grace` with ready pods, once per episode: a new pod has no rate until Prometheus
found it and scraped it twice, and a Warning on every new ModelDeployment would teach users to ignore it.

Cost: the reconciler looks every :data:`PERIOD_SECONDS` while ``spec.autoscaling`` is set (Prometheus
queries only). ``status.autoscaling`` carries the observed signals, which change at every look; it
is rewritten when the decision changes, and otherwise at most every :data:`STATUS_REFRESH_SECONDS`, so
a steady autoscaled model costs two status writes a minute, not twelve.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Sequence

from modeldeploy.adapters.prometheus import MetricsProvider, MetricsUnavailable, Sample
from modeldeploy.api.autoscaling import AutoscalingSpec
from modeldeploy.api.conditions import Condition, format_time
from modeldeploy.policy import autoscaling as policy
from modeldeploy.reconcile.autoscaling_metrics import has_data, observe

#: Seconds between two looks while spec.autoscaling is set (HPA syncs every 15 s; Triton's signals lead).
PERIOD_SECONDS = 5.0
#: Seconds a status.autoscaling block may stay unwritten while the decision does not change.
STATUS_REFRESH_SECONDS = 30.0
#: Seconds Prometheus is not asked again after a query failed on its side (every look meanwhile holds).
PROMETHEUS_BACKOFF_SECONDS = PERIOD_SECONDS
COND_SCALING_ACTIVE = "ScalingActive"
_NO_DATA = (policy.REASON_METRICS_UNAVAILABLE, policy.REASON_METRICS_PARTIAL)


@dataclass(frozen=True)
class Look:
    replicas: int  # the total to run now (all tracks)
    status: dict[str, Any]  # status.autoscaling, whole
    condition: Condition
    events: tuple[tuple[str, str, str], ...]
    requeue_after: float = PERIOD_SECONDS  # the next look (sooner while a scale-up waits for its confirming scrape)


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


class _Backoff:
    """A MetricsProvider that stops asking a failing Prometheus for ``seconds`` after a failure, answering with
    that failure at once meanwhile (errors of the answer itself — no data, NaN — are the caller's and do not
    count: only what ``provider.query`` raises)."""

    def __init__(self, provider: MetricsProvider, seconds: float, clock: Callable[[], float]):
        self.provider, self.seconds, self.clock = provider, seconds, clock
        self._failed: tuple[float, str] | None = None  # (when, the error)
        self._lock = threading.Lock()

    def query(self, promql: str, at: datetime | None = None) -> list[Sample]:
        with self._lock:
            failed = self._failed
        if failed is not None and self.clock() - failed[0] < self.seconds:
            raise MetricsUnavailable(f"{failed[1]} (not asked again for {self.seconds:g}s)")
        try:
            answer = self.provider.query(promql, at)
        except MetricsUnavailable as exc:
            with self._lock:
                self._failed = (self.clock(), str(exc))
            raise
        with self._lock:
            self._failed = None
        return answer

    def is_online(self) -> bool:
        return self.provider.is_online()


def missing_metrics_grace(spec: AutoscalingSpec) -> float:
    """Seconds of missing metrics, with pods ready, before the Warning Event: two metrics windows (a rate needs
    two scrapes inside one window, and Prometheus first has to discover the pod). The condition says it at once.

    >>> missing_metrics_grace(AutoscalingSpec(max_replicas=2, target_queue_us=1.0, metrics_window_seconds=10))
    20.0
    """
    return 2.0 * spec.metrics_window_seconds


class Autoscaler:
    """Decisions per ModelDeployment, with the history the policy needs kept between looks."""

    def __init__(self, provider: MetricsProvider | None, clock: Callable[[], float] = time.monotonic):
        self.provider = None if provider is None else _Backoff(provider, PROMETHEUS_BACKOFF_SECONDS, clock)
        self.clock = clock
        self._history: dict[tuple[str, str], policy.History] = {}
        #: Per object, while ready pods give no usable metrics: (since when, on ``clock``; Warning posted).
        self._no_data: dict[tuple[str, str], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._history.pop((namespace, name), None)
            self._no_data.pop((namespace, name), None)

    def _warn(self, key: tuple[str, str], no_data: bool, ready: int, grace: float) -> bool:
        """Whether to post the missing-metrics Warning now: once per episode of missing metrics, after ``grace``
        seconds with ready pods. A new pod has no rate until Prometheus found it and scraped it twice, so
        without the grace every new ModelDeployment (and every restart of Prometheus) would warn."""
        with self._lock:
            if not no_data:
                self._no_data.pop(key, None)
                return False
            if ready == 0 and key not in self._no_data:
                return False  # nothing to scrape yet: not missing, not yet there
            since, warned = self._no_data.get(key, (self.clock(), False))
            warn = not warned and self.clock() - since >= grace
            self._no_data[key] = (since, warned or warn)
            return warn

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
        if self._warn(key, decision.reason in _NO_DATA, ready, missing_metrics_grace(spec)):
            events.append(("Warning", decision.reason, decision.message))
        if decision.reason in _NO_DATA or not has_data(signals):
            condition = Condition(COND_SCALING_ACTIVE, False, decision.reason, decision.message)
        else:
            condition = Condition(COND_SCALING_ACTIVE, True, decision.reason, "the replica count follows Triton's "
                                  "metrics (status.autoscaling.message has the last decision)")
        return Look(decision.replicas, status, condition, tuple(events),
                    min(PERIOD_SECONDS, decision.recheck_after or PERIOD_SECONDS))

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
