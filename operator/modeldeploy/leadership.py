"""Run the operator only while this process holds the leader-election Lease.

Why: the chart runs two replicas; only one may watch and write (see policy/leader.py for the rules
and the timing). This module is the loop around them, as client-go's ``leaderelection.RunOrDie``
is for controller-runtime operators:

1. **standby**: look at the Lease every second until it is free or expired, then take it. Nothing
   else runs: no Kopf, no watches, no cache — a standby costs one GET a second and its memory at
   rest. Its liveness endpoint answers (a standby is healthy), so the kubelet does not restart it.
2. **leader**: start renewing in the background (every 2 s), then run the operator (``kopf.run``)
   in the main thread.
3. **lost**: when a renewal finds someone else holding the Lease, or the renew deadline (7 s) passes
   without a successful renewal (API server unreachable, a partition), the process exits at once
   (``os._exit``, controller-runtime's default too): no cleanup handler, no final write. The pod is
   restarted and comes back as a standby. Exiting is the only way to be sure that no worker thread
   writes after the deadline; a watchdog thread enforces it even if a renewal request hangs.
4. **clean stop** (SIGTERM): Kopf stops, the Lease is released (holder cleared) so the standby takes
   over at its next look instead of waiting out the lease, and the process exits.

The trade-off: no fencing. An API request the old leader sent before its deadline may still be
processed after it; the 3 s between the renew deadline and the lease duration is the margin for
that, the same guarantee every client-go based operator gives.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from modeldeploy.adapters.lease import LeaseConflict, LeaseError, LeaseStore
from modeldeploy.policy.leader import Action, Lease, Seen, Timing, claimed, decide, released, renew_expired

log = logging.getLogger("modeldeploy.leadership")

DEFAULT_LEASE_NAME = "modeldeploy-operator"
LEASE_NAME_ENV = "MODELDEPLOY_LEASE_NAME"
LEASE_NAMESPACE_ENV = "MODELDEPLOY_LEASE_NAMESPACE"
IDENTITY_ENV = "MODELDEPLOY_IDENTITY"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: Exit status when leadership is lost (the pod restarts and comes back as a standby).
EXIT_LOST = 1


def default_identity(env: dict[str, str] | os._Environ = os.environ) -> str:
    """The pod name (the chart passes it through the downward API), else host name + a random suffix:
    unique per process, which the election requires (two processes with one identity would both lead)."""
    return env.get(IDENTITY_ENV) or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def default_namespace(env: dict[str, str] | os._Environ = os.environ,
                      sa_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str | None:
    """Where the Lease lives: env, else the pod's own namespace; None outside a cluster."""
    if env.get(LEASE_NAMESPACE_ENV):
        return env[LEASE_NAMESPACE_ENV]
    try:
        return sa_file.read_text().strip() or None
    except OSError:
        return None


def micro_time(now: datetime | None = None) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC), as Lease renewTime/acquireTime want."""
    return (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Elector:
    """One candidate's view of the Lease: decides (policy/leader.py) and writes (the store)."""

    store: LeaseStore
    identity: str
    timing: Timing = field(default_factory=Timing)
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], str] = micro_time
    seen: Seen | None = None
    lease: Lease | None = None  # the Lease as this process last wrote it (leader only)
    last_renewed: float | None = None  # clock() when the last successful write's read was sent
    holder: str | None = None  # the holder seen at the last look (for logging changes only)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def leading(self) -> bool:
        return self.lease is not None

    def step(self) -> tuple[Action, str]:
        """Read the Lease, decide, write if the decision says so. Returns (action taken, why).

        The leader first tries its renewal without reading (an update with the resourceVersion of
        its own last write, as client-go does): one request per renewal. A conflict means someone
        else wrote the Lease; then it reads and decides like everyone else.
        Raises LeaseError when the API server cannot be reached; the caller retries.
        """
        with self._lock:
            sent = self.clock()
            if self.lease is not None:
                try:
                    self._write(Action.RENEW, self.lease, sent)
                    return Action.RENEW, "renewed"
                except LeaseConflict:
                    pass
            lease = self.store.get()
            self.holder = lease.holder if lease is not None else None
            decision = decide(lease, self.identity, self.leading, self.clock(), self.seen, self.timing)
            self.seen = decision.seen
            if decision.action is Action.LOST:
                self.lease = None
                return decision.action, decision.reason
            if decision.action is Action.WAIT:
                return decision.action, decision.reason
            try:
                self._write(decision.action, lease, sent)
            except LeaseConflict:
                return Action.WAIT, "another candidate wrote the Lease first"
            return decision.action, decision.reason

    def _write(self, action: Action, lease: Lease | None, sent: float) -> None:
        target = claimed(lease, self.identity, action, self.wall(), self.timing)
        written = self.store.create(target) if action is Action.CREATE else self.store.update(target)
        self.lease, self.last_renewed, self.holder = written, sent, self.identity
        self.seen = Seen(written.version, self.clock())

    def expired(self) -> bool:
        """The leader has not renewed for the renew deadline: it must stop now."""
        last = self.last_renewed
        return last is not None and renew_expired(last, self.clock(), self.timing)

    def release(self) -> bool:
        """Clear the holder (clean shutdown), so a standby takes over at its next look. True when done."""
        with self._lock:
            if self.lease is None:
                return False
            try:
                self.store.update(released(self.lease, self.wall()))
            except (LeaseConflict, LeaseError) as err:
                log.warning("could not release the Lease (a standby will take it when it expires): %s", err)
                return False
            finally:
                self.lease = None
            return True


def wait_until_leading(elector: Elector, stop: threading.Event) -> bool:
    """Standby loop: look every ``standby_period`` until this process leads (True) or ``stop`` (False)."""
    holder: object = object()
    last_error = None
    while not stop.is_set():
        try:
            action, why = elector.step()
        except LeaseError as err:
            if str(err) != last_error:  # once per distinct error, not every second
                log.warning("standby: the Lease request failed, retrying every %gs: %s",
                            elector.timing.standby_period, err)
            last_error = str(err)
        else:
            last_error = None
            if elector.leading:
                log.info("leading: %s (%s); starting the operator", action.value, why)
                return True
            if elector.holder != holder:
                holder = elector.holder
                log.info("standing by: %s", why)
        stop.wait(elector.timing.standby_period)
    return False


@dataclass
class Renewer:
    """The leader's background renewal and its watchdog; ``on_lost`` is called once, from either thread."""

    elector: Elector
    on_lost: Callable[[str], None]
    stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for target, name in ((self._renew, "lease-renew"), (self._watch, "lease-watchdog")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _renew(self) -> None:
        timing = self.elector.timing
        wait = timing.retry_period
        while not self.stop.wait(wait):
            try:
                action, why = self.elector.step()
            except LeaseError as err:
                log.warning("could not renew the Lease, retrying: %s", err)
                wait = timing.failed_renew_period
                continue
            if action is Action.LOST:
                self.on_lost(why)
                return
            wait = timing.retry_period if action is Action.RENEW else timing.failed_renew_period

    def _watch(self) -> None:
        timing = self.elector.timing
        while not self.stop.is_set():
            last = self.elector.last_renewed or self.elector.clock()
            left = last + timing.renew_deadline - self.elector.clock()
            if self.stop.wait(max(0.0, left)):
                return
            if self.elector.expired():
                self.on_lost(f"no successful renewal for {timing.renew_deadline:g}s (renew deadline)")
                return


def exit_now(reason: str) -> None:
    """Leadership lost: stop every thread at once (no cleanup that could write)."""
    log.critical("leader election lost, exiting now: %s", reason)
    _flush()
    os._exit(EXIT_LOST)


def _flush() -> None:
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass


class StandbyHealth:
    """The liveness endpoint while standing by (Kopf serves it once leading): 200 on its path."""

    def __init__(self, endpoint: str):
        url = urlparse(endpoint)
        path = url.path or "/"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                ok = self.path.split("?")[0] == path
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"standby\n" if ok else b"not found\n")

            def log_message(self, *args) -> None:  # probes every few seconds: not worth a log line
                pass

        self.server = ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 80), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="standby-health", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_elected(start: Callable[[], None], elector: Elector, liveness: str | None = None,
                exit_fn: Callable[[int], None] = os._exit, on_lost: Callable[[str], None] = exit_now) -> int:
    """Stand by until ``elector`` leads, then run ``start`` (blocking: the operator) while renewing.

    When ``start`` returns (SIGTERM: Kopf stopped) the Lease is released and the process ends through
    ``exit_fn`` at once, so that no thread of the old leader writes after a standby took over.
    """
    stop = threading.Event()
    health = StandbyHealth(liveness) if liveness else None

    def on_signal(signum, _frame) -> None:
        log.info("standby: signal %d, exiting", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        leading = wait_until_leading(elector, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if health is not None:
            health.close()
    if not leading:
        return 0
    renewer = Renewer(elector, on_lost)
    renewer.start()
    code = 0
    try:
        start()
    except BaseException:  # noqa: BLE001 - whatever stopped the operator, release and go
        log.exception("the operator stopped with an error")
        code = 1
    renewer.close()
    if elector.release():
        log.info("released the Lease")
    _flush()
    exit_fn(code)
    return code
