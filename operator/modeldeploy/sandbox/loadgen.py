"""An open-loop load generator for the sandbox: requests at a rate you set, whatever the answers' speed.

Why open loop: an autoscaler is judged by what it does when the load is more than the replicas serve. A
closed-loop client (N threads, each sending when its last answer came) slows down with the server, so an
overloaded model would look like a model at capacity, and a 5× step would never be 5×. Here a request
is due every 1/rate seconds; a pool of keep-alive connections sends each one when it is due, so the
arrival rate is the one set as long as a connection is free (``lag`` says when none was: the rate was
then not met, and a test must not read its figures as if it had been).

Plain ``http.client``: cheap enough that a 2-core machine spends its time in Triton and the gateway, and
it sends to one address (the gateway) with a ``Host`` header, so the split over pods is the proxy's.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    due: float  # when the request was due (time.monotonic)
    started: float
    ended: float
    status: int | str  # HTTP status, or the exception's repr when no answer came


@dataclass
class OpenLoopLoad:
    """POST ``body`` to ``path`` at ``hostport`` (``host``: the Host header) ``rate`` times a second, evenly
    spaced, over up to ``connections`` concurrent keep-alive connections. ``set_rate`` changes the rate at
    once (a new schedule: the next request is due now)."""

    hostport: str
    path: str
    body: bytes
    rate: float
    host: str | None = None
    connections: int = 32
    timeout: float = 30.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._stop = False
        self._base, self._k = time.monotonic(), 0  # request k of this schedule is due at base + k / rate
        self._generation = 0  # bumped by set_rate: slots handed out before are dropped, not sent
        self._workers = [threading.Thread(target=self._run, daemon=True, name=f"load-{i}")
                         for i in range(self.connections)]

    # --- control ------------------------------------------------------------------------------------
    def start(self) -> "OpenLoopLoad":
        self._base, self._k = time.monotonic(), 0
        for worker in self._workers:
            worker.start()
        return self

    def set_rate(self, rate: float) -> float:
        """Change the rate; returns the monotonic time from which the new rate holds."""
        with self._lock:
            now = time.monotonic()
            self.rate = rate
            self._base, self._k = now, 0
            self._generation += 1
            self._lock.notify_all()
            return now

    def stop(self, timeout: float = 60.0) -> "OpenLoopLoad":
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        for worker in self._workers:
            worker.join(timeout)
        return self

    def __enter__(self) -> "OpenLoopLoad":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what happened ------------------------------------------------------------------------------
    def between(self, start: float, end: float = float("inf")) -> list[Outcome]:
        """Outcomes of the requests that were due in [start, end)."""
        with self._lock:
            return [o for o in self.outcomes if start <= o.due < end]

    def failures(self, since: float = 0.0) -> list[Outcome]:
        return [o for o in self.between(since) if o.status != 200]

    def lag(self, since: float = 0.0) -> float:
        """The longest a request waited for a free connection after it was due (seconds)."""
        return max((o.started - o.due for o in self.between(since)), default=0.0)

    def latencies_ms(self, since: float = 0.0, end: float = float("inf")) -> list[float]:
        """Client-side latencies of the successful requests due in [since, end), in ms, sorted."""
        return sorted((o.ended - o.started) * 1000.0 for o in self.between(since, end) if o.status == 200)

    # --- the workers --------------------------------------------------------------------------------
    def _take(self) -> float | None:
        """The due time of the next request (None: stop), waiting until it is due; a slot handed out before
        a rate change is given up for one of the new schedule."""
        with self._lock:
            while not self._stop:
                if self.rate <= 0:
                    self._lock.wait(0.5)
                    continue
                due, generation = self._base + self._k / self.rate, self._generation
                self._k += 1
                while not self._stop and generation == self._generation:
                    left = due - time.monotonic()
                    if left <= 0:
                        return due
                    self._lock.wait(left)
            return None

    def _run(self) -> None:
        host, port = self.hostport.rsplit(":", 1)
        headers = {"Content-Type": "application/json", **({"Host": self.host} if self.host else {})}
        conn = None
        while (due := self._take()) is not None:
            started = time.monotonic()
            try:
                conn = conn or http.client.HTTPConnection(host, int(port), timeout=self.timeout)
                conn.request("POST", self.path, body=self.body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status: int | str = resp.status
                if (resp.getheader("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                status = repr(exc)
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.outcomes.append(Outcome(due, started, time.monotonic(), status))
        if conn is not None:
            conn.close()  # Triton waits for open keep-alive connections when it stops


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (nearest rank; NaN when empty).

    >>> quantile([1.0, 2.0, 3.0, 4.0], 0.5), quantile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    import math

    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]
