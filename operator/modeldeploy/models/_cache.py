"""The build cache of the example models: build once per content key, reuse after, copy on request.

Why one module: the digits CNN (trained, ~8 s) and MiniLM (written from 90 MB of weights) are built by
tests, the demo, benchmarks and the sandbox, often at once; the same atomic build-then-rename and copy
logic serves both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

REPORT_FILE = "report.json"


def cache_root() -> Path:
    """``$MODELDEPLOY_CACHE``, default ``~/.cache/modeldeploy``."""
    return Path(os.environ.get("MODELDEPLOY_CACHE") or Path.home() / ".cache" / "modeldeploy")


def cached_build(entry: Path, build_into: Callable[[Path], object], files: Iterable[str], out_dir=None,
                 force: bool = False) -> tuple[dict, bool, Path]:
    """Build into ``entry`` unless a complete build is there (its ``report.json`` exists) or ``force``;
    copy ``files`` into ``out_dir`` when given. Returns (report, whether it was cached, where the files are).

    Concurrent builds of one key are safe: each writes a private temporary folder next to ``entry`` and
    the first to rename it into place wins (the builds are deterministic, so theirs is the same).
    """
    cached = (entry / REPORT_FILE).is_file() and not force
    if not cached:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
        try:
            build_into(tmp)
            if force and entry.exists():
                shutil.rmtree(entry)
            try:
                os.rename(tmp, entry)
            except OSError:  # another process finished the same build first
                if not (entry / REPORT_FILE).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    report = json.loads((entry / REPORT_FILE).read_text())
    where = entry
    if out_dir is not None:
        where = Path(out_dir)
        where.mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copyfile(entry / name, where / name)
    return report, cached, where


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks (the models' reports record it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
