"""A Prometheus outage in the sandbox, for the canary tests and benchmark: the sandbox's Prometheus stopped as
its process (SIGTERM, as a crash-looping or upgraded Prometheus would be gone) and started again with the same
command line, so the same port (the operator's ``MODELDEPLOY_PROMETHEUS_URL`` stays valid) and the same TSDB
folder (what was scraped before is still there; the outage is a gap).

Only the Prometheus of the sandbox given (its pid file) is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from modeldeploy.sandbox import processes


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
        while processes.pid_alive(pid):  # a zombie (our own child, not reaped yet) counts as gone
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it when this process started it (sandbox up in-process)
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus (pid {pid}) still runs {timeout:.0f}s after SIGTERM")
            time.sleep(0.1)

    def start(self, timeout: float = 60.0) -> int:
        """Start it again; wait until it answers ``/-/ready``. Returns the new pid."""
        if self.argv is None:
            raise RuntimeError("start() before stop()")
        proc = processes.start_daemon(self.argv, Path(self.cwd), self.log, self.pidfile,
                                      lambda proc: processes.wait_http_ready(self.url, proc, self.log, timeout,
                                                                             "prometheus (restarted)"))
        return proc.pid
