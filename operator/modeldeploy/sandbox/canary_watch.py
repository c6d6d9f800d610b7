"""Watch a canary rollout from outside, as the sandbox's tests, benchmark and demo do: every change of
``status.canary`` (and the conditions) with the moment it was seen.

A poller rather than a watch: a 0.25 s poll costs one GET and its timestamps are what the measurements need
(when a weight or a rollback became visible); the rollout's own times in status have 1 s resolution.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from modeldeploy.api import constants as c

#: Phases during which the canary may get traffic.
RUNNING = ("Progressing", "Paused", "Holding", "RollingBack", "Promoting")


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the poller saw it
    canary: dict[str, Any]  # status.canary without history
    conditions: dict[str, dict[str, Any]]  # by type
    current_revision: str | None = None


class CanaryWatch:
    """Polls a ModelDeployment every ``period`` seconds (a context manager) and keeps every distinct status."""

    def __init__(self, api_client, namespace: str, name: str, period: float = 0.25):
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)
        self.namespace, self.name, self.period = namespace, name, period
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def get(self) -> dict[str, Any]:
        return self._custom.get_namespaced_custom_object(c.GROUP, c.VERSION, self.namespace, c.PLURAL, self.name)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                md = self.get()
            except Exception:  # noqa: BLE001 - the API server may be briefly busy; poll again
                md = None
            if md is not None:
                status = md.get("status") or {}
                canary = {k: v for k, v in (status.get("canary") or {}).items() if k != "history"}
                conds = {x["type"]: x for x in status.get("conditions") or ()}
                last = self.seen[-1] if self.seen else None
                if last is None or (last.canary, last.conditions, last.current_revision) != (
                        canary, conds, status.get("currentRevision")):
                    self.seen.append(Seen(time.monotonic(), canary, conds, status.get("currentRevision")))
            self._stop.wait(self.period)

    def __enter__(self) -> "CanaryWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def phases(self) -> list[str]:
        out: list[str] = []
        for s in self.seen:
            phase = s.canary.get("phase")
            if phase and (not out or out[-1] != phase):
                out.append(phase)
        return out

    def weights(self) -> list[tuple[float, int]]:
        """(first seen, weight) at every change of the applied weight while a canary ran."""
        out: list[tuple[float, int]] = []
        for s in self.seen:
            if s.canary.get("phase") not in RUNNING:
                continue
            w = int(s.canary.get("weight") or 0)
            if not out or out[-1][1] != w:
                out.append((s.at, w))
        return out

    def first(self, predicate: Callable[[Seen], bool], since: float = 0.0) -> Seen | None:
        return next((s for s in self.seen if s.at >= since and predicate(s)), None)

    def timeline(self, since: float | None = None, width: int = 160) -> str:
        """One line per status seen: seconds, phase, step, weight, the last analysis."""
        t0 = since if since is not None else (self.seen[0].at if self.seen else 0.0)
        lines = []
        for s in self.seen:
            cn, last = s.canary, s.canary.get("lastAnalysis") or {}
            metrics = s.conditions.get("MetricsAvailable", {}).get("status", "-")
            lines.append(f"  {s.at - t0:6.1f}s {cn.get('phase')} step {cn.get('step')} weight {cn.get('weight')} "
                         f"metrics {metrics} | {last.get('result')}: {str(last.get('message'))[:width]}")
        return "\n".join(lines)


def wait_canary(watch: CanaryWatch, predicate: Callable[[dict[str, Any], dict[str, Any]], bool], timeout: float,
                what: str, interval: float = 0.25) -> dict[str, Any]:
    """Poll until ``predicate(status.canary, the object)`` holds; the object. TimeoutError names ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            md = watch.get()
            canary = (md.get("status") or {}).get("canary") or {}
            if predicate(canary, md):
                return md
            last = {k: canary.get(k) for k in ("phase", "step", "weight", "message")}
        except Exception as exc:  # noqa: BLE001 - keep polling through API hiccups
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)
