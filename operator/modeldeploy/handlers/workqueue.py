"""A work queue of object keys, as client-go's ``workqueue`` gives controller-runtime operators.

Why not reconcile inside each Kopf event handler: one ModelDeployment receives events from itself, its
Deployment(s), its pods and Jobs — often a burst of them within milliseconds (a rollout produces a
Deployment event per replica). Reconciling once per event multiplies API requests; reconciling two
events of one object at once races on its status. A work queue fixes both, with three rules:

- a key waiting in the queue is queued once, however many events add it (bursts coalesce);
- a key being processed is never handed to a second worker; added meanwhile, it is queued again
  once the first worker calls :meth:`WorkQueue.done` (no event is lost);
- :meth:`WorkQueue.add` with ``after`` schedules a later look (requeue-after, retry backoff); the
  earliest requested time wins, and an immediate add overrides a pending delayed one;
- :meth:`WorkQueue.add` with ``low=True`` queues a look behind everything else: the start-up pass
  over objects that looked settled when listed. A new leader with 1,000 Ready ModelDeployments
  queues 1,000 such looks; a change made meanwhile (a new object, an edit, a child event) is an
  ordinary add and goes first, so it waits for the workers, not for the whole pass (an ordinary add
  of a key queued low moves it up).

All requeues and timers of the operator go through here: there is no other timer thread.
The clock is injected so tests drive time by hand.

Worked example: ``add(k)``, ``add(k)`` -> one ``get()`` returns k; while k is processed ``add(k)``
-> ``get()`` blocks until ``done(k)``, then returns k again.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: deque[K] = deque()  # FIFO of keys due now
        self._low: deque[K] = deque()  # FIFO of low-priority keys (stale entries skipped: see _low_keys)
        self._low_keys: set[K] = set()  # keys waiting in _low
        self._queued: set[K] = set()  # keys in _ready or _low
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing: queue again at done()
        self._due: dict[K, float] = {}  # key -> earliest scheduled time (delayed adds)
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._queued) + len(self._due)

    def add(self, key: K, after: float = 0.0, low: bool = False) -> None:
        """Queue ``key`` now (``after`` <= 0) or at ``now + after`` (the earliest request wins);
        ``low``: now, but behind every other key (a no-op for a key already queued or running)."""
        with self._cond:
            if self._closed:
                return
            if low:
                if key not in self._queued and key not in self._processing and key not in self._due:
                    self._queued.add(key)
                    self._low_keys.add(key)
                    self._low.append(key)
                    self._cond.notify()
                return
            if after > 0:
                when = self._clock() + after
                if key in self._queued or key in self._dirty:
                    return  # it runs now anyway, and will schedule its own next look
                if self._due.get(key, float("inf")) <= when:
                    return
                self._due[key] = when
                self._seq += 1
                heapq.heappush(self._heap, (when, self._seq, key))
                self._cond.notify()
                return
            self._due.pop(key, None)  # an immediate add supersedes a pending delayed one
            self._enqueue(key)

    def _enqueue(self, key: K) -> None:
        if key in self._low_keys:  # moves up: the stale entry in _low is skipped when reached
            self._low_keys.discard(key)
            self._queued.discard(key)
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def _promote_due(self) -> float | None:
        """Move delayed keys whose time has come to the ready list; seconds until the next one."""
        now = self._clock()
        while self._heap:
            when, _, key = self._heap[0]
            if self._due.get(key) != when:  # superseded by an earlier or immediate add
                heapq.heappop(self._heap)
                continue
            if when > now:
                return when - now
            heapq.heappop(self._heap)
            del self._due[key]
            self._enqueue(key)
        return None

    def get(self, timeout: float | None = None) -> K | None:
        """The next key to process (marked processing), or None at timeout or after :meth:`close`."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                wait = self._promote_due()
                key = self._next()
                if key is not None:
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                if self._closed:
                    return None
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def _next(self) -> K | None:
        if self._ready:
            return self._ready.popleft()
        while self._low:
            key = self._low.popleft()
            if key in self._low_keys:
                self._low_keys.discard(key)
                return key
        return None

    def done(self, key: K) -> None:
        """Processing of ``key`` finished; queue it again if it was added meanwhile."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._enqueue(key)

    def forget(self, key: K) -> None:
        """Drop any pending delayed look at ``key`` (the object is gone)."""
        with self._cond:
            self._due.pop(key, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def pending(self, key: K) -> bool:
        with self._cond:
            return key in self._queued or key in self._due or key in self._dirty
