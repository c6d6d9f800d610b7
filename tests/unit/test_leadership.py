"""The leader-election runner (leadership.py) against an in-memory Lease store with the API server's rules
(resourceVersion conflicts, create-once), on an injected clock. The real API server: the e2e test
tests/integration/test_leader_election.py."""

from __future__ import annotations

import threading
import urllib.request
from dataclasses import replace

import pytest

from modeldeploy import leadership as le
from modeldeploy.adapters.lease import LeaseConflict, LeaseError
from modeldeploy.policy.leader import Action, Lease, Timing


class FakeStore:
    """One Lease with resourceVersion optimistic concurrency, as the API server keeps it."""

    def __init__(self) -> None:
        self.lease: Lease | None = None
        self.rv = 0
        self.fail: Exception | None = None
        self.requests: list[str] = []

    def _check(self, op: str) -> None:
        self.requests.append(op)
        if self.fail is not None:
            raise self.fail

    def get(self) -> Lease | None:
        self._check("get")
        return self.lease

    def create(self, lease: Lease) -> Lease:
        self._check("create")
        if self.lease is not None:
            raise LeaseConflict("exists")
        return self._store(lease)

    def update(self, lease: Lease) -> Lease:
        self._check("update")
        if self.lease is None or lease.resource_version != self.lease.resource_version:
            raise LeaseConflict("conflict")
        return self._store(lease)

    def _store(self, lease: Lease) -> Lease:
        self.rv += 1
        self.lease = replace(lease, resource_version=str(self.rv))
        return self.lease


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def elector(store, name, clock) -> le.Elector:
    return le.Elector(store, name, Timing(), clock=clock, wall=lambda: f"wall{clock.t}")


def test_first_candidate_creates_and_leads_the_second_stands_by_until_expiry():
    store, clock = FakeStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.step()[0] is Action.CREATE and a.leading and a.last_renewed == 100.0
    assert b.step()[0] is Action.WAIT and not b.leading
    clock.t = 109.0
    assert b.step()[0] is Action.WAIT
    clock.t = 110.0  # a has not renewed for a lease duration (b saw it last at 100)
    action, why = b.step()
    assert action is Action.ACQUIRE and b.leading and "not renewed" in why
    assert store.lease.holder == "b" and store.lease.transitions == 1
    # a wakes up: its optimistic renewal conflicts, it reads, and learns that it lost.
    assert a.step()[0] is Action.LOST and not a.leading


def test_leader_renews_with_one_update_and_the_standby_count_restarts():
    store, clock = FakeStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    a.step()
    b.step()
    store.requests.clear()
    clock.t = 102.0
    assert a.step()[0] is Action.RENEW
    assert store.requests == ["update"]  # no read: the update carries the resourceVersion it wrote
    clock.t = 111.0  # 11 s after b's first look, but only 9 s after the renewal b sees now
    assert b.step()[0] is Action.WAIT
    clock.t = 120.9
    assert b.step()[0] is Action.WAIT
    clock.t = 121.0
    assert b.step()[0] is Action.ACQUIRE


def test_two_standbys_taking_over_at_once_one_wins():
    store, clock = FakeStore(), Clock()
    dead, b, c = elector(store, "dead", clock), elector(store, "b", clock), elector(store, "c", clock)
    dead.step()
    b.step(), c.step()
    clock.t = 110.0
    # Both read the expired Lease before either writes: the second update carries a stale resourceVersion.
    lease = store.get()
    b_decides = le.decide(lease, "b", False, clock.t, b.seen, b.timing)
    c_decides = le.decide(lease, "c", False, clock.t, c.seen, c.timing)
    assert b_decides.action is c_decides.action is Action.ACQUIRE
    assert b.step()[0] is Action.ACQUIRE
    store_get = store.get
    store.get = lambda: lease  # c acts on what it read before b's write
    assert c.step() == (Action.WAIT, "another candidate wrote the Lease first")
    store.get = store_get
    assert store.lease.holder == "b" and not c.leading


def test_release_lets_the_standby_take_over_at_its_next_look():
    store, clock = FakeStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    a.step()
    b.step()
    assert a.release() and not a.leading and store.lease.holder == ""
    clock.t = 101.0
    assert b.step()[0] is Action.ACQUIRE


def test_restart_with_the_same_identity_takes_its_lease_back_at_once():
    store, clock = FakeStore(), Clock()
    elector(store, "pod-0", clock).step()
    assert elector(store, "pod-0", clock).step()[0] is Action.RENEW


def test_deadline_passes_without_renewal_means_expired():
    store, clock = FakeStore(), Clock()
    a = elector(store, "a", clock)
    a.step()
    store.fail = LeaseError("apiserver down")
    clock.t = 102.0
    with pytest.raises(LeaseError):
        a.step()
    assert not a.expired()
    clock.t = 107.0
    assert a.expired()


def test_renewer_watchdog_calls_lost_when_renewals_fail():
    store = FakeStore()
    timing = Timing(lease_duration=0.5, renew_deadline=0.3, retry_period=0.1)
    a = le.Elector(store, "a", timing)
    a.step()
    store.fail = LeaseError("apiserver down")
    lost = threading.Event()
    reasons = []
    renewer = le.Renewer(a, lambda why: (reasons.append(why), lost.set()))
    renewer.start()
    try:
        assert lost.wait(5), "the watchdog never fired"
    finally:
        renewer.close()
    assert "renew deadline" in reasons[0]


def test_renewer_calls_lost_when_someone_else_holds_the_lease():
    store = FakeStore()
    timing = Timing(lease_duration=0.5, renew_deadline=0.3, retry_period=0.1)
    a = le.Elector(store, "a", timing)
    a.step()
    store.lease = replace(store.lease, holder="intruder", resource_version="999")
    lost = threading.Event()
    reasons = []
    renewer = le.Renewer(a, lambda why: (reasons.append(why), lost.set()))
    renewer.start()
    try:
        assert lost.wait(5)
    finally:
        renewer.close()
    assert "intruder" in reasons[0]


def test_run_elected_standby_serves_liveness_then_runs_the_operator_and_releases():
    store = FakeStore()
    store.lease = Lease(holder="other", duration_seconds=1, resource_version="1")
    store.rv = 1
    timing = Timing(lease_duration=1.0, renew_deadline=0.6, retry_period=0.2)
    a = le.Elector(store, "a", timing)
    seen = {}
    exits = []

    def operator() -> None:
        seen["holder during run"] = store.lease.holder
        with pytest.raises(OSError):  # the standby's endpoint is closed before Kopf would bind it
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)

    port = _free_port()
    result = {}

    def probe() -> None:
        while "code" not in result:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    result["standby health"] = (resp.status, resp.read())
                    return
            except OSError:
                threading.Event().wait(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    result["code"] = le.run_elected(operator, a, liveness=f"http://127.0.0.1:{port}/healthz", exit_fn=exits.append,
                                    on_lost=lambda why: pytest.fail(f"lost: {why}"))
    prober.join(5)
    assert result["standby health"] == (200, b"standby\n")
    assert seen["holder during run"] == "a"
    assert exits == [0] and store.lease.holder == ""  # released


def test_run_elected_exits_nonzero_when_the_operator_fails():
    store = FakeStore()
    exits = []

    def operator() -> None:
        raise RuntimeError("login failed")

    le.run_elected(operator, le.Elector(store, "a"), exit_fn=exits.append, on_lost=lambda why: None)
    assert exits == [1] and store.lease.holder == ""


def test_defaults_from_environment(tmp_path):
    assert le.default_identity({"MODELDEPLOY_IDENTITY": "modeldeploy-7d9f-x2"}) == "modeldeploy-7d9f-x2"
    one, two = le.default_identity({}), le.default_identity({})
    assert one != two  # unique per process
    sa = tmp_path / "namespace"
    assert le.default_namespace({}, sa) is None
    sa.write_text("modeldeploy-system\n")
    assert le.default_namespace({}, sa) == "modeldeploy-system"
    assert le.default_namespace({"MODELDEPLOY_LEASE_NAMESPACE": "ops"}, sa) == "ops"


def test_micro_time_format():
    from datetime import datetime, timezone

    assert le.micro_time(datetime(2026, 11, 30, 5, 6, 7, 89, tzinfo=timezone.utc)) == "2026-11-30T05:06:07.000089Z"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
