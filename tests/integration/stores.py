"""Fixtures and tools for tests against the real object stores (modeldeploy.sandbox.objectstores).

Imported by the test modules that need them (module-scoped: each module starts its own servers, about
10 s). The servers are built from source on first use (minutes; `make test` builds them before the tests).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("boto3", reason="the fetch extra is not installed: pip install '.[fetch]'")
pytest.importorskip("google.cloud.storage", reason="the fetch extra is not installed: pip install '.[fetch]'")


@pytest.fixture(scope="module")
def s3_store(tmp_path_factory):
    from modeldeploy.sandbox.objectstores import SeaweedS3

    folder = tmp_path_factory.mktemp("seaweedfs")
    with SeaweedS3(folder) as store:
        store.client().create_bucket(Bucket="models")
        yield store
    shutil.rmtree(folder / "data", ignore_errors=True)  # hundreds of MB; the log stays


@pytest.fixture(scope="module")
def gcs_store(tmp_path_factory):
    from modeldeploy.sandbox.objectstores import FakeGCS

    folder = tmp_path_factory.mktemp("fake-gcs")
    with FakeGCS(folder) as store:
        store.client().create_bucket("models")
        yield store
    shutil.rmtree(folder / "storage", ignore_errors=True)


@pytest.fixture(scope="module")
def token_endpoint():
    from modeldeploy.sandbox.objectstores import TokenEndpoint

    with TokenEndpoint() as endpoint:
        yield endpoint


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The test process's environment without any cloud setting, plus ``extra``."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "GOOGLE_", "STORAGE_EMULATOR", "CLOUDSDK_"))}
    return {**keep, "PYTHONPATH": str(ROOT / "operator"), **extra}


@dataclass
class FetchRun:
    returncode: int
    stdout: str
    stderr: str
    termination: str
    max_rss_bytes: int


#: Runs argv[2:] and writes its peak RSS (KiB, from wait4) to argv[1]. A separate small process starts the
#: fetcher because Linux carries the forking process's RSS into the child's ru_maxrss: started from
#: pytest, the fetcher would report pytest's own size.
_RSS_WRAPPER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_fetch(uri: str, env: dict[str, str], repository: Path, *extra: str, timeout: float = 600) -> FetchRun:
    """``python -m modeldeploy fetch`` as the init container runs it, with its own peak RSS."""
    repository.mkdir(parents=True, exist_ok=True)
    termination, rss = repository / "termination-log", repository / "max-rss-kib"
    argv = [sys.executable, "-m", "modeldeploy", "fetch", "--uri", uri, "--format", "onnx", "--name", "model",
            "--repository", str(repository), "--termination-log", str(termination), "--timeout", "20", *extra]
    try:
        proc = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, str(rss), *argv], env=clean_env(env),
                              capture_output=True, text=True, cwd=ROOT, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"modeldeploy fetch {uri} still running after {timeout} s: {err.stdout}") from None
    return FetchRun(proc.returncode, proc.stdout, proc.stderr,
                    termination.read_text() if termination.exists() else "",
                    int(rss.read_text()) * 1024 if rss.exists() else 0)


class CuttingProxy:
    """A TCP forwarder to ``upstream`` that breaks the next ``cuts`` connections once ``after`` bytes of the
    server's answer went through: a connection that breaks mid-download, between a real client and a real
    server. ``cut`` counts the connections it broke; raise ``cuts`` to arm it again."""

    def __init__(self, upstream: tuple[str, int], after: int, cuts: int = 1):
        self.upstream, self.after, self.cuts = upstream, after, cuts
        self.armed = 0  # connections given a byte limit so far
        self.cut = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                limit = self.after if self.armed < self.cuts else None
                self.armed += limit is not None
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, limit), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: max(limit - sent, 0)])
                    with self._lock:
                        self.cut += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._listener.close()
