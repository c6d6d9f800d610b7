"""The model repository folder as the swap sees it: ``<repository>/<name>/<version>/``, plus one record file.

Fetching reuses the init container's code in-process (``fetch.layout.fetch_model``: staging folder,
checks, rename), with the container's own environment, so the same credentials (AWS_*,
GOOGLE_APPLICATION_CREDENTIALS) and the same pvc:// mount convention apply. Copies are made the same
way: into a staging folder Triton ignores (non-numeric name), renamed into place when complete; files
are hard-linked when the filesystem allows (a repair copies a whole model; an emptyDir allows it).

``.agent-served.json`` in the model folder records what the agent last swapped in (version, uri,
sha256), so an agent restart can tell which uri is behind the version Triton serves. Triton ignores
files in the model folder other than ``config.pbtxt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from modeldeploy.agent import sandbox
from modeldeploy.agent.swap import ModelRef, RepositoryError
from modeldeploy.api.spec import MODEL_FILE_BY_FORMAT

RECORD_FILE = ".agent-served.json"


class ModelRepository:
    """The :class:`~modeldeploy.agent.swap.Repository` port on a local folder."""

    def __init__(self, root: Path, name: str, fmt: str, *, fetch_timeout: float = 60.0,
                 pvc_mount: str | None = None, out: TextIO | None = None, max_bytes: int | None = None):
        self.root = Path(root)
        self.name = name
        self.format = fmt
        self.model_dir = self.root / name
        self.fetch_timeout = fetch_timeout
        self.pvc_mount = pvc_mount
        self.max_bytes = max_bytes
        self.out = out if out is not None else sys.stdout

    def version_dir(self, version: int) -> Path:
        return self.model_dir / str(version)

    def fetch(self, ref: ModelRef) -> str | None:
        from modeldeploy.fetch.layout import FetchRequest, fetch_model

        request = FetchRequest(uri=ref.uri or "", format=self.format, name=self.name, version=ref.version,
                               repository=self.root, sha256=ref.sha256)
        fetch_model(request, out=self.out, timeout=self.fetch_timeout, pvc_mount=self.pvc_mount,
                    max_bytes=self.max_bytes)
        return self.sha256(ref.version)

    def prepare(self, version: int) -> None:
        try:
            sandbox.add_shim(self.version_dir(version))
        except OSError as err:
            raise RepositoryError(f"copy the sandbox shim into {self.version_dir(version)}: {err.strerror or err}") from None

    def copy_version(self, source: int, target: int) -> None:
        src, dst = self.version_dir(source), self.version_dir(target)
        staging = Path(tempfile.mkdtemp(prefix=f".copy-{target}-", dir=self.model_dir))
        try:
            shutil.copytree(src, staging / "v", copy_function=_link_or_copy)
            _remove(dst)
            os.rename(staging / "v", dst)
        except OSError as err:
            raise RepositoryError(f"copy {src} to {dst}: {err.strerror or err}") from None
        finally:
            _remove(staging)

    def remove_version(self, version: int) -> None:
        _remove(self.version_dir(version))

    def sha256(self, version: int) -> str | None:
        path = self.version_dir(version) / MODEL_FILE_BY_FORMAT[self.format]
        if not path.is_file():
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def load_record(self) -> ModelRef | None:
        try:
            data = json.loads((self.model_dir / RECORD_FILE).read_text())
            return ModelRef(int(data["version"]), data.get("uri"), data.get("sha256"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_record(self, ref: ModelRef) -> None:
        path = self.model_dir / RECORD_FILE
        tmp = path.with_name(f"{RECORD_FILE}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps(ref.as_json()) + "\n")
            os.replace(tmp, path)
        except OSError as err:
            raise RepositoryError(f"write {path}: {err.strerror or err}") from None


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)
