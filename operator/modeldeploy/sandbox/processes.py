"""Small process helpers shared by the sandbox's components (Prometheus, Alertmanager, the supervisor,
the demo): a free loopback port, a log's tail, whether a pid is alive, waiting for an HTTP readiness path,
starting a daemon in its own session with its pid recorded.

One copy of each, so every component reports a failed start the same way (the exit code and the end of
its log) and every liveness check treats a zombie as dead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel reports free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tail(path: Path, size: int = 3000) -> str:
    """The last ``size`` bytes of a log, or why there are none."""
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"


def pid_alive(pid: int | None) -> bool:
    """Alive and not a zombie (orphans are reaped late on some hosts); a pid we may not signal is alive."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def wait_http_ready(url: str, proc: subprocess.Popen | None, log: Path, timeout: float, what: str,
                    error: type[Exception] = RuntimeError, path: str = "/-/ready") -> None:
    """Poll ``url + path`` until it answers 200; ``error`` with the log's tail if ``proc`` exits first or
    ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise error(f"{what} exited with {proc.returncode}; from {log}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise error(f"{what} at {url} not ready within {timeout:.0f}s ({last}); from {log}:\n{tail(log)}")


def start_daemon(cmd: Sequence[str], cwd: Path, log: Path, pidfile: Path,
                 ready: Callable[[subprocess.Popen], None]) -> subprocess.Popen:
    """Start ``cmd`` in its own session (so a stop can signal its process group) with its output appended to
    ``log``, write its pid to ``pidfile``, then call ``ready(proc)``; if that raises, kill the process, remove
    the pidfile and re-raise."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, start_new_session=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(str(proc.pid))
    try:
        ready(proc)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            pidfile.unlink()
        raise
    return proc
