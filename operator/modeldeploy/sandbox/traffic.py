"""Inference traffic for the sandbox's network tests, the canary benchmark and demo: plain HTTP/1.1 keep-alive
clients sending Triton's JSON inference requests (as fast as they go, or at a fixed rate), recording when each
request started and ended, its status, which model version answered, and the error an answer carried.

Raw ``http.client`` rather than tritonclient: the load generator must not split traffic itself (the gateway
does) and must be cheap enough that a 2-core machine spends its time in Triton and the proxy.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    status: int | str
    """HTTP status, or the exception's repr when no response came."""
    version: str | None = None
    error: str | None = None
    """The start of the error body of a non-200 answer (Triton's ``{"error": ...}``)."""


def infer_body(model: str = "digits") -> bytes:
    """One 1×1×8×8 image (FP32), as Triton's HTTP/JSON protocol takes it."""
    return json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                   "data": [0.5] * 64}],
                       "outputs": [{"name": "probs"}]}).encode()


@dataclass
class Traffic:
    """``threads`` clients sending to ``hostport`` (with ``host`` as the Host header) until stopped or until
    ``total`` requests were sent; ``outcomes`` in completion order."""

    hostport: str
    host: str | None = None
    model: str = "digits"
    threads: int = 2
    total: int | None = None
    rate: float | None = None
    """Requests started per second, all threads together (None: as fast as the threads go)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra request headers (e.g. a canary header match)."""
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent = 0
        self._began = time.monotonic()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        self._body = infer_body(self.model)

    def _take(self) -> bool:
        with self._lock:
            if self._stop.is_set() or (self.total is not None and self._sent >= self.total):
                return False
            self._sent += 1
            slot = None if self.rate is None else self._began + (self._sent - 1) / self.rate
        if slot is not None:  # an open-loop schedule: the n-th request starts at n / rate (or late, never early)
            self._stop.wait(max(0.0, slot - time.monotonic()))
        return not self._stop.is_set()

    def _run(self) -> None:
        host, port = self.hostport.rsplit(":", 1)
        headers = {"Content-Type": "application/json", **({"Host": self.host} if self.host else {}), **self.headers}
        conn = None
        while self._take():
            started = time.monotonic()
            try:
                conn = conn or http.client.HTTPConnection(host, int(port), timeout=30)
                conn.request("POST", f"/v2/models/{self.model}/infer", body=self._body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                version = json.loads(data).get("model_version") if resp.status == 200 else None
                error = None if resp.status == 200 else data[:300].decode(errors="replace")
                outcome = Outcome(started, time.monotonic(), resp.status, version, error)
                if (resp.getheader("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                outcome = Outcome(started, time.monotonic(), repr(exc))
                conn = None
            with self._lock:
                self.outcomes.append(outcome)
        if conn is not None:
            conn.close()  # Triton waits for open keep-alive connections when it stops

    def start(self) -> "Traffic":
        self._began = time.monotonic()
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> "Traffic":
        self._stop.set()
        return self.join()

    def join(self, timeout: float = 300) -> "Traffic":
        for worker in self._workers:
            worker.join(timeout)
        return self

    def __enter__(self) -> "Traffic":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    def versions(self, since: float = 0.0) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            if o.status == 200 and o.started >= since:
                counts[o.version or "?"] = counts.get(o.version or "?", 0) + 1
        return counts

    def wait_for(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.outcomes)} of {count} requests done in {timeout}s")
            time.sleep(0.05)
