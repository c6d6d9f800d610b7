"""The canary step machine, driven round by round through its own stored status (JSON round-tripped)."""

import doctest
import json
from datetime import datetime, timedelta, timezone

import pytest

from modeldeploy.api import canary as cs
from modeldeploy.policy import analysis as an
from modeldeploy.policy import canary as cp
from modeldeploy.policy import commands as cmd

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
GW = {"parentRefs": [{"name": "gw"}]}


def canary_spec(steps, routing=GW, **extra):
    data = {"steps": steps, **extra}
    if routing is not None:
        data["trafficRouting"] = routing
    return cs.parse_canary(data)


def verdict(outcome, now, message=None, look=1):
    checks = ()
    if outcome is an.Outcome.FAIL:
        checks = (an.CheckResult("errorRate", an.Outcome.FAIL, message or "errorRate 1.3% (13/1000 failed; "
                                 "stable 0%, 0/9000) breaks <= 1.5x stable (p=1e-11 <= 0.0025)", 1.3, 0.0, 0.0,
                                 1e-11, 0.0025),)
    return an.Verdict(outcome, now, look, 0.0025, checks, 1000, 9000,
                      message or {an.Outcome.PASS: "1000 canary requests; all checks within limits",
                                  an.Outcome.FAIL: checks[0].message if checks else "",
                                  an.Outcome.NO_DATA: "metrics unavailable: Prometheus http://p: connection refused; "
                                                      "holding (no promotion, no rollback)",
                                  an.Outcome.INCONCLUSIVE: "40/100 canary requests so far"}[outcome])


class Sim:
    """One ModelDeployment's rollout: stored status in, decision out, time moving forward."""

    def __init__(self, spec, total=5, canary="c1", stable="s0"):
        self.spec, self.total, self.now = spec, total, T0
        self.target = cp.Target(canary, stable, change="model version 1 -> 2",
                                spec_snapshot={"model": {"uri": "s3://m/2", "format": "onnx"}, "replicas": 5})
        self.status = None
        self.decisions = []

    def run(self, after=0.0, ready=None, pods=None, verdict_=None, command=None, problem=None):
        self.now += timedelta(seconds=after)
        last = self.decisions[-1] if self.decisions else None
        want = last.canary_replicas if last else 0
        ready = want if ready is None else ready
        observed = cp.Observed(canary_ready=ready, canary_pods=ready if pods is None else pods, stable_ready=self.total,
                               canary_problem=problem)
        d = cp.decide(self.spec, self.status, self.target, observed, verdict_, command, self.now, self.total)
        self.status = json.loads(json.dumps(d.status))  # only what survives a status write carries over
        self.decisions.append(d)
        return d

    def due(self):
        return cp.analysis_due(self.spec, self.status, self.now)

    def judged(self, outcome, after, **kw):
        """Advance, and pass a verdict when analysis is due (as the reconciler would)."""
        self.now += timedelta(seconds=after)
        due = self.due()
        v = verdict(outcome, self.now, look=int((due.previous or {}).get("look") or 0) + 1) if due else None
        return self.run(verdict_=v, **kw)


def reasons(d):
    return [e.reason for e in d.events]


def test_healthy_promotion_through_all_steps_worked_example():
    sim = Sim(canary_spec([{"setWeight": 20}, {"pause": {"duration": "1m"}}]))
    d = sim.run(ready=0)  # t=0: rollout starts, canary pod coming up
    assert (d.phase, d.weight, d.canary_replicas, d.stable_replicas) == ("Progressing", 0, 1, 5)
    assert reasons(d) == ["RolloutStarted"] and "waiting for canary pods (0/1 Ready)" in d.status["message"]
    assert sim.due() is None  # no traffic, nothing to judge
    d = sim.run(after=30)  # t=30: pod Ready -> weight 20, analysis starts
    assert (d.weight, reasons(d)) == (20, ["WeightSet"]) and d.status["analysisStartedAt"] == "2026-12-01T12:00:30Z"
    d = sim.run(after=9)  # t=39: no verdict yet
    assert d.status["step"] == 0 and sim.due() is not None
    d = sim.judged(an.Outcome.PASS, 1)  # t=40: a Pass one interval after the weight was set -> pause
    assert (d.phase, d.status["step"], reasons(d)) == ("Paused", 1, ["StepStarted"])
    assert d.status["lastAnalysis"]["result"] == "Pass" and d.status["lastAnalysis"]["look"] == 1
    assert d.requeue_after == 10  # the next analysis comes before the pause's end
    for _ in range(5):
        d = sim.judged(an.Outcome.PASS, 10)  # t=50..90
    assert d.phase == "Paused"
    d = sim.judged(an.Outcome.PASS, 10)  # t=100: pause over, latest verdict Pass
    assert (d.phase, d.promote, d.weight, d.canary_replicas, d.stable_replicas) == ("Promoting", True, 100, 5, 5)
    assert reasons(d) == ["Promoting"]
    sim.target = cp.Target("c1", "c1")  # the reconciler made the canary stable
    d = sim.run(after=5)
    assert d.phase is None and d.status["phase"] == "Promoted" and reasons(d) == ["Promoted"]
    (entry,) = d.status["history"]
    assert entry == {"revision": "c1", "attempt": 1, "stableRevision": "s0", "startedAt": "2026-12-01T12:00:00Z",
                     "outcome": "Promoted", "finishedAt": "2026-12-01T12:01:45Z", "change": "model version 1 -> 2",
                     "message": "revision c1 is stable", "spec": {"model": {"uri": "s3://m/2", "format": "onnx"}}}


def test_failure_rolls_back_at_once_with_the_numbers():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}]))
    sim.run(ready=1)
    d = sim.judged(an.Outcome.FAIL, 10)
    assert (d.phase, d.weight, d.canary_replicas, d.stable_replicas, d.header_routing) == ("RollingBack", 0, 0, 5,
                                                                                           False)
    (event,) = [e for e in d.events if e.reason == "RollingBack"]
    assert event.type == "Warning" and "errorRate 1.3% (13/1000 failed" in event.message
    cond = {c.type: c for c in d.conditions}["CanaryAnalysis"]
    assert cond.status is False and cond.reason == "AnalysisFailed" and "p=1e-11" in cond.message
    assert d.status["history"][0]["outcome"] == "RolledBack"
    d = sim.run(after=5, ready=0, pods=0)  # canary pods gone
    assert d.phase == "Aborted" and reasons(d) == ["RolledBack"]
    assert d.stalled[0] == "AnalysisFailed" and "modeldeploy retry" in d.stalled[1]
    d = sim.run(after=60, ready=0, pods=0)  # stays aborted while the spec asks for the same revision
    assert (d.phase, d.weight, d.canary_replicas, d.events) == ("Aborted", 0, 0, ())


def test_failure_limit_tolerates_failed_analyses():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}], analysis={"failureLimit": 1}))
    sim.run(ready=1)
    d = sim.judged(an.Outcome.FAIL, 10)
    assert d.phase == "Progressing" and d.status["failedAnalyses"] == 1 and "AnalysisFailed" in reasons(d)
    d = sim.judged(an.Outcome.FAIL, 10)
    assert d.phase == "RollingBack"


def test_no_data_holds_then_continues():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {"duration": "30s"}}]))
    sim.run(ready=1)
    d = sim.judged(an.Outcome.NO_DATA, 10)
    assert d.phase == "Holding" and reasons(d) == ["MetricsUnavailable"]
    cond = {c.type: c for c in d.conditions}["MetricsAvailable"]
    assert cond.status is False and "connection refused" in cond.message
    for _ in range(60):  # ten minutes without metrics: never promoted, never rolled back
        d = sim.judged(an.Outcome.NO_DATA, 10)
        assert (d.phase, d.weight, d.promote, d.status["step"]) == ("Holding", 10, False, 0)
        assert d.events == ()  # one event when the hold began, not one per interval
    d = sim.judged(an.Outcome.PASS, 10)
    assert reasons(d) == ["MetricsAvailable", "StepStarted"] and d.phase == "Paused"
    assert {c.type: c.status for c in d.conditions}["MetricsAvailable"] is True


def test_metrics_outage_limit_aborts():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}], analysis={"metricsOutageLimit": "1m"}))
    sim.run(ready=1)
    sim.judged(an.Outcome.NO_DATA, 10)  # hold begins at t=10
    for _ in range(5):
        d = sim.judged(an.Outcome.NO_DATA, 10)
        assert d.phase == "Holding"
    d = sim.judged(an.Outcome.NO_DATA, 10)  # t=70: 60 s without metrics
    assert d.phase == "RollingBack" and "metricsOutageLimit" in d.status["message"]
    assert d.status["message"].startswith("MetricsUnavailable:")


def test_canary_pods_never_ready_abort_after_the_progress_deadline():
    sim = Sim(canary_spec([{"setWeight": 10}], progressDeadlineSeconds=120))
    d = sim.run(ready=0)
    assert d.requeue_after == 5
    d = sim.run(after=119, ready=0, problem="ModelFetchFailed: GET https://m/2: 404 Not Found")
    assert d.phase == "Progressing" and d.weight == 0 and "404 Not Found" in d.status["message"]
    d = sim.run(after=1, ready=0, pods=1, problem="ModelFetchFailed: GET https://m/2: 404 Not Found")
    assert d.phase == "RollingBack" and d.canary_replicas == 0
    assert "canary pods not Ready after 120s (0/1 Ready; ModelFetchFailed: GET https://m/2: 404 Not Found)" \
        in d.status["message"]
    assert d.status["message"].startswith("ProgressDeadlineExceeded:")


def test_operator_restart_resumes_at_the_same_step_from_stored_status_only():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {"duration": "5m"}}, {"setWeight": 50}]))
    sim.run(ready=1)
    sim.judged(an.Outcome.PASS, 10)
    d = sim.judged(an.Outcome.PASS, 10)
    assert d.phase == "Paused" and d.status["step"] == 1
    stored = sim.status
    # a new operator process: nothing but the stored status; the same instant gives the same decision
    again = cp.decide(sim.spec, stored, sim.target, cp.Observed(1, 1, 5), None, None, sim.now, 5)
    assert again.status == stored and again.events == () and again.weight == 10
    # and later it continues from where it was: the pause still ends 5 min after it began
    sim.status = stored
    d = sim.judged(an.Outcome.PASS, 4 * 60)
    assert (d.phase, d.status["step"]) == ("Paused", 1)
    d = sim.judged(an.Outcome.PASS, 60)
    assert (d.phase, d.status["step"], d.weight) == ("Progressing", 2, 10)  # 50% once its pods are Ready


def test_manual_promote_on_an_indefinite_pause_then_full():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "1h"}}]))
    sim.run(ready=1)
    sim.judged(an.Outcome.PASS, 10)
    d = sim.judged(an.Outcome.PASS, 10)
    assert d.phase == "Paused" and "paused until promoted" in d.status["message"]
    for _ in range(3):
        d = sim.judged(an.Outcome.PASS, 10)
        assert d.phase == "Paused" and d.status["step"] == 1
    d = sim.run(after=1, command=cmd.Command("promote", "id-1", revision="c1", requested_by="ana"))
    assert d.status["step"] == 2 and d.clear_command
    assert d.status["lastCommand"]["result"] == "Applied" and "step 2/4 (pause until promoted) completed by hand" \
        in d.status["lastCommand"]["message"]
    # the same command seen again (annotation not yet removed): not applied twice
    d = sim.run(after=1, ready=3, command=cmd.Command("promote", "id-1", revision="c1"))
    assert d.status["step"] == 2 and d.clear_command and "CommandApplied" not in reasons(d)
    assert d.weight == 50
    d = sim.run(after=1, command=cmd.Command("promote", "id-2", full=True))
    assert d.phase == "Promoting" and d.promote and "--full" in d.status["lastCommand"]["command"]


def test_abort_then_retry_starts_a_new_attempt():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}]))
    sim.run(ready=1)
    d = sim.run(after=5, command=cmd.Command("abort", "a-1", requested_by="bob"))
    assert d.phase == "RollingBack" and d.status["message"] == "AbortedByUser: aborted by bob"
    assert d.status["history"][0]["outcome"] == "Aborted"
    d = sim.run(after=5, ready=0, pods=0)
    assert d.phase == "Aborted" and d.stalled[0] == "AbortedByUser"
    d = sim.run(after=5, ready=0, pods=0, command=cmd.Command("promote", "p-1"))
    assert d.phase == "Aborted" and d.status["lastCommand"]["result"] == "Ignored" and "retry it first" in \
        d.status["lastCommand"]["message"]
    d = sim.run(after=5, ready=0, pods=0, command=cmd.Command("retry", "r-1"))
    assert d.phase == "Progressing" and d.status["attempt"] == 2 and d.status["step"] == 0
    assert d.canary_replicas == 1 and "lastAnalysis" not in d.status
    assert [(h["attempt"], h["outcome"]) for h in d.status["history"]] == [(2, "Progressing"), (1, "Aborted")]


def test_commands_for_another_revision_or_invalid_are_not_applied():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}]))
    sim.run(ready=1)
    d = sim.run(after=1, command=cmd.Command("abort", "x", revision="old"))
    assert d.phase == "Progressing" and d.status["lastCommand"]["result"] == "Ignored" and d.clear_command
    d = sim.run(after=1, command=cmd.InvalidCommand("modeldeploy.io/rollout-command: not a JSON object"))
    assert d.phase == "Progressing" and reasons(d) == ["InvalidCommand"] and d.clear_command


def test_without_a_router_replicas_follow_the_weight_and_stable_waits_for_the_canary():
    sim = Sim(canary_spec([{"setWeight": 25}, {"setWeight": 50}], routing=None), total=4)
    d = sim.run(ready=0)
    assert (d.canary_replicas, d.stable_replicas, d.weight) == (1, 4, 0)  # capacity kept until the canary is Ready
    d = sim.run(after=20, ready=1)
    assert (d.canary_replicas, d.stable_replicas, d.weight) == (1, 3, 25)
    d = sim.judged(an.Outcome.PASS, 10)  # step 2: 2 + 2, stable keeps 3 while the 2nd canary pod starts
    assert (d.status["step"], d.canary_replicas, d.stable_replicas, d.weight) == (1, 2, 3, 25)
    d = sim.run(after=10, ready=2)
    assert (d.canary_replicas, d.stable_replicas, d.weight) == (2, 2, 50)


def test_header_routing_judges_a_weight_zero_experiment():
    sim = Sim(canary_spec([{"setWeight": 0}, {"pause": {}}], routing={
        "parentRefs": [{"name": "gw"}], "headerMatch": {"name": "x-canary", "value": "1"}}))
    d = sim.run(ready=0)
    assert (d.canary_replicas, d.header_routing) == (1, False)
    d = sim.run(after=10, ready=1)
    assert (d.weight, d.header_routing) == (0, True) and d.status["analysisStartedAt"]
    sim.judged(an.Outcome.PASS, 10)
    d = sim.judged(an.Outcome.PASS, 10)
    assert d.phase == "Paused" and d.weight == 0  # the experiment never promotes by itself


def test_skip_analysis_moves_on_readiness_and_timers():
    sim = Sim(canary_spec([{"setWeight": 50}, {"pause": {"duration": "30s"}}], skipAnalysis=True))
    d = sim.run(ready=3)
    assert d.status["step"] == 1 and d.phase == "Paused" and "analysisStartedAt" not in d.status
    assert {c.type: c.reason for c in d.conditions} == {"CanaryAnalysis": "Skipped"}
    d = sim.run(after=30)
    assert d.phase == "Promoting"


def test_a_new_revision_supersedes_a_running_rollout():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}]))
    sim.run(ready=1)
    sim.target = cp.Target("c2", "s0", change="model version 2 -> 3")
    d = sim.run(after=5, ready=0)
    assert reasons(d) == ["RolloutSuperseded", "RolloutStarted"] and d.status["revision"] == "c2"
    assert [(h["revision"], h["outcome"]) for h in d.status["history"]] == [("c2", "Progressing"),
                                                                            ("c1", "Superseded")]


def test_spec_changed_back_to_stable_ends_the_rollout():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}]))
    sim.run(ready=1)
    sim.target = cp.Target("s0", "s0")
    d = sim.run(after=5)
    assert d.phase is None and d.canary_replicas == 0 and d.weight == 0 and reasons(d) == ["RolloutSuperseded"]
    assert d.status["history"][0]["outcome"] == "Superseded"


def test_steps_shortened_mid_rollout_rejudge_the_last_step_instead_of_promoting():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]))
    sim.run(ready=1)
    sim.run(after=1, ready=3, command=cmd.Command("promote", "p1"))
    d = sim.run(after=1, ready=3, command=cmd.Command("promote", "p2"))
    assert d.status["step"] == 2 and d.weight == 50
    sim.spec = canary_spec([{"setWeight": 10}, {"pause": {}}])
    d = sim.run(after=1)
    assert d.phase == "Paused" and d.status["step"] == 1 and not d.promote


def test_first_rollout_has_no_canary():
    d = cp.decide(canary_spec([{"setWeight": 10}]), None, cp.Target("c1", None), cp.Observed(), None, None, T0, 3)
    assert (d.phase, d.canary_replicas, d.stable_replicas, d.status) == (None, 0, 3, {})


def test_analysis_due_once_per_interval_after_traffic():
    sim = Sim(canary_spec([{"setWeight": 10}, {"pause": {}}]))
    sim.run(ready=0)
    assert sim.due() is None
    sim.run(after=3, ready=1)
    due = sim.due()
    assert due == cp.AnalysisDue(T0 + timedelta(seconds=3), None)
    sim.run(verdict_=verdict(an.Outcome.INCONCLUSIVE, sim.now, look=1))
    sim.now += timedelta(seconds=9)
    assert sim.due() is None
    sim.now += timedelta(seconds=1)
    due = sim.due()
    assert due.started_at == T0 + timedelta(seconds=3) and due.previous["look"] == 1


def test_history_is_bounded():
    spec = canary_spec([{"setWeight": 10}])
    status = None
    for k in range(15):
        target = cp.Target(f"c{k}", "s0")
        status = cp.decide(spec, status, target, cp.Observed(), None, None, T0 + timedelta(minutes=k), 3).status
    assert len(status["history"]) == cp.HISTORY_LIMIT and status["history"][0]["revision"] == "c14"


@pytest.mark.parametrize("total,weight,routed,expected", [
    (5, 10, True, (1, 5)), (10, 35, True, (4, 10)), (5, 100, True, (5, 5)), (5, 0, True, (0, 5)),
    (2, 10, False, (1, 2)), (3, 50, False, (2, 2)), (10, 35, False, (4, 7)), (10, 30, False, (3, 7)),
    (4, 99, False, (4, 1)), (0, 50, True, (0, 0)),
])
def test_split_replicas(total, weight, routed, expected):
    assert cp.split_replicas(total, weight, routed) == expected


def test_docstring_examples():
    assert doctest.testmod(cp).failed == 0
    assert doctest.testmod(cmd).failed == 0
