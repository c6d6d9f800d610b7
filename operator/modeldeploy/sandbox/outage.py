"""A Prometheus outage in the sandbox, for the canary tests and benchmark: the sandbox's Prometheus stopped as
its process (SIGTERM, as a crash-looping or upgraded Prometheus would be gone) and started again with the same
command line, so the same port (the operator's ``MODELDEPLOY_PROMETHEUS_URL`` stays valid) and the same TSDB
folder (what was scraped before is still there; the outage is a gap).

Only the Prometheus of the sandbox given (its pid file) is touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


class PrometheusOutage:
    """``stop()`` then ``start()`` the Prometheus of ``box`` (a :class:`~modeldeploy.sandbox.cluster.Sandbox`)."""

    def __init__(self, box):
        self.pidfile: Path = box.prometheus_pidfile
        self.log: Path = box.log_path("prometheus")
        self.url: str | None = box.prometheus_url
        self.argv: list[str] | None = None
        self.cwd: str | None = None

    def stop(self, timeout: float = 30.0) -> None:
        if self.url is None:
            raise RuntimeError("the sandbox runs no Prometheus")
        pid = int(self.pidfile.read_text())
        self.argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
        self.cwd = os.readlink(f"/proc/{pid}/cwd")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not _gone(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus (pid {pid}) still runs {timeout:.0f}s after SIGTERM")
            time.sleep(0.1)

    def start(self, timeout: float = 60.0) -> int:
        """Start it again; wait until it answers ``/-/ready``. Returns the new pid."""
        if self.argv is None:
            raise RuntimeError("start() before stop()")
        with open(self.log, "ab") as fh:
            proc = subprocess.Popen(self.argv, cwd=self.cwd, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.pidfile.write_text(str(proc.pid))
        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {proc.returncode} at restart; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return proc.pid
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready {timeout:.0f}s after its restart ({last}); see {self.log}")
