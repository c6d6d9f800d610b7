"""Keeps the sandbox's control-plane components running, as a kubelet keeps its static pods running.

Why: kube-controller-manager and kube-scheduler exit on purpose when they lose their leader-election
lease (a 30 s API-server pause does it: their renew deadline is 10 s), expecting a supervisor to start
them again. kwokctl's binary runtime starts the components as plain processes and leaves; nothing
watches them. This process does: every second it checks each component's pid file, and starts a dead
component again with exactly the command line kwokctl recorded for it (``kwok.yaml`` in the cluster's
folder: binary, args, workDir), appending to the same log and rewriting the pid file, as kwokctl's own
``start cluster`` would. Restarts back off like a crash-looping container (0 s, 10 s, 20 s, ... 300 s;
reset after a run of 10 minutes); every restart is one line in ``logs/supervisor.log`` and counted in
``<workdir>/supervisor.json``, which ``modeldeploy sandbox status`` shows.

Pure: :func:`components_from_config`, :func:`decide`. I/O: :class:`Supervisor`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TextIO

import yaml

from modeldeploy.sandbox.podrunner.lifecycle import BACKOFF_RESET_S, backoff

from modeldeploy.sandbox import processes

STATE_FILE = "supervisor.json"


@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    workdir: str


def components_from_config(documents: Iterable[Mapping[str, Any]], names: Iterable[str]) -> dict[str, Component]:
    """The command lines kwokctl recorded (its KwokctlConfiguration's ``components``) for ``names``.

    >>> docs = [{"kind": "KwokctlConfiguration", "components": [
    ...     {"name": "kube-scheduler", "binary": "/b/kube-scheduler", "args": ["--v=1"], "workDir": "/w"}]},
    ...     {"kind": "Stage"}]
    >>> components_from_config(docs, ["kube-scheduler"])["kube-scheduler"].argv
    ('/b/kube-scheduler', '--v=1')
    """
    wanted = set(names)
    out = {}
    for doc in documents:
        if (doc or {}).get("kind") != "KwokctlConfiguration":
            continue
        for comp in doc.get("components") or []:
            if comp.get("name") in wanted and comp.get("binary"):
                out[comp["name"]] = Component(comp["name"], (comp["binary"], *(comp.get("args") or [])),
                                              comp.get("workDir") or ".")
    return out


@dataclass
class Track:
    """What the supervisor remembers of one component."""

    restarts: int = 0
    crashes: int = 0
    """Exits since the back-off was last reset."""
    started_at: float | None = None
    next_start_at: float | None = None
    last_exit: float | None = None
    history: list[str] = field(default_factory=list)


def decide(track: Track, alive: bool, now: float) -> tuple[Track, bool]:
    """Update ``track`` for one look at the component; return (track, start it now?).

    >>> t, go = decide(Track(started_at=0.0), alive=False, now=5.0)       # first exit: at once
    >>> go, t.crashes
    (True, 1)
    >>> t, go = decide(Track(started_at=5.0, crashes=1, restarts=1), alive=False, now=6.0)
    >>> go, t.next_start_at                                              # second in a row: 10 s back-off
    (False, 16.0)
    >>> decide(t, alive=False, now=16.0)[1]
    True
    >>> decide(Track(started_at=0.0, crashes=5), alive=False, now=BACKOFF_RESET_S + 1)[0].crashes   # ran long
    1
    """
    if alive:
        return track, False
    if track.next_start_at is None:  # a new exit
        ran = now - track.started_at if track.started_at is not None else 0.0
        crashes = 1 if ran >= BACKOFF_RESET_S else track.crashes + 1
        track = Track(track.restarts, crashes, track.started_at, now + backoff(crashes), now, list(track.history))
    if now >= track.next_start_at:
        return Track(track.restarts + 1, track.crashes, now, None, track.last_exit, list(track.history)), True
    return track, False


_alive = processes.pid_alive


class Supervisor:
    """The loop over one kwokctl cluster folder (``workdir``: kwok.yaml, pids/, logs/)."""

    def __init__(self, workdir: Path, names: Iterable[str], clock: Callable[[], float] = time.time,
                 out: TextIO | None = None):
        self.workdir, self.names, self.clock = Path(workdir), list(names), clock
        self.out = out or sys.stdout
        self.tracks = {name: Track(started_at=clock()) for name in self.names}
        self._children: list[subprocess.Popen] = []

    def say(self, msg: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor: {msg}", file=self.out, flush=True)

    def _pid(self, name: str) -> int | None:
        try:
            return int((self.workdir / "pids" / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _components(self) -> dict[str, Component]:
        docs = list(yaml.safe_load_all((self.workdir / "kwok.yaml").read_text()))
        return components_from_config(docs, self.names)

    def start(self, comp: Component) -> int:
        """Start ``comp`` as kwokctl does (its own session, output appended to its log, pid file rewritten)."""
        log = open(self.workdir / "logs" / f"{comp.name}.log", "ab")
        proc = subprocess.Popen(list(comp.argv), cwd=comp.workdir, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._children.append(proc)
        (self.workdir / "pids" / f"{comp.name}.pid").write_text(str(proc.pid))
        return proc.pid

    def check_once(self) -> list[str]:
        """One look at every component; returns the names started again."""
        for child in list(self._children):  # reap our own exited children (no zombies)
            if child.poll() is not None:
                self._children.remove(child)
        now = self.clock()
        started = []
        components = None
        for name in self.names:
            track, go = decide(self.tracks[name], _alive(self._pid(name)), now)
            if go:
                components = components or self._components()
                comp = components.get(name)
                if comp is None:
                    self.say(f"{name} is not running and kwok.yaml has no command for it")
                    continue
                pid = self.start(comp)
                track.history = [*track.history[-9:], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))]
                self.say(f"{name} was not running (exit noticed at {track.last_exit:.0f}); started it again "
                         f"(pid {pid}, restart {track.restarts})")
                started.append(name)
            elif track.next_start_at is not None and self.tracks[name].next_start_at is None:  # a new exit
                self.say(f"{name} is not running; next start in {track.next_start_at - now:.0f}s (back-off)")
            self.tracks[name] = track
        if started:
            self._write_state()
        return started

    def _write_state(self) -> None:
        state = {name: {"restarts": t.restarts, "lastRestarts": t.history} for name, t in self.tracks.items()}
        tmp = self.workdir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.workdir / STATE_FILE)

    def run(self, should_stop: Callable[[], bool], period: float = 1.0) -> None:
        self.say(f"watching {', '.join(self.names)} in {self.workdir}")
        self._write_state()
        while not should_stop():
            try:
                self.check_once()
            except (OSError, yaml.YAMLError) as exc:
                self.say(f"check failed, retrying: {exc}")
            time.sleep(period)
        self.say("stopped")


def restarts(workdir: Path) -> dict[str, int]:
    """Restarts per component so far (empty when no supervisor ran)."""
    try:
        return {k: int(v.get("restarts", 0)) for k, v in json.loads((workdir / STATE_FILE).read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m modeldeploy.sandbox.supervisor",
                                     description="Restart the sandbox's control-plane components when they exit.")
    parser.add_argument("--workdir", required=True, type=Path, help="kwokctl's cluster folder")
    parser.add_argument("--component", action="append", required=True, help="component to watch (repeat)")
    args = parser.parse_args(argv)
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    Supervisor(args.workdir, args.component).run(lambda: bool(stop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
