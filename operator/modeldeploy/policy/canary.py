"""The canary step machine: from the stored rollout status and what is observed now, what to do next. Pure.

``decide(spec, stored, target, observed, verdict, command, now, total_replicas) -> Decision``. Every
bit of rollout state lives in ``status.canary`` (``stored`` in, ``Decision.status`` out), so an
operator restarted mid-step resumes at the same step with the same timers, as Argo Rollouts resumes
from its status. The lead's reconciler calls, in order:

1. ``due = analysis_due(spec, stored, now)`` — whether to read metrics this round (at most once per
   analysis interval, only once traffic reaches the canary); if so
   ``policy.analysis.judge(spec.analysis, reconcile.analysis.measure(provider, target, spec.analysis,
   started_at=due.started_at, now=now), started_at=due.started_at, now=now, previous=due.previous)``;
2. ``decide(...)`` with that verdict (or None) and the command from ``policy.commands.parse``;
3. applies ``Decision`` (replica counts, route weight and header match, ``promote``), writes
   ``Decision.status`` as ``status.canary``, emits ``Decision.events``, merges ``Decision.conditions``,
   removes the command annotation when ``Decision.clear_command``, and requeues after
   ``Decision.requeue_after`` seconds.

Phases (``status.canary.phase``): **Progressing** (a setWeight step: canary pods coming up, weight
set, waiting for a passing analysis at that weight), **Paused** (a pause step: timed, or until
``promote``), **Holding** (metrics unavailable: nothing moves, no promotion, no rollback),
**Promoting** (every step passed: make the canary the stable revision), **Promoted** (done),
**RollingBack** (all traffic back on stable at once, canary pods going away), **Aborted** (rolled back;
stays until the spec changes again or ``retry``).

Rules:
- Traffic follows pods: a step's weight is applied only once its canary pods are Ready (until then the
  previous weight stays); pods not Ready for ``progressDeadlineSeconds`` abort the rollout.
- A setWeight step completes when a Pass verdict was computed at least one interval after its weight
  was applied; a timed pause when its time is up and the latest verdict is Pass; an indefinite pause
  only by ``promote``. With ``skipAnalysis``, readiness and timers alone. A step at weight 0 without
  header routing sends no traffic and needs no verdict.
- A Fail verdict beyond ``failureLimit`` rolls back at once; NoData holds (and aborts after
  ``metricsOutageLimit`` when set); Inconclusive waits.
- Without a router, traffic follows the replica split (:func:`split_replicas`), and stable is
  scaled down only once the canary pods that replace it are Ready.

Worked example (steps [setWeight 20, pause 1m], 5 replicas, Gateway routing, interval 10 s):
t=0 rollout starts: step 0, canary 1 pod, stable 5, weight 0 until the canary pod is Ready; t=30 pod
Ready: weight 20, analysis starts; t=40 first verdict (look 1), Pass, one interval after the weight
was set -> step 1, pause until t=100 (verdicts every 10 s meanwhile; a Fail would roll back at once);
t=100 latest verdict Pass -> Promoting (weight 100, canary 5 pods, ``promote``); the reconciler makes
the canary revision stable and reports it -> Promoted, history entry "Promoted".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from modeldeploy.api import canary as cs
from modeldeploy.api.conditions import Condition, format_time
from modeldeploy.policy import analysis as an
from modeldeploy.policy import commands as cmd

PROGRESSING = "Progressing"
PAUSED = "Paused"
HOLDING = "Holding"
PROMOTING = "Promoting"
PROMOTED = "Promoted"
ROLLING_BACK = "RollingBack"
ABORTED = "Aborted"
ACTIVE = (PROGRESSING, PAUSED, HOLDING)

# Condition types and reasons (the reconciler merges them with its own).
COND_METRICS_AVAILABLE = "MetricsAvailable"
COND_CANARY_ANALYSIS = "CanaryAnalysis"
REASON_ANALYSIS_FAILED = "AnalysisFailed"
REASON_METRICS_UNAVAILABLE = "MetricsUnavailable"
REASON_PROGRESS_DEADLINE = "ProgressDeadlineExceeded"
REASON_ABORTED_BY_USER = "AbortedByUser"

#: History outcomes: "Progressing" while a rollout runs, then one of these.
FINAL_OUTCOMES = ("Promoted", "RolledBack", "Aborted", "Superseded")

#: How many rollouts ``status.canary.history`` keeps (newest first).
HISTORY_LIMIT = 10
#: Requeue while waiting for pods to come up or go away (pod events also wake the reconciler).
POD_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class Target:
    """The revision the spec asks for and the one serving now."""

    canary_revision: str
    stable_revision: str | None  # None: nothing serves yet, no canary (first rollout)
    change: str = ""  # what changed, in words ("model version 1 -> 2"), for history and events
    spec_snapshot: Mapping[str, Any] | None = None  # policy.commands.SNAPSHOT_FIELDS of the spec, for undo


@dataclass(frozen=True)
class Observed:
    """Pods seen this round."""

    canary_ready: int = 0
    canary_pods: int = 0  # canary pods that exist (ready or not)
    stable_ready: int = 0
    canary_problem: str | None = None  # one line from policy.pods.diagnose_pods, e.g. a fetch failure


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    phase: str | None  # None: no canary (nothing to do)
    weight: int  # traffic percent on the canary now (route weight; replica share without a router)
    canary_replicas: int
    stable_replicas: int
    header_routing: bool = False  # requests matching spec's headerMatch go to the canary now
    promote: bool = False  # make the canary revision the stable one now, then report it in Target
    status: Mapping[str, Any] = field(default_factory=dict)  # status.canary, whole
    events: tuple[Event, ...] = ()
    conditions: tuple[Condition, ...] = ()
    stalled: tuple[str, str] | None = None  # (reason, message): a person must act
    requeue_after: float | None = None
    clear_command: bool = False

    @property
    def active(self) -> bool:
        """Two revisions run side by side."""
        return self.phase in ACTIVE + (PROMOTING, ROLLING_BACK)


def split_replicas(total: int, weight: int, routed: bool, header: bool = False) -> tuple[int, int]:
    """(canary, stable) replicas for ``weight`` percent of a ``total``.

    With a router the weight is exact at any replica count: stable keeps ``total`` (so all traffic
    can return at once) and the canary gets its share, at least 1 while it receives traffic.
    Without one, the Service spreads requests over ready pods, so the split *is* the weight; like
    Argo Rollouts' basic canary it picks, among the counts around weight x total and one surge pod,
    the split closest to the weight (at least one pod each while 0 < weight < 100; ties: fewer pods).

    >>> split_replicas(5, 20, routed=True), split_replicas(5, 0, routed=True, header=True)
    ((1, 5), (1, 5))
    >>> [split_replicas(4, w, routed=False) for w in (0, 10, 25, 50, 100)]
    [(0, 4), (1, 4), (1, 3), (2, 2), (4, 0)]
    >>> split_replicas(1, 50, routed=False), split_replicas(0, 50, routed=False)
    ((1, 1), (0, 0))
    """
    if total <= 0:
        return 0, 0
    if routed:
        canary = math.ceil(total * weight / 100)
        if weight > 0 or header:
            canary = max(1, canary)
        return min(canary, total), total
    if weight <= 0:
        return 0, total
    if weight >= 100:
        return total, 0
    best: tuple[float, int, int, int] | None = None
    for pods in (total, total + 1):
        for canary in {math.floor(pods * weight / 100), math.ceil(pods * weight / 100)}:
            canary = min(max(canary, 1), pods - 1)
            if pods - canary < 1:
                continue
            key = (abs(canary / pods - weight / 100), pods, canary, pods - canary)
            if best is None or key < best:
                best = key
    assert best is not None
    return best[2], best[3]


# --- stored state -----------------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class _State:
    """A mutable working copy of status.canary (only inside decide)."""

    revision: str | None = None
    stable_revision: str | None = None
    phase: str | None = None
    attempt: int = 1
    step: int = 0
    weight: int = 0  # applied
    step_weight: int = 0  # the weight the steps ask for now (last setWeight reached)
    canary_replicas: int = 0
    stable_replicas: int = 0
    started_at: datetime | None = None
    step_started_at: datetime | None = None
    weight_set_at: datetime | None = None
    analysis_started_at: datetime | None = None
    waiting_since: datetime | None = None
    metrics_unavailable_since: datetime | None = None
    failed_analyses: int = 0
    message: str = ""
    last_analysis: dict[str, Any] | None = None
    last_command: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, stored: Mapping[str, Any] | None) -> "_State":
        s = stored or {}
        rep = s.get("replicas") or {}
        return cls(
            revision=s.get("revision"), stable_revision=s.get("stableRevision"), phase=s.get("phase"),
            attempt=int(s.get("attempt") or 1), step=int(s.get("step") or 0), weight=int(s.get("weight") or 0),
            step_weight=int(s.get("stepWeight") or 0), canary_replicas=int(rep.get("canary") or 0),
            stable_replicas=int(rep.get("stable") or 0), started_at=_time(s.get("startedAt")),
            step_started_at=_time(s.get("stepStartedAt")), weight_set_at=_time(s.get("weightSetAt")),
            analysis_started_at=_time(s.get("analysisStartedAt")), waiting_since=_time(s.get("waitingForPodsSince")),
            metrics_unavailable_since=_time(s.get("metricsUnavailableSince")),
            failed_analyses=int(s.get("failedAnalyses") or 0), message=s.get("message") or "",
            last_analysis=dict(s["lastAnalysis"]) if s.get("lastAnalysis") else None,
            last_command=dict(s["lastCommand"]) if s.get("lastCommand") else None,
            history=[dict(h) for h in s.get("history") or ()],
        )

    def dump(self, steps: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "revision": self.revision, "stableRevision": self.stable_revision, "phase": self.phase,
            "attempt": self.attempt, "step": self.step, "steps": steps, "weight": self.weight,
            "stepWeight": self.step_weight,
            "replicas": {"canary": self.canary_replicas, "stable": self.stable_replicas},
            "failedAnalyses": self.failed_analyses, "message": self.message,
        }
        for key, value in (("startedAt", self.started_at), ("stepStartedAt", self.step_started_at),
                           ("weightSetAt", self.weight_set_at), ("analysisStartedAt", self.analysis_started_at),
                           ("waitingForPodsSince", self.waiting_since),
                           ("metricsUnavailableSince", self.metrics_unavailable_since)):
            if value is not None:
                out[key] = format_time(value)
        if self.last_analysis:
            out["lastAnalysis"] = self.last_analysis
        if self.last_command:
            out["lastCommand"] = self.last_command
        out["history"] = self.history[:HISTORY_LIMIT]
        return {k: v for k, v in out.items() if v is not None}

    def record(self, outcome: str, now: datetime, message: str = "") -> None:
        """Set the outcome of this rollout's history entry (the newest for this revision and attempt)."""
        for entry in self.history:
            if entry.get("revision") == self.revision and entry.get("attempt", 1) == self.attempt:
                if entry.get("outcome") in FINAL_OUTCOMES:
                    return  # a rollout ends once
                entry["outcome"] = outcome
                if outcome in FINAL_OUTCOMES:
                    entry["finishedAt"] = format_time(now)
                if message:
                    entry["message"] = message
                return


def _as_time(now: datetime) -> datetime:
    """``now`` truncated to whole seconds, as status stores it (so restarts compare equal)."""
    return now.replace(microsecond=0)


# --- the machine -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisDue:
    """Arguments for this round's ``measure`` (``started_at``) and ``judge`` (``started_at``, ``previous``)."""

    started_at: datetime
    previous: Mapping[str, Any] | None  # status.canary.lastAnalysis: the look count and the sequential evidence


def analysis_due(spec: cs.CanarySpec, stored: Mapping[str, Any] | None, now: datetime) -> AnalysisDue | None:
    """Whether to judge this round: once traffic reached the canary (``analysisStartedAt`` set), while
    the rollout is active, at least one interval after the last verdict. Else None.
    """
    if spec.analysis is None:
        return None
    st = _State.load(stored)
    if st.phase not in ACTIVE or st.analysis_started_at is None:
        return None
    last = _time((st.last_analysis or {}).get("time"))
    if last is not None and (now - last).total_seconds() < spec.analysis.interval_seconds:
        return None
    return AnalysisDue(st.analysis_started_at, st.last_analysis)


def decide(spec: cs.CanarySpec, stored: Mapping[str, Any] | None, target: Target, observed: Observed,
           verdict: an.Verdict | None, command: cmd.Command | cmd.InvalidCommand | None, now: datetime,
           total_replicas: int) -> Decision:
    """What to do for this rollout now (see the module docstring)."""
    now = _as_time(now)
    st = _State.load(stored)
    events: list[Event] = []
    routed = spec.traffic_routing is not None
    header = routed and spec.traffic_routing.header_match is not None
    n_steps = len(spec.steps)

    # 0. No canary needed: first rollout, or the spec asks for what stable serves.
    if target.stable_revision is None or target.canary_revision == target.stable_revision:
        return _settled(spec, st, target, events, command, now, total_replicas)

    # 1. A new revision: start a rollout (superseding one that was running).
    if st.revision != target.canary_revision:
        if st.phase in ACTIVE + (PROMOTING, ROLLING_BACK):
            st.record("Superseded", now, f"replaced by revision {target.canary_revision}")
            events.append(Event("Normal", "RolloutSuperseded",
                                f"canary {st.revision} replaced by {target.canary_revision} before it finished"))
        st = _start(st, target, now, attempt=1)
        events.append(Event("Normal", "RolloutStarted", f"canary {target.canary_revision} next to stable "
                            f"{target.stable_revision}" + (f" ({target.change})" if target.change else "")
                            + f": {n_steps} steps"))
    st.stable_revision = target.stable_revision

    # 2. A manual command.
    clear = False
    if command is not None:
        clear = True
        if isinstance(command, cmd.InvalidCommand):
            events.append(Event("Warning", "InvalidCommand", command.message))
        elif not cmd.already_handled(command, {"lastCommand": st.last_command}):
            st, result = _apply_command(spec, st, target, command, now, events)
            st.last_command = {"id": command.id, "command": command.verb + (" --full" if command.full else ""),
                               "result": result[0], "message": result[1], "time": format_time(now)}
            events.append(Event("Normal" if result[0] == "Applied" else "Warning", f"Command{result[0]}",
                                f"{command.verb}: {result[1]}"))

    # 3. Phases that no longer step.
    if st.phase in (ROLLING_BACK, ABORTED):
        return _rolled_back(spec, st, observed, events, now, total_replicas, n_steps, clear)
    if st.phase in (PROMOTING, PROMOTED):  # Promoted here: the reconciler has not reported the new stable yet
        return _promoting(spec, st, observed, events, now, total_replicas, n_steps, clear, routed)
    st.step = min(st.step, n_steps - 1)  # the steps were shortened mid-rollout: re-judge the last one

    # 4. Pods for the current step, the progress deadline, traffic.
    want = _step_weight(spec, st)
    canary_n, stable_n = split_replicas(total_replicas, want, routed, header)
    ready = observed.canary_ready >= canary_n
    if not ready:
        if st.waiting_since is None:
            st.waiting_since = now
        waited = (now - st.waiting_since).total_seconds()
        if waited >= spec.progress_deadline_seconds:
            why = (f"canary pods not Ready after {spec.progress_deadline_seconds}s "
                   f"({observed.canary_ready}/{canary_n} Ready"
                   + (f"; {observed.canary_problem}" if observed.canary_problem else "") + ")")
            _roll_back(st, REASON_PROGRESS_DEADLINE, why, now, events)
            return _rolled_back(spec, st, observed, events, now, total_replicas, n_steps, clear)
        if not routed:  # keep serving capacity until the replacements are Ready
            stable_n = max(stable_n, st.stable_replicas or total_replicas)
    else:
        st.waiting_since = None
        if st.weight != want:
            events.append(Event("Normal", "WeightSet", f"canary {st.revision}: weight {st.weight}% -> {want}% "
                                f"(step {st.step + 1}/{n_steps}; {canary_n} canary, {stable_n} stable pods)"))
            st.weight = want
            st.weight_set_at = now
        if st.analysis_started_at is None and spec.analysis is not None and (st.weight > 0 or header):
            st.analysis_started_at = now
    st.canary_replicas, st.stable_replicas = canary_n, stable_n

    # 5. The verdict.
    if verdict is not None and spec.analysis is not None:
        rolled = _take_verdict(spec, st, verdict, now, events)
        if rolled:
            return _rolled_back(spec, st, observed, events, now, total_replicas, n_steps, clear)

    # 6. Steps that are complete.
    if ready and st.metrics_unavailable_since is None:
        while _step_complete(spec, st, now, header):
            st.step += 1
            st.step_started_at = now
            if st.step >= n_steps:
                st.phase = PROMOTING
                st.message = f"all {n_steps} steps passed: promoting {st.revision}"
                events.append(Event("Normal", "Promoting", st.message))
                return _promoting(spec, st, observed, events, now, total_replicas, n_steps, clear, routed)
            events.append(Event("Normal", "StepStarted", f"canary {st.revision}: step {st.step + 1}/{n_steps} "
                                f"({_describe(spec.steps[st.step])})"))
            want = _step_weight(spec, st)
            canary_n, stable_n = split_replicas(total_replicas, want, routed, header)
            if observed.canary_ready < canary_n:
                st.waiting_since = now
                if not routed:
                    stable_n = max(stable_n, st.stable_replicas)
                st.canary_replicas, st.stable_replicas = canary_n, stable_n
                break
            if st.weight != want:
                events.append(Event("Normal", "WeightSet", f"canary {st.revision}: weight {st.weight}% -> "
                                    f"{want}% (step {st.step + 1}/{n_steps})"))
                st.weight, st.weight_set_at = want, now
            st.canary_replicas, st.stable_replicas = canary_n, stable_n

    # 7. Phase, message, timers.
    step = spec.steps[st.step]
    if st.metrics_unavailable_since is not None:
        st.phase = HOLDING
    elif isinstance(step, cs.Pause):
        st.phase = PAUSED
    else:
        st.phase = PROGRESSING
    st.message = _progress_message(spec, st, observed, canary_n, now)
    return Decision(
        phase=st.phase, weight=st.weight, canary_replicas=st.canary_replicas, stable_replicas=st.stable_replicas,
        header_routing=header and observed.canary_ready > 0, status=st.dump(n_steps), events=tuple(events),
        conditions=_conditions(spec, st), requeue_after=_requeue(spec, st, now, ready), clear_command=clear)


def _start(old: _State, target: Target, now: datetime, attempt: int) -> _State:
    st = _State(revision=target.canary_revision, stable_revision=target.stable_revision, phase=PROGRESSING,
                attempt=attempt, step=0, weight=0, step_weight=0, started_at=now, step_started_at=now,
                last_command=old.last_command, history=old.history)
    entry: dict[str, Any] = {"revision": target.canary_revision, "attempt": attempt,
                             "stableRevision": target.stable_revision, "startedAt": format_time(now),
                             "outcome": PROGRESSING}
    if target.change:
        entry["change"] = target.change
    if target.spec_snapshot:
        entry["spec"] = {k: v for k, v in target.spec_snapshot.items() if k in cmd.SNAPSHOT_FIELDS}
    st.history = [entry] + [h for h in st.history][:HISTORY_LIMIT - 1]
    return st


def _step_weight(spec: cs.CanarySpec, st: _State) -> int:
    """The weight the current step asks for: its own (setWeight) or the last one before it (pause)."""
    for step in reversed(spec.steps[:st.step + 1]):
        if isinstance(step, cs.SetWeight):
            st.step_weight = step.weight
            return step.weight
    st.step_weight = 0
    return 0


def _passed_since(st: _State, since: datetime | None) -> bool:
    last = st.last_analysis or {}
    at = _time(last.get("time"))
    return last.get("result") == an.Outcome.PASS.value and at is not None and (since is None or at >= since)


def _step_complete(spec: cs.CanarySpec, st: _State, now: datetime, header: bool) -> bool:
    if st.step >= len(spec.steps):
        return False
    step = spec.steps[st.step]
    judged = spec.analysis is not None and (st.weight > 0 or header)
    if isinstance(step, cs.SetWeight):
        if st.weight != step.weight:
            return False
        if not judged:
            return True
        since = (st.weight_set_at or st.step_started_at or now) + timedelta(seconds=spec.analysis.interval_seconds)
        return _passed_since(st, since)
    if step.indefinite:
        return False
    if (now - (st.step_started_at or now)).total_seconds() < step.seconds:
        return False
    return not judged or _passed_since(st, st.step_started_at)


def _take_verdict(spec: cs.CanarySpec, st: _State, verdict: an.Verdict, now: datetime,
                  events: list[Event]) -> bool:
    """Record the verdict; True when it rolled the canary back."""
    assert spec.analysis is not None
    st.last_analysis = verdict.as_status()
    if verdict.outcome is an.Outcome.NO_DATA:
        if st.metrics_unavailable_since is None:
            st.metrics_unavailable_since = now
            events.append(Event("Warning", REASON_METRICS_UNAVAILABLE, f"canary {st.revision}: {verdict.message}"))
        limit = spec.analysis.metrics_outage_limit_seconds
        if limit is not None and (now - st.metrics_unavailable_since).total_seconds() >= limit:
            _roll_back(st, REASON_METRICS_UNAVAILABLE, f"metrics unavailable for {limit:g}s "
                       f"(metricsOutageLimit): {verdict.message}", now, events)
            return True
        return False
    if st.metrics_unavailable_since is not None:
        down = (now - st.metrics_unavailable_since).total_seconds()
        events.append(Event("Normal", "MetricsAvailable", f"canary {st.revision}: metrics back after {down:.0f}s"))
        st.metrics_unavailable_since = None
    if verdict.outcome is an.Outcome.FAIL:
        st.failed_analyses += 1
        if st.failed_analyses > spec.analysis.failure_limit:
            _roll_back(st, REASON_ANALYSIS_FAILED, verdict.message, now, events)
            return True
        events.append(Event("Warning", REASON_ANALYSIS_FAILED, f"canary {st.revision}: {verdict.message} "
                            f"({st.failed_analyses}/{spec.analysis.failure_limit} failures allowed)"))
    return False


def _roll_back(st: _State, reason: str, message: str, now: datetime, events: list[Event]) -> None:
    st.phase = ROLLING_BACK
    st.message = f"{reason}: {message}"
    st.weight = 0
    st.weight_set_at = now
    st.waiting_since = None
    st.metrics_unavailable_since = None if reason != REASON_METRICS_UNAVAILABLE else st.metrics_unavailable_since
    st.record("RolledBack" if reason != REASON_ABORTED_BY_USER else ABORTED, now, st.message)
    events.append(Event("Warning", "RollingBack", f"canary {st.revision}: all traffic back to stable "
                        f"{st.stable_revision}; {st.message}"))


def _apply_command(spec: cs.CanarySpec, st: _State, target: Target, command: cmd.Command, now: datetime,
                   events: list[Event]) -> tuple[_State, tuple[str, str]]:
    if command.revision and command.revision != target.canary_revision:
        return st, ("Ignored", f"it names revision {command.revision}, the canary is {target.canary_revision}")
    if command.verb == "abort":
        if st.phase in (ROLLING_BACK, ABORTED):
            return st, ("Ignored", f"canary {st.revision} is already {st.phase}")
        _roll_back(st, REASON_ABORTED_BY_USER, f"aborted by {command.requested_by or 'a user'}", now, events)
        return st, ("Applied", f"canary {st.revision} aborted: all traffic back to stable")
    if command.verb == "retry":
        if st.phase not in (ROLLING_BACK, ABORTED):
            return st, ("Ignored", f"canary {st.revision} is {st.phase}, not aborted: nothing to retry")
        new = _start(st, target, now, attempt=st.attempt + 1)
        events.append(Event("Normal", "RolloutStarted", f"canary {target.canary_revision}: attempt {new.attempt}"))
        return new, ("Applied", f"canary {st.revision} restarted at step 1 (attempt {new.attempt})")
    # promote
    if st.phase in (ROLLING_BACK, ABORTED):
        return st, ("Ignored", f"canary {st.revision} is {st.phase}; retry it first")
    if st.phase == PROMOTING:
        return st, ("Ignored", f"canary {st.revision} is already being promoted")
    if command.full:
        st.phase = PROMOTING
        st.message = f"promoted by hand (--full): skipping steps {st.step + 1}-{len(spec.steps)} and analysis"
        return st, ("Applied", st.message)
    done = st.step
    st.step += 1
    st.step_started_at = now
    st.metrics_unavailable_since = None
    if st.step >= len(spec.steps):
        st.phase = PROMOTING
        st.message = f"last step promoted by hand: promoting {st.revision}"
        return st, ("Applied", st.message)
    return st, ("Applied", f"step {done + 1}/{len(spec.steps)} ({_describe(spec.steps[done])}) completed by hand; "
                           f"now step {st.step + 1} ({_describe(spec.steps[st.step])})")


def _rolled_back(spec: cs.CanarySpec, st: _State, observed: Observed, events: list[Event], now: datetime,
                 total: int, n_steps: int, clear: bool) -> Decision:
    if st.phase == ROLLING_BACK and observed.canary_pods == 0:
        st.phase = ABORTED
        events.append(Event("Normal", "RolledBack", f"canary {st.revision} scaled down; stable "
                            f"{st.stable_revision} serves all traffic"))
    st.weight, st.canary_replicas, st.stable_replicas = 0, 0, total
    return Decision(
        phase=st.phase, weight=0, canary_replicas=0, stable_replicas=total, status=st.dump(n_steps),
        events=tuple(events), conditions=_conditions(spec, st),
        stalled=(_reason_of(st.message), f"canary {st.revision}: {st.message}; fix it and change the spec, "
                 "or `modeldeploy retry`") if st.phase == ABORTED else None,
        requeue_after=POD_POLL_SECONDS if st.phase == ROLLING_BACK else None, clear_command=clear)


def _promoting(spec: cs.CanarySpec, st: _State, observed: Observed, events: list[Event], now: datetime,
               total: int, n_steps: int, clear: bool, routed: bool) -> Decision:
    st.phase = PROMOTING
    st.weight = 100
    st.canary_replicas = total
    # Stable keeps its pods until the canary can take everything (router: it keeps them anyway).
    st.stable_replicas = total if routed or observed.canary_ready < total else 0
    return Decision(phase=PROMOTING, weight=100, canary_replicas=total, stable_replicas=st.stable_replicas,
                    promote=True, status=st.dump(n_steps), events=tuple(events), conditions=_conditions(spec, st),
                    requeue_after=POD_POLL_SECONDS, clear_command=clear)


def _settled(spec: cs.CanarySpec, st: _State, target: Target, events: list[Event],
             command: cmd.Command | cmd.InvalidCommand | None, now: datetime, total: int) -> Decision:
    """No canary: finish a promotion that the reconciler completed, or end a rollout the spec left."""
    clear = command is not None
    if isinstance(command, cmd.Command) and not cmd.already_handled(command, {"lastCommand": st.last_command}):
        st.last_command = {"id": command.id, "command": command.verb, "result": "Ignored",
                           "message": "no canary in progress", "time": format_time(now)}
        events.append(Event("Warning", "CommandIgnored", f"{command.verb}: no canary in progress"))
    if st.revision is not None and st.revision == target.canary_revision and st.phase == PROMOTING:
        st.phase = PROMOTED
        st.message = f"revision {st.revision} is stable"
        st.record(PROMOTED, now, st.message)
        events.append(Event("Normal", "Promoted", f"canary {st.revision} promoted: it serves all traffic"))
    elif st.phase in ACTIVE + (PROMOTING, ROLLING_BACK):
        st.record("Superseded", now, f"spec changed back to revision {target.canary_revision}")
        events.append(Event("Normal", "RolloutSuperseded", f"canary {st.revision} ended: the spec asks for "
                            f"{target.canary_revision} again"))
        st.phase = ABORTED
        st.message = f"spec changed back to revision {target.canary_revision}"
    if st.phase is None:
        return Decision(phase=None, weight=0, canary_replicas=0, stable_replicas=total, events=tuple(events),
                        clear_command=clear, status={} if st.last_command is None else
                        {"lastCommand": st.last_command, "history": st.history})
    st.weight, st.canary_replicas, st.stable_replicas = 0, 0, total
    st.stable_revision = target.stable_revision
    status = st.dump(len(spec.steps))
    return Decision(phase=None, weight=0, canary_replicas=0, stable_replicas=total, status=status,
                    events=tuple(events), clear_command=clear)


def _reason_of(message: str) -> str:
    return message.split(":", 1)[0] if ":" in message else REASON_ANALYSIS_FAILED


def _describe(step: cs.Step) -> str:
    if isinstance(step, cs.SetWeight):
        return f"setWeight {step.weight}%"
    return "pause until promoted" if step.indefinite else f"pause {step.seconds:g}s"


def _progress_message(spec: cs.CanarySpec, st: _State, observed: Observed, canary_n: int, now: datetime) -> str:
    step = spec.steps[st.step]
    where = f"step {st.step + 1}/{len(spec.steps)} ({_describe(step)}), weight {st.weight}%"
    if st.metrics_unavailable_since is not None:
        return f"{where}: holding, metrics unavailable since {format_time(st.metrics_unavailable_since)}"
    if st.waiting_since is not None:
        return (f"{where}: waiting for canary pods ({observed.canary_ready}/{canary_n} Ready"
                + (f"; {observed.canary_problem}" if observed.canary_problem else "") + ")")
    if isinstance(step, cs.Pause) and step.indefinite:
        return f"{where}: paused until promoted (modeldeploy promote)"
    last = st.last_analysis or {}
    if spec.analysis is not None and last:
        return f"{where}: last analysis {last.get('result')}: {last.get('message')}"
    return where


def _conditions(spec: cs.CanarySpec, st: _State) -> tuple[Condition, ...]:
    if spec.analysis is None:
        return (Condition(COND_CANARY_ANALYSIS, None, "Skipped", "skipAnalysis: the canary is not judged"),)
    out = []
    if st.metrics_unavailable_since is not None:
        out.append(Condition(COND_METRICS_AVAILABLE, False, REASON_METRICS_UNAVAILABLE,
                             f"since {format_time(st.metrics_unavailable_since)}: "
                             f"{(st.last_analysis or {}).get('message', '')}"))
    else:
        out.append(Condition(COND_METRICS_AVAILABLE, True, "MetricsAvailable", "Prometheus answers"))
    last = st.last_analysis or {}
    if st.phase in (ROLLING_BACK, ABORTED):
        out.append(Condition(COND_CANARY_ANALYSIS, False, _reason_of(st.message), st.message))
    elif last.get("result") == an.Outcome.PASS.value:
        out.append(Condition(COND_CANARY_ANALYSIS, True, "Passed", last.get("message", "")))
    elif last.get("result") == an.Outcome.FAIL.value:
        out.append(Condition(COND_CANARY_ANALYSIS, None, REASON_ANALYSIS_FAILED, last.get("message", "")))
    else:
        out.append(Condition(COND_CANARY_ANALYSIS, None, last.get("result") or "Pending",
                             last.get("message") or "no verdict yet"))
    return tuple(out)


def _requeue(spec: cs.CanarySpec, st: _State, now: datetime, ready: bool) -> float | None:
    times: list[float] = []
    if not ready:
        times.append(POD_POLL_SECONDS)
        if st.waiting_since is not None:
            times.append(spec.progress_deadline_seconds - (now - st.waiting_since).total_seconds())
    if spec.analysis is not None and st.analysis_started_at is not None:
        last = _time((st.last_analysis or {}).get("time"))
        due = 0.0 if last is None else spec.analysis.interval_seconds - (now - last).total_seconds()
        times.append(due)
        limit = spec.analysis.metrics_outage_limit_seconds
        if limit is not None and st.metrics_unavailable_since is not None:
            times.append(limit - (now - st.metrics_unavailable_since).total_seconds())
    step = spec.steps[st.step] if st.step < len(spec.steps) else None
    if isinstance(step, cs.Pause) and not step.indefinite and st.step_started_at is not None:
        times.append(step.seconds - (now - st.step_started_at).total_seconds())
    if not times:
        return None
    return max(1.0, min(times))
