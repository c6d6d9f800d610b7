"""Writing fetched bytes: a file sink that hashes as it writes, and progress lines for long downloads.

Every source funnels its bytes through ``Sink`` so the SHA-256 is computed while downloading (no second
read of a multi-GB file) and progress is counted in one place. The size limit (``spec.model.maxBytes``) is
enforced in the same place, before each write: a server that announces less than it sends, or announces
nothing, is stopped once the limit is reached, whatever the source. Files are created ``0644`` and folders
``0755``: the fetcher runs as an unprivileged user and Triton, in the next container, may run as another.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, TextIO

from modeldeploy.fetch.errors import TooLarge, WriteError

CHUNK = 1 << 20
MB = 1_000_000


def _mb(n: float) -> str:
    return f"{n / MB:.1f} MB"


class Progress:
    """Counts bytes of one fetch and prints a line at most every ``interval`` seconds (clock injected).

    Small fetches print only the final summary; a fetch longer than ``interval`` prints
    ``<label>: 512.0 MB of 1200.0 MB (42%), 95.3 MB/s`` lines on the way.
    """

    def __init__(self, label: str, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 interval: float = 5.0, limit: int | None = None):
        self.label = label
        self.limit = limit
        self.out = out if out is not None else sys.stdout
        self.clock = clock
        self.interval = interval
        self.total: int | None = None
        self.done = 0
        self.files = 0
        self.start = clock()
        self._last = self.start

    def expect(self, total: int | None, source: str | None = None) -> None:
        """Set the total size when the source knows it (Content-Length, object sizes); TooLarge at once
        when it is over the limit. ``source`` names it in that message (default: the label)."""
        self.total = total
        if total is not None and self.limit is not None and total > self.limit:
            raise TooLarge(f"{source or self.label}: {total} bytes, more than the limit of {self.limit} bytes "
                           "(spec.model.maxBytes)")

    def check(self, n: int) -> None:
        """TooLarge when ``n`` more bytes would pass the limit (called before they are written)."""
        if self.limit is not None and self.done + n > self.limit:
            raise TooLarge(f"{self.label}: more than the limit of {self.limit} bytes (spec.model.maxBytes); "
                           f"stopped after {self.done} bytes")

    def add(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._print(self.line(now))

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.start, 1e-9) / MB
        if self.total:
            pct = 100 * self.done / self.total
            return f"{self.label}: {_mb(self.done)} of {_mb(self.total)} ({pct:.0f}%), {rate:.1f} MB/s"
        return f"{self.label}: {_mb(self.done)}, {rate:.1f} MB/s"

    def finish(self) -> str:
        now = self.clock()
        elapsed = now - self.start
        rate = self.done / max(elapsed, 1e-9) / MB
        files = f" in {self.files} files" if self.files > 1 else ""
        summary = f"{self.label}: fetched {self.done} bytes{files} in {elapsed:.1f} s ({rate:.1f} MB/s)"
        self._print(summary)
        return summary

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class Sink:
    """A new file at ``path`` (mode 0644) that hashes and counts what is written; a ``write()``-able object.

    Use as a context manager; the file is closed (not removed) on exit: the caller's staging directory
    is what gets cleaned up after a failure.
    """

    def __init__(self, path: Path, progress: Progress):
        self.path = path
        try:
            make_dirs(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.fchmod(fd, 0o644)  # the umask must not make it unreadable for Triton
        except OSError as err:
            raise WriteError(f"write {path}: {err.strerror or err}") from None
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.progress = progress
        self.size = 0
        progress.files += 1

    def write(self, data: bytes) -> int:
        self.progress.check(len(data))
        try:
            self._file.write(data)
        except OSError as err:
            raise WriteError(f"write {self.path}: {err.strerror or err}") from None
        self._hash.update(data)
        self.size += len(data)
        self.progress.add(len(data))
        return len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as err:  # a full disk can surface only when the buffer is flushed
            raise WriteError(f"write {self.path}: {err.strerror or err}") from None

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            try:
                self._file.close()
            except OSError:
                pass  # the first error is the one to report


def make_dirs(path: Path) -> None:
    """``mkdir -p`` with mode 0755 for every folder it creates, whatever the umask."""
    if path.is_dir():
        return
    make_dirs(path.parent)
    try:
        path.mkdir(mode=0o755)
    except FileExistsError:
        return
    os.chmod(path, 0o755)


def write_chunks(path: Path, chunks: Iterable[bytes], progress: Progress) -> str:
    """Write ``chunks`` to a new file at ``path``; return its SHA-256 (hex)."""
    with Sink(path, progress) as sink:
        for chunk in chunks:
            sink.write(chunk)
        return sink.hexdigest()

