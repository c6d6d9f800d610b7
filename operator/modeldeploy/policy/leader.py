"""Leader election over a ``coordination.k8s.io`` Lease: may this process run the operator now? Pure.

Why: the chart runs two operator replicas so that a dead pod is not an outage of reconciliation, but
two operators writing the same objects at once fight (each re-applies what the other wrote, status
flaps, Events double). Exactly one replica — the holder of the Lease — runs the watches and writes;
the other waits. This module is the decision only (no I/O, no clock of its own), the same rules as
client-go's ``leaderelection`` package that every controller-runtime operator uses:

- **Expiry is judged on the candidate's own monotonic clock**, never on the ``renewTime`` written by
  the holder: a standby remembers *when it saw* the Lease last change (:class:`Seen`) and takes it
  over only when it has seen no change for the holder's ``leaseDurationSeconds``. Clock skew between
  nodes therefore does not matter, only clock rates.
- **The holder stops before anyone can take over.** The holder counts from the moment it *sent* its
  last successful renewal; when ``renew_deadline`` passes without another, it must stop writing at
  once (the runner exits the process). A standby can see that renewal no earlier than it was sent,
  so it takes over no earlier than ``lease_duration`` after it: the difference
  ``lease_duration - renew_deadline`` is the safety margin for the holder's exit and its in-flight
  requests.
- **Writes are conditional.** Every update carries the ``resourceVersion`` read (optimistic
  concurrency): of two standbys that decide to take over at once, the API server accepts one.

The trade-off is time: a standby takes over at most ``lease_duration + retry_period`` after the
holder's death (:meth:`Timing.takeover_bound`), since it has to watch the Lease stand still for a
whole lease duration. A released Lease (graceful shutdown) is taken at the standby's next look.

Worked examples (times in seconds on the candidate's monotonic clock; L = 10 s):

- no Lease exists -> ``create`` it (the API server refuses a second create: only one wins);
- Lease held by ``b``, first look at t=100 -> ``wait``, remember (its version, 100);
- same version still at t=109 -> ``wait``; at t=110 -> ``acquire`` (b has not renewed for 10 s);
- b renewed at t=105 (new resourceVersion) -> ``wait``, remember (new version, 105): the count restarts;
- Lease held by me (a restart of this pod, or my own renewal) -> ``renew``;
- I lead and the Lease names someone else, or is gone, or was released -> ``lost``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Mapping


@dataclass(frozen=True)
class Timing:
    """Lease timing, in seconds. The defaults and why:

    - ``lease_duration`` 10: what a standby waits after the last renewal it saw. With the standby's
      look every ``retry_period / 2`` = 1 s, a takeover comes at most 10 + 2 = 12 s after the
      holder's death, which leaves 3 s of the 15 s goal for Kopf to start and list the cache.
    - ``renew_deadline`` 7: the holder exits when it could not renew for 7 s. 3 attempts fit in it at
      the normal period (more after failures, which are retried every second), so one slow API
      response does not end the leadership; the 3 s left before a standby may act (10 - 7) cover the
      exit and requests already on the wire.
    - ``retry_period`` 2: the holder renews every 2 s (30 Lease updates a minute, whatever the
      number of ModelDeployments); a standby looks twice as often (1 s, reads only), which is what
      bounds the takeover above.

    These are client-go's ratios (kube-controller-manager uses 15/10/2) shortened for the 15 s goal.
    """

    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(f"leader election timing must satisfy 0 < retry period ({self.retry_period}) < renew "
                             f"deadline ({self.renew_deadline}) < lease duration ({self.lease_duration})")

    @property
    def standby_period(self) -> float:
        """How often a standby looks at the Lease."""
        return self.retry_period / 2

    @property
    def failed_renew_period(self) -> float:
        """How soon the holder retries a renewal that failed (still well inside the deadline)."""
        return min(1.0, self.retry_period / 2)

    def takeover_bound(self) -> float:
        """Worst case from the holder's death to a standby's acquire: the standby may have seen the last
        renewal up to one look late, waits a lease duration, and acts at its next look.

        >>> Timing().takeover_bound()
        12.0
        """
        return self.lease_duration + 2 * self.standby_period


@dataclass(frozen=True)
class Lease:
    """The Lease as read: its spec fields and ``resourceVersion``."""

    holder: str = ""  # spec.holderIdentity; "" when free (never held, or released)
    duration_seconds: float | None = None  # spec.leaseDurationSeconds, as the holder declared it
    renew_time: str | None = None
    acquire_time: str | None = None
    transitions: int = 0
    resource_version: str | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> "Lease":
        spec = obj.get("spec") or {}
        return cls(holder=spec.get("holderIdentity") or "", duration_seconds=spec.get("leaseDurationSeconds"),
                   renew_time=spec.get("renewTime"), acquire_time=spec.get("acquireTime"),
                   transitions=int(spec.get("leaseTransitions") or 0),
                   resource_version=(obj.get("metadata") or {}).get("resourceVersion"))

    @property
    def version(self) -> tuple[str, ...]:
        """What changes whenever anyone writes the Lease."""
        return (self.resource_version or "", self.holder, self.renew_time or "")

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"holderIdentity": self.holder, "leaseTransitions": self.transitions}
        if self.duration_seconds is not None:
            out["leaseDurationSeconds"] = int(self.duration_seconds)
        if self.renew_time is not None:
            out["renewTime"] = self.renew_time
        if self.acquire_time is not None:
            out["acquireTime"] = self.acquire_time
        return out


#: The version a candidate remembers for "there is no Lease".
ABSENT: tuple[str, ...] = ("<absent>",)


@dataclass(frozen=True)
class Seen:
    """What a candidate last saw of the Lease (its version) and when it first saw it that way."""

    version: tuple[str, ...]
    at: float


class Action(str, Enum):
    CREATE = "create"  # no Lease: create it holding it
    ACQUIRE = "acquire"  # free or expired: update it (with the resourceVersion read) to hold it
    RENEW = "renew"  # held by me: update renewTime
    WAIT = "wait"  # held by someone else, not expired: look again later
    LOST = "lost"  # I was leading and no longer am: stop writing now


@dataclass(frozen=True)
class Decision:
    action: Action
    seen: Seen | None  # remember this for the next call
    reason: str


def decide(lease: Lease | None, me: str, leading: bool, now: float, seen: Seen | None,
           timing: Timing = Timing()) -> Decision:
    """What the candidate ``me`` does after reading ``lease`` (None: there is none) at ``now``.

    >>> t = Timing()
    >>> b = Lease(holder="b", duration_seconds=10, resource_version="7")
    >>> d = decide(b, "a", False, 100.0, None, t); d.action.value, d.seen
    ('wait', Seen(version=('7', 'b', ''), at=100.0))
    >>> decide(b, "a", False, 109.9, d.seen, t).action.value
    'wait'
    >>> decide(b, "a", False, 110.0, d.seen, t).action.value
    'acquire'
    >>> decide(replace(b, resource_version="8"), "a", False, 110.0, d.seen, t).action.value
    'wait'
    >>> decide(b, "a", True, 110.0, None, t).action.value
    'lost'
    """
    if lease is None:
        if leading:
            return Decision(Action.LOST, None, "the Lease was deleted while this process held it")
        if seen is not None and seen.version != ABSENT:
            # It was held a moment ago: its holder may still be writing. Wait as for an expiry.
            return Decision(Action.WAIT, Seen(ABSENT, now), "the Lease was deleted; waiting a lease duration")
        if seen is not None and now - seen.at < timing.lease_duration:
            return Decision(Action.WAIT, seen, "the Lease was deleted; waiting a lease duration")
        return Decision(Action.CREATE, seen, "no Lease exists")
    if lease.holder == me:
        return Decision(Action.RENEW, Seen(lease.version, now), "held by this process")
    if leading:
        why = f"held by {lease.holder}" if lease.holder else "released by someone else"
        return Decision(Action.LOST, None, f"the Lease is now {why}")
    if not lease.holder:
        return Decision(Action.ACQUIRE, Seen(lease.version, now), "the Lease is free")
    if seen is None or seen.version != lease.version:
        return Decision(Action.WAIT, Seen(lease.version, now), f"held by {lease.holder}")
    duration = lease.duration_seconds if lease.duration_seconds else timing.lease_duration
    if now - seen.at >= duration:
        return Decision(Action.ACQUIRE, seen, f"{lease.holder} has not renewed for {now - seen.at:.1f}s "
                                              f"(lease duration {duration:g}s)")
    return Decision(Action.WAIT, seen, f"held by {lease.holder}")


def claimed(lease: Lease | None, me: str, action: Action, wall_now: str, timing: Timing = Timing()) -> Lease:
    """The Lease to write for ``action`` (create/acquire/renew), given the one read.

    A new holder sets ``acquireTime`` and counts a transition; a renewal keeps both.

    >>> old = Lease(holder="b", duration_seconds=10, acquire_time="t0", renew_time="t1", transitions=3,
    ...             resource_version="9")
    >>> claimed(old, "a", Action.ACQUIRE, "t5")
    Lease(holder='a', duration_seconds=10, renew_time='t5', acquire_time='t5', transitions=4, resource_version='9')
    >>> claimed(claimed(old, "a", Action.ACQUIRE, "t5"), "a", Action.RENEW, "t7").acquire_time
    't5'
    """
    if action not in (Action.CREATE, Action.ACQUIRE, Action.RENEW):
        raise ValueError(f"nothing to write for {action.value}")
    base = lease or Lease()
    new_holder = base.holder != me
    return replace(base, holder=me, duration_seconds=int(timing.lease_duration), renew_time=wall_now,
                   acquire_time=wall_now if new_holder or base.acquire_time is None else base.acquire_time,
                   transitions=base.transitions + 1 if new_holder and lease is not None else base.transitions)


def released(lease: Lease, wall_now: str) -> Lease:
    """The Lease a holder writes when it stops cleanly: free, so a standby takes it at its next look.

    >>> released(Lease(holder="a", duration_seconds=10, transitions=2, resource_version="5"), "t9")
    Lease(holder='', duration_seconds=1, renew_time='t9', acquire_time='t9', transitions=2, resource_version='5')
    """
    return replace(lease, holder="", duration_seconds=1, renew_time=wall_now, acquire_time=wall_now)


def renew_expired(last_renewed: float, now: float, timing: Timing = Timing()) -> bool:
    """True when the holder's last successful renewal (the time it was *sent*) is ``renew_deadline`` old.

    >>> renew_expired(100.0, 106.9), renew_expired(100.0, 107.0)
    (False, True)
    """
    return now - last_renewed >= timing.renew_deadline
