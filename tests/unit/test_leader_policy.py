"""Leader election decisions (policy/leader.py): table-driven, times on an injected clock."""

import doctest

import pytest

from modeldeploy.policy import leader as p
from modeldeploy.policy.leader import ABSENT, Action, Lease, Seen, Timing, decide

T = Timing()  # 10 s lease, 7 s renew deadline, 2 s retry
B = Lease(holder="b", duration_seconds=10, renew_time="t1", resource_version="7")
B_RENEWED = Lease(holder="b", duration_seconds=10, renew_time="t2", resource_version="8")
FREE = Lease(holder="", duration_seconds=1, renew_time="t3", resource_version="9")
MINE = Lease(holder="a", duration_seconds=10, renew_time="t1", resource_version="7")
SEEN_B_AT_100 = Seen(B.version, 100.0)

# name: (lease read, leading, now, seen before, expected action, expected seen after)
CASES = {
    "no Lease, first look: create": (None, False, 100.0, None, Action.CREATE, None),
    "held by b, first look: wait, remember now": (B, False, 100.0, None, Action.WAIT, SEEN_B_AT_100),
    "held by b, unchanged 9.9 s: wait": (B, False, 109.9, SEEN_B_AT_100, Action.WAIT, SEEN_B_AT_100),
    "held by b, unchanged 10 s: acquire": (B, False, 110.0, SEEN_B_AT_100, Action.ACQUIRE, SEEN_B_AT_100),
    "b renewed: the count restarts": (B_RENEWED, False, 110.0, SEEN_B_AT_100, Action.WAIT,
                                      Seen(B_RENEWED.version, 110.0)),
    "b declares a 30 s lease: 10 s is not enough": (Lease(holder="b", duration_seconds=30, resource_version="7"),
                                                    False, 110.0, Seen(("7", "b", ""), 100.0), Action.WAIT,
                                                    Seen(("7", "b", ""), 100.0)),
    "b declares no duration: ours applies": (Lease(holder="b", resource_version="7"), False, 110.0,
                                             Seen(("7", "b", ""), 100.0), Action.ACQUIRE, Seen(("7", "b", ""), 100.0)),
    "released: acquire at once": (FREE, False, 100.0, SEEN_B_AT_100, Action.ACQUIRE, Seen(FREE.version, 100.0)),
    "held by me (a restart of this pod): renew": (MINE, False, 100.0, None, Action.RENEW, Seen(MINE.version, 100.0)),
    "held by me while leading: renew": (MINE, True, 100.0, None, Action.RENEW, Seen(MINE.version, 100.0)),
    "leading, now held by b: lost": (B, True, 100.0, None, Action.LOST, None),
    "leading, released by someone: lost": (FREE, True, 100.0, None, Action.LOST, None),
    "leading, Lease deleted: lost": (None, True, 100.0, None, Action.LOST, None),
    "deleted after b held it: wait a lease duration": (None, False, 100.0, SEEN_B_AT_100, Action.WAIT,
                                                       Seen(ABSENT, 100.0)),
    "deleted 9 s ago: still wait": (None, False, 109.0, Seen(ABSENT, 100.0), Action.WAIT, Seen(ABSENT, 100.0)),
    "deleted 10 s ago: create": (None, False, 110.0, Seen(ABSENT, 100.0), Action.CREATE, Seen(ABSENT, 100.0)),
}


@pytest.mark.parametrize("case", CASES)
def test_decide(case):
    lease, leading, now, seen, action, seen_after = CASES[case]
    decision = decide(lease, "a", leading, now, seen, T)
    assert decision.action is action, decision.reason
    assert decision.seen == seen_after
    assert decision.reason


def test_expiry_is_measured_on_the_candidates_clock_not_the_renew_time():
    # The holder's clock is an hour ahead (renewTime in the future): only the standby's observation counts.
    skewed = Lease(holder="b", duration_seconds=10, renew_time="2030-01-01T00:00:00.000000Z", resource_version="7")
    seen = decide(skewed, "a", False, 100.0, None, T).seen
    assert decide(skewed, "a", False, 105.0, seen, T).action is Action.WAIT
    assert decide(skewed, "a", False, 110.0, seen, T).action is Action.ACQUIRE


CLAIMS = {
    "create": (None, Action.CREATE, Lease(holder="a", duration_seconds=10, renew_time="now", acquire_time="now")),
    "take over from b: a transition": (Lease(holder="b", duration_seconds=10, acquire_time="t0", renew_time="t1",
                                             transitions=2, resource_version="7"), Action.ACQUIRE,
                                       Lease(holder="a", duration_seconds=10, renew_time="now", acquire_time="now",
                                             transitions=3, resource_version="7")),
    "renew keeps acquireTime and transitions": (Lease(holder="a", duration_seconds=10, acquire_time="t0",
                                                      renew_time="t1", transitions=3, resource_version="8"),
                                                Action.RENEW, Lease(holder="a", duration_seconds=10, renew_time="now",
                                                                    acquire_time="t0", transitions=3,
                                                                    resource_version="8")),
}


@pytest.mark.parametrize("case", CLAIMS)
def test_claimed(case):
    lease, action, want = CLAIMS[case]
    assert p.claimed(lease, "a", action, "now", T) == want


def test_nothing_to_write_for_wait_or_lost():
    for action in (Action.WAIT, Action.LOST):
        with pytest.raises(ValueError):
            p.claimed(B, "a", action, "now", T)


def test_released_lease_is_free_and_short():
    lease = p.released(MINE, "now")
    assert lease.holder == "" and lease.duration_seconds == 1 and lease.resource_version == MINE.resource_version
    assert decide(lease, "b", False, 0.0, None, T).action is Action.ACQUIRE


@pytest.mark.parametrize("lease_duration, renew_deadline, retry", [(10, 10, 2), (10, 7, 7), (10, 12, 2), (10, 7, 0)])
def test_inconsistent_timing_is_refused(lease_duration, renew_deadline, retry):
    with pytest.raises(ValueError, match="retry period"):
        Timing(lease_duration, renew_deadline, retry)


def test_safety_margin_and_takeover_bound_of_the_defaults():
    # The holder stops (renew deadline) before a standby may act (lease duration) ...
    assert T.lease_duration - T.renew_deadline >= 3
    # ... and a standby acts within 12 s of the holder's death, leaving 3 s of the 15 s goal.
    assert T.takeover_bound() == 12.0 and T.standby_period == 1.0


def test_renew_expired():
    assert not p.renew_expired(100.0, 106.99, T)
    assert p.renew_expired(100.0, 107.0, T)


def test_two_candidates_never_lead_together_in_a_simulated_run():
    """a and b share one Lease; a dies at t=20; at every tick at most one believes it may write, and b
    takes over within the takeover bound."""
    lease = None
    version = 0
    state = {"a": {"seen": None, "leading": False, "renewed": None}, "b": {"seen": None, "leading": False,
                                                                          "renewed": None}}
    took_over = None
    t = 0.0
    while t < 40:
        for me in ("a", "b"):
            s = state[me]
            if me == "a" and t >= 20:  # a is dead: it neither writes nor believes anything
                s["leading"] = False
                continue
            period = T.retry_period if s["leading"] else T.standby_period
            if round(t / period, 6) != int(round(t / period, 6)):
                continue
            d = decide(lease, me, s["leading"], t, s["seen"], T)
            s["seen"] = d.seen
            if d.action in (Action.CREATE, Action.ACQUIRE, Action.RENEW):
                version += 1
                lease = p.claimed(lease, me, d.action, f"w{t}", T)
                lease = Lease(**{**lease.__dict__, "resource_version": str(version)})
                s["leading"], s["renewed"] = True, t
                s["seen"] = Seen(lease.version, t)
                if me == "b" and took_over is None:
                    took_over = t
            elif d.action is Action.LOST:
                s["leading"] = False
        writers = [m for m in ("a", "b") if state[m]["leading"] and not p.renew_expired(state[m]["renewed"], t, T)]
        assert len(writers) <= 1, (t, writers)
        t = round(t + 0.5, 6)
    assert took_over is not None and 20 < took_over <= 20 + T.takeover_bound()


def test_docstring_examples():
    assert doctest.testmod(p).failed == 0
