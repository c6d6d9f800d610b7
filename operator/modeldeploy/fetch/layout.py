"""Where a fetched model goes in the Triton model repository, and how it gets there atomically.

Layout: ``<repository>/<name>/<version>/model.<ext>`` (file name by format, ``MODEL_FILE_BY_FORMAT``).
A file URI becomes that file; a folder URI becomes the version folder (it must hold the model file at
its top level, or under ``<version>/`` when it is a Triton model folder itself), except for SavedModel,
whose model "file" is itself a folder (``model.savedmodel/``).

Atomicity: everything is written into a staging folder ``<name>/.fetch-<version>-*`` on the same
filesystem, checked (sha256, layout), and renamed to ``<name>/<version>`` only when complete. Triton
ignores non-numeric folder names, a failure removes the staging folder, and leftovers of a killed
fetch are removed by the next one, so a partial model is never where Triton looks. A version already in
place (the init container ran before in this pod) is replaced; the old copy is moved aside first.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, TextIO

from modeldeploy.api.spec import MODEL_FILE_BY_FORMAT
from modeldeploy.fetch.errors import ChecksumMismatch, FetchError, LayoutError, WriteError
from modeldeploy.fetch.sources import SOURCES, Context, Fetched
from modeldeploy.fetch.transfer import Progress, make_dirs
from modeldeploy.fetch.uri import PVC_MOUNT_ROOT, ModelURI, parse_uri

#: Formats whose model "file" is a directory.
FOLDER_FORMATS = frozenset({"savedmodel"})

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # the CRD's pattern for spec.model.name
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FetchRequest:
    uri: str
    format: str
    name: str
    version: int
    repository: Path
    sha256: str | None = None


def validate(request: FetchRequest) -> ModelURI:
    """Check the request before any I/O; return the parsed URI."""
    if request.format not in MODEL_FILE_BY_FORMAT:
        raise FetchError(f"unknown model format {request.format!r} (one of {', '.join(MODEL_FILE_BY_FORMAT)})")
    if not _NAME.match(request.name):
        raise FetchError(f"model name {request.name!r} is not a valid Triton model folder name")
    if request.version < 1:
        raise FetchError(f"model version must be >= 1, got {request.version}")
    if request.sha256 is not None and not _SHA256.match(request.sha256):
        raise FetchError(f"sha256 must be 64 lowercase hex digits, got {request.sha256!r}")
    uri = parse_uri(request.uri)
    if request.sha256 and uri.scheme in ("s3", "gs", "pvc") and uri.is_prefix and uri.path:
        raise LayoutError(f"{uri}: sha256 is set but the URI names a folder; sha256 verifies a single file")
    return uri


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _arrange(uri: ModelURI, fetched: Fetched, download: Path, staging: Path, request: FetchRequest) -> None:
    """Turn what the source wrote at ``download`` into the version folder's content in ``staging``."""
    model_file = MODEL_FILE_BY_FORMAT[request.format]
    if fetched.kind == "file":
        if request.format in FOLDER_FORMATS:
            raise LayoutError(f"{uri}: format {request.format} needs a folder ({model_file}/), got a file")
        if request.sha256 and fetched.sha256 != request.sha256:
            raise ChecksumMismatch(f"{uri}: sha256 mismatch: expected {request.sha256}, got {fetched.sha256}")
        os.rename(download, staging / model_file)
        return
    if request.sha256:
        raise LayoutError(f"{uri}: sha256 is set but the URI names a folder; sha256 verifies a single file")
    if request.format in FOLDER_FORMATS:
        os.rename(download, staging / model_file)
        return
    root = download
    if not (root / model_file).exists() and (root / str(request.version) / model_file).exists():
        root = root / str(request.version)  # a Triton model folder (<name>/): take its version folder
    if not (root / model_file).exists():
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in download.iterdir())
        shown = ", ".join(found[:8]) + (", …" if len(found) > 8 else "")
        raise LayoutError(f"{uri}: the folder has no {model_file} at its top level (found: {shown or 'nothing'})")
    for entry in root.iterdir():
        os.rename(entry, staging / entry.name)
    shutil.rmtree(download)


def _install(staging: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        aside = target.with_name(f".old-{target.name}-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(target, aside)
        os.rename(staging, target)
        _remove(aside)
    else:
        os.rename(staging, target)


def fetch_model(request: FetchRequest, *, out: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                timeout: float = 60.0, pvc_root: str = PVC_MOUNT_ROOT, pvc_mount: str | None = None,
                env: Mapping[str, str] | None = None, max_bytes: int | None = None) -> Path:
    """Fetch ``request.uri`` into the repository; return the version folder. Raises FetchError.

    A pvc:// claim is read at ``pvc_mount`` when given, else at ``<pvc_root>/<claim>``. ``max_bytes``
    bounds what is written (every file of a folder counted), checked while streaming (TooLarge).
    """
    uri = validate(request)
    model_dir = Path(request.repository) / request.name
    try:
        make_dirs(model_dir)
    except OSError as err:
        raise WriteError(f"create {model_dir}: {err.strerror or err}") from None
    for leftover in model_dir.glob(f".fetch-{request.version}-*"):
        _remove(leftover)  # a fetch killed half-way (OOM, node restart) left it
    for leftover in model_dir.glob(f".old-{request.version}-*"):
        _remove(leftover)

    progress = Progress(str(uri), out=out if out is not None else sys.stdout, clock=clock, limit=max_bytes)
    context = Context(progress=progress, timeout=timeout, pvc_root=pvc_root, pvc_mount=pvc_mount,
                      env=dict(os.environ if env is None else env))
    staging = Path(tempfile.mkdtemp(prefix=f".fetch-{request.version}-", dir=model_dir))
    try:
        download = staging / ".download"
        fetched = SOURCES[uri.scheme](uri, download, context)
        _arrange(uri, fetched, download, staging, request)
        os.chmod(staging, 0o755)
        target = model_dir / str(request.version)
        _install(staging, target)
    except OSError as err:  # rename/chmod in the repository; sources map their own read errors
        _remove(staging)
        raise WriteError(f"write {model_dir}: {err.strerror or err}") from None
    except BaseException:
        _remove(staging)
        raise
    progress.finish()
    return target
