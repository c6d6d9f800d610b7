"""How many Triton replicas a ModelDeployment needs now, from Triton's own signals. Pure, injected clock.

Why not HPA's rule as is: HPA multiplies the current count by (metric / target), limits each step to
2× (or +4), and holds every scale-down for the highest recommendation of the last 300 s. For a GPU model
that is slow up (a 5× spike takes several 15 s steps, each waiting for the last) and costly down. This
policy keeps HPA's sound parts — the tolerance band, the treatment of pods that are not ready, a
stabilization window for scale-down — and changes what is slow:

- **Demand, not ratio.** A *capacity* target (inferences/s per replica, pending requests per replica)
  is linear in the replica count, so the count needed is demand / target, computed in one step. For
  inferences/s the demand is the arrival rate: the served rate plus the growth of Triton's queues
  (``pending_growth``, over the same samples). An overloaded replica serves at its capacity whatever
  the load, and only the queue's growth shows the load it does not serve; a draining queue (negative
  growth) is served load that will not come again. *Fast up, safe down*: a scale-up reads the arrival
  rate of the last scrape interval (``recent_arrival_rate``) when there is one, so that a load step is
  seen whole at the first decision instead of a window average that climbs over several; a scale-down
  reads the higher of that and the window's. *Saturation* targets (p99 latency, queue time, queue/compute ratio) are
  symptoms, not linear in the count: above target they ask for ``ready × value / target`` (HPA's
  ratio), below target they only allow a scale-down (a capacity target sizes it; without one, one
  replica per stabilization window).
- **Highest demand wins; up in one step** to the count needed (bounded by maxReplicas and the optional
  ``scaleUp`` limit), as soon as any signal is above ``(1 + tolerance)`` of the replicas asked for.
- **A scale-up is confirmed by the next scrape.** A rate read over the last scrape interval sees a load
  step whole only when the step came before that interval began; the first reading after a step
  usually holds part of it (a step at a random moment falls inside the interval), and sizing the
  scale-up on it asks for too few replicas, then a second decision adds the rest. So the first reading
  that asks for more is held (``ScaleUpConfirming``, the count unchanged) until every pod has been
  scraped again, and the scale-up is sized on that newer reading: one decision, one scrape interval
  later (a single noisy interval is filtered out on the way). The wait is bounded by
  ``metricsWindowSeconds``, and skipped when the signals carry no scrape times.
- **Down only after the window, with hysteresis.** A capacity target proposes a scale-down only when it
  needs less than ``(1 - tolerance)`` of the replicas asked for, and then to ``ceil(needed)``: the
  tolerance band on both sides is the hysteresis (up above 1 + tolerance, down below 1 - tolerance),
  so noise inside it never moves the count. The count applied is the highest candidate of the last
  ``scaleDownStabilizationSeconds`` (HPA's stabilization), and only once the history covers the whole
  window (after an operator restart, a window passes before any scale-down).
- **Starting pods, as HPA does.** Capacity demand is compared with the replicas *asked for*, which
  include pods still loading their model, so a spike is not counted twice while they load; saturation
  ratios multiply the *ready* count (HPA fills unready pods with zero on scale-up: the same number).
  A scale-down may remove starting pods (the ReplicaSet deletes unready pods first).
- **A saturation reading belongs to the pods that made it.** A latency or queue time covers a window
  (Triton's p99 summary: up to :data:`SUMMARY_MAX_AGE_S`, 60 s; queue time: ``metricsWindowSeconds``;
  each plus one metrics window for the age of the samples read, :func:`_coverage`),
  and a ratio of it multiplies the *fewest pods ready over that window* (``History.ready_seen``, at
  least one), not the count now. After a 1 → 4 scale-up the p99 still holds the seconds when one
  overloaded pod served (or a new pod's slow first requests): read against 4 ready pods it asks for
  4 × ratio and scales up again for an overload already fixed; against the one pod that made it, it
  asks for what that pod lacked. (A CI run of the sandbox's e2e went 1 → 4 → 6 at a load 4 serve,
  6 being maxReplicas; the reading behind the 6 was not recorded, and this is the path that gives it.)
  HPA has the same rule for CPU (samples of pods that became ready recently are left out). After a
  restart the history is empty: the count now.
- **Fail-static.** No usable sample for any target → keep the count (``MetricsUnavailable``). Some
  targets missing → the others may scale up, never down (``MetricsPartial``; HPA does the same when one
  of several metrics fails). Missing data never scales in.
- **Canary.** The total is split by the canary's traffic weight, each track rounded up (``split``).

Worked examples (targets: 80 inferences/s per replica, tolerance 0.1, window 120 s):

- Spike: 2 replicas ready, 160 inferences/s served and the queue growing by 240/s → demand 400/s →
  5 replicas needed; 5 > 2 × 1.1 → scale to 5 in one decision (with scrape times: held at 2,
  ``ScaleUpConfirming``, until each pod has a newer scrape; then sized on that reading).
- Pods loading: the next decision, 2 ready + 3 starting, demand still 400/s → needs 5, asked 5 → hold
  (no double counting). A p99 of 2× its target with 2 ready asks for 2 × 2 = 4 ≤ 5: hold too.
- Ramp down: 5 replicas, demand 250/s → 3.125 needed < 5 × 0.9 → candidate 4 → recorded; applied
  once every candidate of the last 120 s is ≤ 4.
- Noise: 5 replicas, demand 420/s → 5.25 needed = 1.05 × 5, inside tolerance → hold.
- Prometheus down: every signal None → hold at the current count, reason MetricsUnavailable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from modeldeploy.api.autoscaling import AutoscalingSpec
from modeldeploy.policy.measurements import SUMMARY_MAX_AGE_S

REASON_SCALED_UP = "ScaledUp"
REASON_SCALED_DOWN = "ScaledDown"
REASON_WITHIN_TOLERANCE = "WithinTolerance"
REASON_STABILIZING = "ScaleDownStabilizing"
REASON_METRICS_UNAVAILABLE = "MetricsUnavailable"
REASON_METRICS_PARTIAL = "MetricsPartial"
REASON_LIMITED = "ScaleUpLimited"
REASON_AT_MAX = "AtMaxReplicas"
REASON_BOUNDS = "OutsideBounds"
REASON_CONFIRMING = "ScaleUpConfirming"

#: Seconds until the next look while a scale-up waits for its confirming scrape (the regular look is the
#: reconciler's business; this one should come soon after the next scrape, whose time the policy cannot know).
CONFIRM_RECHECK_SECONDS = 1.0

#: Short names of the targets in messages and status.autoscaling.proposals.
LABELS = {
    "targetInferencesPerSecondPerReplica": "inferences/s",
    "targetPendingRequestsPerReplica": "pending",
    "targetP99LatencyMilliseconds": "p99",
    "targetQueueMicroseconds": "queue",
    "targetQueueToComputeRatio": "queue/compute",
}
CAPACITY = ("targetInferencesPerSecondPerReplica", "targetPendingRequestsPerReplica")
_EPS = 1e-9


@dataclass(frozen=True)
class Signals:
    """What Prometheus said about the pods of the ModelDeployment (or track), over the metrics window.

    ``None`` means no usable sample (unreachable, empty, NaN): never zero. Units are Triton's."""

    inference_rate: float | None = None  # inferences per second, summed over pods
    request_rate: float | None = None  # requests per second (to turn queue growth into inferences)
    pending_requests: float | None = None  # requests waiting in Triton's queues now, summed over pods
    pending_growth: float | None = None  # d(pending requests)/dt over the window, per second
    recent_arrival_rate: float | None = None  # requests/s arriving over the last scrape interval
    p99_latency_us: float | None = None  # the worst pod's p99 request latency
    queue_us: float | None = None  # mean queue time per request
    queue_to_compute: float | None = None  # queue time / compute time
    newest_scrape: float | None = None  # unix s of the newest sample of any pod (Prometheus' clock)
    stalest_scrape: float | None = None  # unix s of the newest sample of the pod scraped least recently
    error: str | None = None  # why something is missing, for the message


@dataclass(frozen=True)
class Recommendation:
    at: float  # seconds (the injected clock)
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    from_replicas: int
    to_replicas: int


@dataclass(frozen=True)
class History:
    """What the policy remembers between decisions: its recent recommendations (the stabilization
    window) and recent scale events (the scale-up limit). Returned pruned with every decision."""

    recommendations: tuple[Recommendation, ...] = ()
    scale_events: tuple[ScaleEvent, ...] = ()
    #: A scale-up waiting for its confirming scrape: (when the wait began, on the policy's clock; the newest
    #: scrape time of the reading that asked for it). None when none waits.
    confirming: tuple[float, float] | None = None
    #: (when, ready pods) at each decision within the longest saturation window: the pods a latency or
    #: queue reading can come from (:func:`_serving`).
    ready_seen: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class Decision:
    replicas: int  # the total to run
    reason: str
    message: str  # the decision with its numbers (for status and the Event)
    history: History
    current: int  # the total asked for before this decision
    signal: str | None = None  # the target that decided a scale-up, or the binding scale-down floor
    needed: Mapping[str, float] = field(default_factory=dict)  # target -> replicas it asks for (unrounded)
    split: tuple[int, int] | None = None  # (stable, canary) during a canary
    recheck_after: float | None = None  # look again this soon (a scale-up waits for its confirming scrape)

    @property
    def scaled(self) -> bool:
        return self.replicas != self.current


def _ceil(x: float) -> int:
    return int(math.ceil(x - _EPS))


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def _usable(v: float | None) -> bool:
    return v is not None and math.isfinite(v) and v >= 0


def _coverage(spec: AutoscalingSpec) -> dict[str, float]:
    """Saturation target -> how far back (seconds before the decision) the requests behind its reading may
    go: Triton's p99 summary holds up to 60 s of them, the queue times are rates over the metrics window,
    and the samples read are up to a scrape interval old, which one more metrics window covers (a window
    holds at least two scrapes).

    >>> _coverage(AutoscalingSpec(max_replicas=2, target_queue_us=1.0, metrics_window_seconds=10))
    {'targetP99LatencyMilliseconds': 70.0, 'targetQueueMicroseconds': 20.0, 'targetQueueToComputeRatio': 20.0}
    """
    window = float(spec.metrics_window_seconds)
    return {"targetP99LatencyMilliseconds": SUMMARY_MAX_AGE_S + window,
            "targetQueueMicroseconds": 2 * window, "targetQueueToComputeRatio": 2 * window}


def _serving(seen: tuple[tuple[float, int], ...], ready: int, now: float, seconds: float) -> int:
    """The fewest pods ready over the last ``seconds`` (``seen`` plus ``ready`` now), at least one: the pods
    that served the requests a reading over those seconds describes.

    >>> seen = ((900.0, 1), (950.0, 1), (990.0, 4))
    >>> _serving(seen, 4, 1000.0, 60), _serving(seen, 4, 1000.0, 20), _serving(seen, 4, 1100.0, 60)
    (1, 4, 4)
    >>> _serving((), 0, 1000.0, 60), _serving(((990.0, 5),), 3, 1000.0, 60)
    (1, 3)
    """
    return max(1, min([n for at, n in seen if at >= now - seconds] + [ready]))


def _needed(spec: AutoscalingSpec, s: Signals, ready: int,
            serving: Mapping[str, int] | None = None) -> tuple[dict[str, float], dict[str, float],
                                                                dict[str, float], list[str]]:
    """Per target: replicas it asks for to scale up and to scale down (unrounded; they differ only for
    inferences/s, see :func:`decide`), its value/target ratio (saturation targets), and the missing
    targets. Saturation targets need at least one ready pod to mean anything; their ratio multiplies
    ``serving[target]`` (the pods behind the reading, :func:`_serving`), ``ready`` when not given."""
    needed: dict[str, float] = {}
    ratio: dict[str, float] = {}
    missing: list[str] = []
    up: dict[str, float] = {}

    if spec.target_inferences_per_second_per_replica is not None:
        name = "targetInferencesPerSecondPerReplica"
        target = spec.target_inferences_per_second_per_replica
        if _usable(s.inference_rate):
            demand = s.inference_rate
            per_request = (s.inference_rate / s.request_rate
                           if _usable(s.request_rate) and s.request_rate > 0 and s.inference_rate > 0 else 1.0)
            if s.pending_growth is not None and math.isfinite(s.pending_growth):
                demand = max(0.0, demand + s.pending_growth * per_request)
            needed[name] = demand / target
            up[name] = needed[name]
            if _usable(s.recent_arrival_rate):
                recent = s.recent_arrival_rate * per_request / target
                up[name] = recent  # fast up: the last scrape interval
                needed[name] = max(needed[name], recent)  # safe down: the higher of the two
        else:
            missing.append(name)
    if spec.target_pending_requests_per_replica is not None:
        if _usable(s.pending_requests):
            needed["targetPendingRequestsPerReplica"] = s.pending_requests / spec.target_pending_requests_per_replica
        else:
            missing.append("targetPendingRequestsPerReplica")
    saturation = (
        ("targetP99LatencyMilliseconds", s.p99_latency_us,
         None if spec.target_p99_latency_ms is None else spec.target_p99_latency_ms * 1000.0),
        ("targetQueueMicroseconds", s.queue_us, spec.target_queue_us),
        ("targetQueueToComputeRatio", s.queue_to_compute, spec.target_queue_to_compute_ratio),
    )
    for name, value, target in saturation:
        if target is None:
            continue
        if _usable(value) and ready > 0:
            ratio[name] = value / target
            needed[name] = (serving or {}).get(name, ready) * ratio[name]
        else:
            missing.append(name)
    return {**needed, **up}, needed, ratio, missing


def _observed(s: Signals) -> str:
    parts = []
    if s.inference_rate is not None:
        parts.append(f"{_fmt(s.inference_rate)} inferences/s")
    if s.pending_growth is not None and s.pending_growth > 0:
        parts.append(f"queue growing {_fmt(s.pending_growth)}/s")
    if s.recent_arrival_rate is not None:
        parts.append(f"{_fmt(s.recent_arrival_rate)} requests/s arriving lately")
    if s.pending_requests is not None:
        parts.append(f"{_fmt(s.pending_requests)} pending")
    if s.p99_latency_us is not None:
        parts.append(f"p99 {_fmt(s.p99_latency_us / 1000.0)} ms")
    if s.queue_us is not None:
        parts.append(f"queue {_fmt(s.queue_us)} µs")
    if s.queue_to_compute is not None:
        parts.append(f"queue/compute {_fmt(s.queue_to_compute)}")
    return ", ".join(parts) or "no samples"


def _prune(history: History, now: float, spec: AutoscalingSpec) -> History:
    """Recommendations inside the window plus the newest one older than it (it shows that the history
    covers the window); scale events inside the scale-up period."""
    cutoff = now - spec.scale_down_stabilization_seconds
    inside = [r for r in history.recommendations if r.at > cutoff]
    older = [r for r in history.recommendations if r.at <= cutoff]
    recs = ([max(older, key=lambda r: r.at)] if older else []) + inside
    period = spec.scale_up.period_seconds if spec.scale_up else 0
    events = tuple(e for e in history.scale_events if e.at > now - period)
    longest = max(_coverage(spec).values())
    seen = tuple((at, n) for at, n in history.ready_seen if at >= now - longest)
    return History(tuple(recs), events, history.confirming, seen)


def _still_confirming(spec: AutoscalingSpec, s: Signals, history: History, now: float) -> tuple[float, float] | None:
    """What to remember while a due scale-up waits for its confirming scrape, or None to act on this reading.

    The reading that first asks for more starts the wait; it ends when every pod has a sample newer than the
    newest one that reading used (``stalest_scrape`` > that time), or after ``metricsWindowSeconds`` (a pod
    that stopped being scraped must not hold a scale-up for ever). Without scrape times: act at once.

    >>> spec = AutoscalingSpec(max_replicas=8, target_inferences_per_second_per_replica=10)
    >>> _still_confirming(spec, Signals(newest_scrape=100.0, stalest_scrape=99.0), History(), now=5.0)
    (5.0, 100.0)
    >>> waiting = History(confirming=(5.0, 100.0))
    >>> _still_confirming(spec, Signals(newest_scrape=101.0, stalest_scrape=100.0), waiting, now=6.0)  # one pod not yet
    (5.0, 100.0)
    >>> _still_confirming(spec, Signals(newest_scrape=102.0, stalest_scrape=101.0), waiting, now=7.0) is None
    True
    >>> _still_confirming(spec, Signals(newest_scrape=100.0, stalest_scrape=100.0), waiting, now=35.0) is None
    True
    """
    if s.newest_scrape is None or s.stalest_scrape is None:
        return None
    if history.confirming is None:
        return (now, s.newest_scrape)
    since, scrape = history.confirming
    if s.stalest_scrape > scrape or now - since >= spec.metrics_window_seconds:
        return None
    return history.confirming


def _scale_up_limit(spec: AutoscalingSpec, current: int, events: tuple[ScaleEvent, ...]) -> int | None:
    """HPA's ``calculateScaleUpLimitWithScalingRules`` with selectPolicy Max: the count at the start of
    the period plus the larger allowance. None when no limit is set."""
    lim = spec.scale_up
    if lim is None:
        return None
    added = sum(e.to_replicas - e.from_replicas for e in events if e.to_replicas > e.from_replicas)
    removed = sum(e.from_replicas - e.to_replicas for e in events if e.to_replicas < e.from_replicas)
    start = current - added + removed
    allowed = []
    if lim.replicas is not None:
        allowed.append(start + lim.replicas)
    if lim.percent is not None:
        allowed.append(_ceil(start * (1 + lim.percent / 100.0)))
    return max(max(allowed), current)


def split_by_weight(total: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replicas for a canary taking ``weight`` % of the traffic: each track gets the
    replicas for its share, rounded up (so the sum may exceed ``total`` by one), and a track with a
    share > 0 gets at least one.

    >>> split_by_weight(10, 25), split_by_weight(4, 50), split_by_weight(3, 0), split_by_weight(1, 10)
    ((8, 3), (2, 2), (3, 0), (1, 1))
    """
    weight = max(0, min(100, weight))
    canary = _ceil(total * weight / 100.0) if weight > 0 else 0
    stable = _ceil(total * (100 - weight) / 100.0) if weight < 100 else 0
    return max(stable, 1 if weight < 100 else 0), max(canary, 1 if weight > 0 else 0)


def decide(spec: AutoscalingSpec, signals: Signals, *, current: int, ready: int, starting: int = 0,
           history: History = History(), now: float, canary_weight: int | None = None) -> Decision:
    """The replica count for now.

    ``current``: replicas asked for now (all tracks; pods loading their model included); ``ready``: pods
    that pass readiness; ``starting``: pods that exist but are not ready yet (for the message; the
    arithmetic needs only ``current`` and ``ready``); ``history``: the previous decision's
    ``Decision.history`` (empty after a restart); ``now``: seconds on the clock the history uses;
    ``canary_weight``: the canary's traffic %, when a canary runs."""
    history = _prune(history, now, spec)
    tol = spec.tolerance
    serving = {n: _serving(history.ready_seen, ready, now, seconds) for n, seconds in _coverage(spec).items()}
    needed_up, needed, ratio, missing = _needed(spec, signals, ready, serving)
    pods = f"{current} asked, {ready} ready" + (f", {starting} starting" if starting else "")

    def done(replicas: int, reason: str, message: str, signal: str | None = None,
             recommend: int | None = None, confirming: tuple[float, float] | None = None) -> Decision:
        rec = Recommendation(now, replicas if recommend is None else recommend)
        events = history.scale_events
        if replicas != current:
            events += (ScaleEvent(now, current, replicas),)
        split = split_by_weight(replicas, canary_weight) if canary_weight is not None else None
        remembered = History(history.recommendations + (rec,), events, confirming,
                             history.ready_seen + ((now, ready),))
        return Decision(replicas, reason, message, remembered,
                        current, signal, needed, split,
                        recheck_after=CONFIRM_RECHECK_SECONDS if confirming is not None else None)

    def describe(names) -> str:
        return "; ".join(f"{LABELS[n]} needs {_fmt(needed[n])}" for n in names)

    if not spec.min_replicas <= current <= spec.max_replicas:
        target = spec.clamp(current)
        if current == 0:  # nothing runs yet (a new ModelDeployment): not a correction, the start
            return done(target, REASON_BOUNDS, f"starting with minReplicas: {target}")
        return done(target, REASON_BOUNDS, f"{current} replicas outside [{spec.min_replicas}, {spec.max_replicas}]: "
                                           f"set to {target}")
    if not needed:
        why = f" ({signals.error})" if signals.error else ""
        return done(current, REASON_METRICS_UNAVAILABLE,
                    f"no usable metrics for {', '.join(LABELS[m] for m in missing)}{why}: keeping {current} "
                    f"replicas ({pods})")

    observed = _observed(signals)
    # Up: any target above (1 + tolerance) of the replicas asked for; the highest demand wins.
    above = {n: v for n, v in needed_up.items() if v > current * (1 + tol) + _EPS and _ceil(v) > current}
    if above:
        name = max(above, key=lambda n: above[n])
        want = _ceil(above[name])
        target = min(want, spec.max_replicas)
        limit = _scale_up_limit(spec, current, history.scale_events)
        reason = REASON_SCALED_UP
        note = ""
        if limit is not None and target > limit:
            target, reason, note = limit, REASON_LIMITED, f", limited to {limit} by spec.autoscaling.scaleUp"
        elif want > spec.max_replicas:
            note = f", capped at maxReplicas {spec.max_replicas}"
            if current == spec.max_replicas:
                reason = REASON_AT_MAX
        waiting = _still_confirming(spec, signals, history, now) if target > current else None
        if waiting is not None:
            return done(current, REASON_CONFIRMING,
                        f"keeping {current} until every pod is scraped again: {LABELS[name]} needs "
                        f"{_fmt(above[name])} replicas{note} ({observed}; {pods})", name, confirming=waiting)
        verb = "scale up" if target > current else "hold"
        return done(target, reason, f"{verb} {current} -> {target}: {LABELS[name]} needs {_fmt(above[name])} "
                                    f"replicas{note} ({observed}; {pods})", name)

    # Down: every target must allow it; missing ones forbid it.
    if missing:
        return done(current, REASON_METRICS_PARTIAL,
                    f"keeping {current}: no usable metrics for {', '.join(LABELS[m] for m in missing)} "
                    f"(never scaling in on missing data; {observed}; {pods})")
    floors: dict[str, int] = {}
    has_capacity = any(n in needed for n in CAPACITY)
    for n, v in needed.items():
        if n in CAPACITY:
            floors[n] = _ceil(v) if v < current * (1 - tol) - _EPS else current
        elif ratio[n] >= 1 - tol:
            floors[n] = current  # near its target: no scale-down
        elif not has_capacity:
            floors[n] = current - 1  # below target, nothing sizes the step: one replica per window
    binding = max(floors, key=lambda n: floors[n]) if floors else None
    candidate = min(current, spec.clamp(floors[binding] if binding else spec.min_replicas))
    if candidate >= current:
        return done(current, REASON_WITHIN_TOLERANCE,
                    f"keeping {current}: within tolerance {tol:g} ({observed}; {describe(needed)}; {pods})", binding)
    window = spec.scale_down_stabilization_seconds
    cutoff = now - window
    recent = [r.replicas for r in history.recommendations if r.at > cutoff] + [candidate]
    stabilized = max(recent)
    covered = window == 0 or any(r.at <= cutoff for r in history.recommendations)
    if covered and stabilized < current:
        return done(stabilized, REASON_SCALED_DOWN,
                    f"scale down {current} -> {stabilized}: highest recommendation of the last {window}s "
                    f"({observed}; {describe(needed)}; {pods})", binding, recommend=candidate)
    since = (f"highest recommendation of the last {window}s is {stabilized}" if covered else
             f"recommendations cover less than the {window}s window")
    return done(current, REASON_STABILIZING,
                f"keeping {current}: would scale down to {candidate}, but {since} ({observed}; {describe(needed)}; "
                f"{pods})", binding, recommend=candidate)


def status_fields(decision: Decision, signals: Signals, last_scale_time: str | None,
                  spec_replicas_ignored: bool = False) -> dict:
    """``status.autoscaling`` for this decision (``last_scale_time``: RFC 3339, kept by the caller from the
    last decision that scaled; ``spec_replicas_ignored``: spec.replicas is set too)."""
    observed = {
        "inferencesPerSecond": signals.inference_rate,
        "pendingRequests": signals.pending_requests,
        "pendingGrowthPerSecond": signals.pending_growth,
        "recentRequestsPerSecond": signals.recent_arrival_rate,
        "p99LatencyMilliseconds": None if signals.p99_latency_us is None else signals.p99_latency_us / 1000.0,
        "queueMicroseconds": signals.queue_us,
        "queueToComputeRatio": signals.queue_to_compute,
    }
    out: dict = {
        "desiredReplicas": decision.replicas,
        "reason": decision.reason,
        "message": decision.message,
        "observed": {k: round(v, 3) for k, v in observed.items() if v is not None and math.isfinite(v)},
        "neededReplicas": {k: round(v, 3) for k, v in decision.needed.items()},
    }
    if spec_replicas_ignored:
        out["specReplicasIgnored"] = True
    if last_scale_time:
        out["lastScaleTime"] = last_scale_time
    if decision.split is not None:
        out["split"] = {"stable": decision.split[0], "canary": decision.split[1]}
    return out
