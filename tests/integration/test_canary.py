"""Canary rollouts end to end: real Triton pods, real Prometheus, load through the sandbox gateway.

Every ModelDeployment here serves a Triton python-backend model written by
``sandbox/examples.python_model_source`` (same requests as the digits model; ``model_version`` in each
answer says which revision answered): version 1 as stable, version 2 as the canary — healthy, failing a
share of its requests, or slower. Traffic comes from :class:`~.traffic.Traffic` at a fixed request rate into
the sandbox gateway (HAProxy driven by the operator's HTTPRoute, or by the Service's endpoints for the
replica-ratio case), and the test watches ``status.canary`` (a poller records every change with the time it
saw it). What the scenarios show:

- a healthy version promotes through every step, and the share of requests version 2 answered at the
  gateway follows each weight (tolerance in :func:`share_tolerance`);
- a canary failing >= 1 % of its requests, and one whose p99 is >= 1.5x stable's, are rolled back with no
  request failed by the rollback itself (the canary's own failures carry the model's message and are
  counted apart), and afterwards every request is answered by stable;
- Prometheus stopped mid-rollout holds the rollout (MetricsAvailable=False, no step, no promotion, no
  rollback); started again, the rollout goes on to its promotion;
- the operator killed with SIGKILL mid-rollout resumes at the same step, with the same timers;
- with a header match, requests carrying the header reach only the canary, the others only stable.

Timing: analysis every 2 s, steps of seconds: a scenario takes about a minute, most of it pods starting.
The assertions are about behaviour (what was decided and what the gateway did), never about speed.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from modeldeploy.sandbox.canary_watch import CanaryWatch
from modeldeploy.sandbox.examples import (INJECTED_FAILURE, canary_rollout, gateway_target, python_on_runner,
                                          wait_routed, write_python_model)
from modeldeploy.sandbox.outage import PrometheusOutage

from .conftest import wait_for
from .test_operator import condition, create_md, get_md, patch_md, wait_ready
from modeldeploy.sandbox.traffic import Outcome, Traffic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

MODEL = "canary"
RATE = 50.0
"""Requests/s sent through the gateway: 5 to the canary at 10 %, enough for its checks within seconds."""
SETTLE_S = 1.5
"""From a weight in status to HAProxy using it: the gateway controller's 0.5 s period, its runtime API call,
and this test's 0.25 s status polling, with margin."""


# --- helpers --------------------------------------------------------------------------------------------


def canary_of(md: dict) -> dict:
    return (md.get("status") or {}).get("canary") or {}


def wait_canary(api, namespace: str, name: str, predicate, timeout: float, what: str) -> dict:
    """The ModelDeployment once ``predicate(status.canary, md)`` holds; on timeout the failure shows the last
    status.canary seen (phase, step, weight, last analysis)."""
    seen: dict = {}

    def check():
        md = get_md(api, namespace, name)
        seen["canary"] = canary_of(md)
        return md if predicate(seen["canary"], md) else None
    try:
        return wait_for(check, timeout, interval=0.25, what=what)
    except AssertionError as err:
        raise AssertionError(f"{err}; last status.canary: {seen.get('canary')!r}") from None


def injected(outcome: Outcome) -> bool:
    """A request the bad canary failed on purpose (its own answer), not one the rollout broke."""
    return outcome.status != 200 and INJECTED_FAILURE in (outcome.error or "")


def other_failures(load: Traffic) -> list[Outcome]:
    return [o for o in load.outcomes if o.status != 200 and not injected(o)]


def share_tolerance(n: int) -> float:
    """How far the measured share of version 2 may be from the weight, over ``n`` requests.

    HAProxy's weighted round-robin is smooth and deterministic (the gateway test saw exactly 1,800/200 of
    2,000 at 90/10), so the share over a window of n requests is off by at most a couple of requests at each
    end of the window, plus requests routed by the previous weights while a change is being applied (the
    window starts SETTLE_S after the change was seen): 3 requests each end, and never below 2 points.
    """
    return max(0.02, 6.0 / n)


def shares_by_weight(load: Traffic, log: CanaryWatch, end: float) -> list[tuple[int, int, float]]:
    """(weight, requests, share answered by version 2) for every weight the rollout applied, over the requests
    started from SETTLE_S after the weight was seen to SETTLE_S before the next change (or ``end``)."""
    changes = log.weights() + [(end, -1)]
    out = []
    for (start, weight), (stop, _) in zip(changes, changes[1:]):
        window = [o for o in load.outcomes if o.status == 200 and start + SETTLE_S <= o.started < stop - SETTLE_S]
        if len(window) < 50:
            continue
        out.append((weight, len(window), sum(o.version == "2" for o in window) / len(window)))
    return out


def md_body(name: str, tmp_path: Path, rollout: dict, *, replicas: int = 1) -> dict:
    v1 = write_python_model(tmp_path / "v1", note="stable version 1")
    body = python_on_runner(name, v1, version=1, model_name=MODEL, replicas=replicas)
    body["spec"]["rollout"] = rollout
    return body


def new_version(api, namespace: str, name: str, tmp_path: Path, **model) -> dict:
    """Patch the spec to version 2 of the model (``model``: python_model_source's delay_ms / fail_every)."""
    path = write_python_model(tmp_path / "v2", note=f"canary version 2 {model or 'healthy'}", **model)
    from modeldeploy.sandbox.examples import file_sha256

    return patch_md(api, namespace, name, {"spec": {"model": {"uri": f"file://{path}", "version": 2,
                                                              "sha256": file_sha256(path)}}})


def route_host(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.example"


def start_stable(api, namespace: str, name: str, body: dict, gateway_url: str, host: str) -> tuple[str, dict]:
    create_md(api, namespace, body)
    md = wait_ready(api, namespace, name, timeout=180)
    hostport, _ = gateway_target(gateway_url, "unused", namespace)
    wait_routed(hostport, MODEL, host, timeout=60)
    return hostport, md


STEPS = [{"setWeight": 10}, {"pause": {"duration": "6s"}}, {"setWeight": 50}, {"pause": {"duration": "6s"}}]


# --- scenarios ------------------------------------------------------------------------------------------


def test_a_healthy_version_is_promoted_through_every_step_and_the_gateway_follows_the_weights(
        api, operator, namespace, runner_node, gateway_url, tmp_path):
    name = "healthy"
    host = route_host(name, namespace)
    body = md_body(name, tmp_path, canary_rollout(STEPS, hostnames=(host,)))
    hostport, md = start_stable(api, namespace, name, body, gateway_url, host)
    stable = md["status"]["currentRevision"]

    with CanaryWatch(api, namespace, name) as log, Traffic(hostport, host=host, model=MODEL, threads=4,
                                                         rate=RATE) as load:
        load.wait_for(100)
        new_version(api, namespace, name, tmp_path)
        md = wait_canary(api, namespace, name, lambda cn, m: cn.get("phase") == "Promoted", 240,
                         "the canary Promoted")
        promoted = time.monotonic()
        canary = md["status"]["currentRevision"]
        wait_for(lambda: load.versions(since=time.monotonic() - 2).keys() == {"2"}, 30, interval=0.25,
                 what="only version 2 answering after the promotion")
        load.wait_for(len(load.outcomes) + 100)
    print("\n" + log.timeline())
    print(f"\nhealthy canary: phases {log.phases()}; weights {[w for _, w in log.weights()]}; "
          f"{len(load.outcomes)} requests, {len(load.failures)} failed")
    assert load.failures == [], load.failures[:5]
    assert canary != stable and md["status"]["canary"]["revision"] == canary
    assert log.phases()[-1] == "Promoted" and "RollingBack" not in log.phases()  # Promoting may last < 0.25 s
    # never held: the canary's pods not scraped yet at the first judgement is no metrics outage
    assert "Holding" not in log.phases()
    assert {s.conditions.get("MetricsAvailable", {}).get("status") for s in log.seen} <= {None, "True"}
    assert [w for _, w in log.weights()][:3] == [0, 10, 50]
    steps_seen = sorted({s.canary.get("step") for s in log.seen if s.canary.get("phase") in ("Progressing", "Paused")})
    assert steps_seen == [0, 1, 2, 3], steps_seen
    shares = shares_by_weight(load, log, promoted)
    print("gateway shares (weight, requests, share of version 2): "
          + ", ".join(f"({w}, {n}, {s:.3f})" for w, n, s in shares))
    for weight, n, share in shares:
        assert abs(share - weight / 100) <= share_tolerance(n), (weight, n, share)
    assert {w for w, _, _ in shares} >= {10, 50}
    last = md["status"]["canary"]["lastAnalysis"]
    assert last["result"] == "Pass" and last["canaryRequests"] >= 50, last
    assert md["status"]["canary"]["history"][0]["outcome"] == "Promoted"


def test_without_a_router_the_replica_split_carries_the_traffic(api, operator, namespace, runner_node, gateway_url,
                                                                 tmp_path):
    name = "ratio"
    body = md_body(name, tmp_path, canary_rollout([{"setWeight": 50}, {"pause": {"duration": "6s"}}], gateway=None),
                   replicas=2)
    hostport, host = gateway_target(gateway_url, name, namespace)  # the Service's host: endpoints, equal weight
    start_stable(api, namespace, name, body, gateway_url, host)

    with CanaryWatch(api, namespace, name) as log, Traffic(hostport, host=host, model=MODEL, threads=4,
                                                         rate=RATE) as load:
        load.wait_for(100)
        new_version(api, namespace, name, tmp_path)
        md = wait_canary(api, namespace, name, lambda cn, m: cn.get("phase") == "Promoted", 240,
                         "the canary Promoted")
        promoted = time.monotonic()
        wait_for(lambda: load.versions(since=time.monotonic() - 2).keys() == {"2"}, 30, interval=0.25,
                 what="only version 2 answering after the promotion")
    assert load.failures == [], load.failures[:5]
    replicas = [s.canary.get("replicas") for s in log.seen if s.canary.get("weight") == 50
                and s.canary.get("phase") in ("Progressing", "Paused")]
    assert replicas and replicas[-1] == {"canary": 1, "stable": 1}, replicas
    shares = shares_by_weight(load, log, promoted)
    print(f"\nreplica ratio: shares {shares}")
    fifty = [(n, s) for w, n, s in shares if w == 50]
    assert fifty and abs(fifty[0][1] - 0.5) <= share_tolerance(fifty[0][0]), shares
    assert md["status"]["canary"]["history"][0]["outcome"] == "Promoted"


@pytest.mark.parametrize("fault", ["errors", "latency"])
def test_a_bad_canary_is_rolled_back_and_stable_takes_all_traffic_without_a_failed_request(
        api, operator, namespace, runner_node, gateway_url, tmp_path, fault):
    name = f"bad-{fault}"
    host = route_host(name, namespace)
    steps = [{"setWeight": 10}, {"pause": {"duration": "2m"}}, {"setWeight": 50}]
    body = md_body(name, tmp_path, canary_rollout(steps, hostnames=(host,)))
    hostport, md = start_stable(api, namespace, name, body, gateway_url, host)
    stable = md["status"]["currentRevision"]
    # errors: one request in 25 fails (4 %); latency: +40 ms on a model that answers in a few ms, so its p99
    # is several times stable's (>= 1.5x).
    model = {"fail_every": 25} if fault == "errors" else {"delay_ms": 40}

    with CanaryWatch(api, namespace, name) as log, Traffic(hostport, host=host, model=MODEL, threads=4,
                                                         rate=RATE) as load:
        load.wait_for(100)
        new_version(api, namespace, name, tmp_path, **model)
        md = wait_canary(api, namespace, name, lambda cn, m: cn.get("phase") == "Aborted", 240,
                         "the canary rolled back (Aborted)")
        aborted = time.monotonic()
        # RollingBack lasts until the canary pods are terminating: often less than the poller's 0.25 s.
        # The poller runs beside the wait above: give it a moment to record what the wait saw.
        rolled = wait_for(lambda: log.first(lambda s: s.canary.get("phase") in ("RollingBack", "Aborted")), 10,
                          interval=0.1, what=f"the status poller to see the rollback ({log.phases()})")
        wait_for(lambda: len([o for o in load.outcomes if o.started >= rolled.at + SETTLE_S]) >= 200, 60,
                 what="200 requests after the rollback")
    canary_answers = [o for o in load.outcomes if o.version == "2" or injected(o)]
    first_canary = min(o.started for o in canary_answers)
    last_canary = max(o.started for o in canary_answers)
    print("\n" + log.timeline())
    print(f"\n{fault} canary: phases {log.phases()}; {len(load.outcomes)} requests, "
          f"{sum(injected(o) for o in load.outcomes)} failed by the canary model itself, "
          f"{len(other_failures(load))} other failures; first canary request to the last one sent to it "
          f"{last_canary - first_canary:.1f}s; rollback decided {rolled.at - first_canary:.1f}s after the "
          f"first; message: {md['status']['canary'].get('message')}")
    assert other_failures(load) == [], other_failures(load)[:5]
    assert "Promoting" not in log.phases()
    status = md["status"]
    assert status["currentRevision"] == stable and status["canary"]["weight"] == 0
    analysis = condition(md, "CanaryAnalysis")
    assert analysis.get("status") == "False", analysis
    check = "errorRate" if fault == "errors" else "latencyP99"
    assert check in status["canary"]["message"], status["canary"]["message"]
    assert status["canary"]["history"][0]["outcome"] == "RolledBack"
    # After the rollback reached the gateway, stable answers everything.
    after = [o for o in load.outcomes if o.started >= rolled.at + SETTLE_S]
    assert len(after) >= 200 and {o.version for o in after} == {"1"}, {o.version for o in after}
    assert last_canary <= rolled.at + SETTLE_S
    # Two pollers saw the rollback (this test's wait and the status poller): within one poll of each other.
    assert rolled.at <= aborted + 1.0, (rolled.at, aborted)


def test_prometheus_stopped_mid_rollout_holds_it_and_started_again_it_goes_on_to_promotion(
        api, operator, namespace, runner_node, gateway_url, tmp_path, sandbox):
    name = "outage"
    host = route_host(name, namespace)
    steps = [{"setWeight": 10}, {"pause": {"duration": "6s"}}, {"setWeight": 50}, {"pause": {"duration": "6s"}}]
    body = md_body(name, tmp_path, canary_rollout(steps, hostnames=(host,)))
    hostport, _ = start_stable(api, namespace, name, body, gateway_url, host)
    prometheus = PrometheusOutage(sandbox)

    with CanaryWatch(api, namespace, name) as log, Traffic(hostport, host=host, model=MODEL, threads=4,
                                                         rate=RATE) as load:
        load.wait_for(100)
        new_version(api, namespace, name, tmp_path)
        wait_canary(api, namespace, name, lambda cn, m: cn.get("weight") == 10 and cn.get("lastAnalysis"), 180,
                    "weight 10 and a first analysis")
        prometheus.stop()
        stopped = time.monotonic()
        try:
            md = wait_canary(api, namespace, name, lambda cn, m: cn.get("phase") == "Holding"
                             and condition(m, "MetricsAvailable").get("status") == "False", 30,
                             "Holding with MetricsAvailable=False")
            held = canary_of(md)
            # Hold for longer than the whole rest of the rollout would take: nothing moves.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                time.sleep(0.5)
            md = get_md(api, namespace, name)
            during = canary_of(md)
        finally:
            prometheus.start()
        restarted = time.monotonic()
        md = wait_canary(api, namespace, name, lambda cn, m: cn.get("phase") == "Promoted", 240,
                         "the canary Promoted after Prometheus came back")
    seen_during = [s for s in log.seen if stopped <= s.at <= restarted]
    print("\n" + log.timeline(since=stopped))
    print(f"\noutage: phases {log.phases()}; Holding reached {log.first(lambda s: s.canary.get('phase') == 'Holding').at - stopped:.1f}s "
          f"after the stop; {len(load.outcomes)} requests, {len(load.failures)} failed")
    assert held["step"] == during["step"] and held["weight"] == during["weight"] == 10
    assert during["phase"] == "Holding" and during["failedAnalyses"] == 0
    assert {s.canary.get("phase") for s in seen_during} <= {"Progressing", "Paused", "Holding"}
    assert {s.canary.get("weight") for s in seen_during} == {10}
    assert load.failures == [], load.failures[:5]
    back = log.first(lambda s: s.at > restarted and s.conditions.get("MetricsAvailable", {}).get("status") == "True")
    assert back is not None and back.canary.get("step") == held["step"], back   # it went on from where it held
    assert md["status"]["canary"]["history"][0]["outcome"] == "Promoted"
    events = [e for e in _events(api, namespace) if e.reason in ("MetricsUnavailable", "MetricsAvailable")]
    assert [e.reason for e in events][:2] == ["MetricsUnavailable", "MetricsAvailable"], [e.reason for e in events]


def _events(api, namespace: str) -> list:
    from kubernetes import client

    items = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return sorted(items, key=lambda e: (e.first_timestamp or e.event_time or e.metadata.creation_timestamp))


def test_the_operator_killed_mid_rollout_resumes_at_the_same_step(api, operator, namespace, runner_node,
                                                                  gateway_url, tmp_path):
    name = "resume"
    host = route_host(name, namespace)
    steps = [{"setWeight": 10}, {"pause": {"duration": "20s"}}, {"setWeight": 50}]
    body = md_body(name, tmp_path, canary_rollout(steps, hostnames=(host,)))
    hostport, _ = start_stable(api, namespace, name, body, gateway_url, host)

    with CanaryWatch(api, namespace, name) as log, Traffic(hostport, host=host, model=MODEL, threads=4,
                                                         rate=RATE) as load:
        load.wait_for(100)
        new_version(api, namespace, name, tmp_path)
        md = wait_canary(api, namespace, name, lambda cn, m: cn.get("step") == 1 and cn.get("phase") == "Paused",
                         180, "the pause step")
        before = canary_of(md)
        operator.stop(signal.SIGKILL)
        killed = time.monotonic()
        operator.start()
        md = wait_canary(api, namespace, name, lambda cn, m: cn.get("phase") == "Promoted", 240,
                         "the canary Promoted after the restart")
    after_kill = [s.canary for s in log.seen if s.at >= killed]
    resumed = after_kill[0] if after_kill else None
    print(f"\nresume: phases {log.phases()}; before the kill step {before['step']} started {before['stepStartedAt']}; "
          f"first status after: {resumed and (resumed.get('step'), resumed.get('stepStartedAt'))}")
    assert resumed is not None
    assert resumed["step"] == before["step"] == 1 and resumed["stepStartedAt"] == before["stepStartedAt"]
    assert resumed["startedAt"] == before["startedAt"] and resumed["revision"] == before["revision"]
    steps_after = [s.get("step") for s in after_kill if s.get("phase") in ("Progressing", "Paused")]
    assert steps_after == sorted(steps_after) and min(steps_after) == 1, steps_after
    assert load.failures == [], load.failures[:5]
    assert md["status"]["canary"]["history"][0]["outcome"] == "Promoted"


def test_requests_with_the_header_reach_only_the_canary(api, operator, namespace, runner_node, gateway_url, tmp_path):
    name = "ab"
    host = route_host(name, namespace)
    steps = [{"setWeight": 0}, {"pause": {}}]   # an A/B experiment: never promotes by itself
    body = md_body(name, tmp_path, canary_rollout(steps, hostnames=(host,), header=("x-canary", "1")))
    hostport, _ = start_stable(api, namespace, name, body, gateway_url, host)
    new_version(api, namespace, name, tmp_path)

    def header_routed():
        probe = Traffic(hostport, host=host, model=MODEL, threads=1, total=5, headers={"x-canary": "1"}).start().join()
        return probe.versions() == {"2": 5}
    wait_for(header_routed, 180, interval=1, what="requests with x-canary: 1 answered by version 2")
    with_header = Traffic(hostport, host=host, model=MODEL, threads=2, total=400, headers={"x-canary": "1"})
    without = Traffic(hostport, host=host, model=MODEL, threads=2, total=400)
    with_header.start(), without.start()
    with_header.join(), without.join()
    print(f"\nA/B: with the header {with_header.versions()}, without {without.versions()}")
    assert with_header.failures == [] and without.failures == []
    assert with_header.versions() == {"2": 400}
    assert without.versions() == {"1": 400}
    # Judged on the header's traffic, the experiment passes its first step and then waits to be promoted by hand.
    md = wait_canary(api, namespace, name, lambda cn, m: cn.get("phase") == "Paused", 60, "the A/B pause")
    canary = canary_of(md)
    assert canary["weight"] == 0 and canary["lastAnalysis"]["result"] == "Pass", canary
    assert md["status"]["currentRevision"] != canary["revision"]
