"""The model source as a file: what the serving pod fetches, kept out of the pod template.

Why: a version change must not change the Deployment's pod template, or every version bump would
restart every pod. The operator writes ``{"uri", "version", "sha256"}`` into the Secret
``<deployment>-model`` (``source.json``; a Secret because a presigned URL is a credential), mounted into
the pod; the ``fetch-model`` init container reads it
at pod start (so a new or restarted pod fetches the current model) and the model agent reads it as
the origin of what the init container fetched. Running pods get a new version through the agent
(in-place swap), not through this file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILE_NAME = "source.json"


class SourceFileError(ValueError):
    pass


def render_source(uri: str, version: int, sha256: str | None) -> str:
    """The file's text (stable key order, so an unchanged model gives a byte-identical ConfigMap)."""
    return json.dumps({"uri": uri, "version": version, "sha256": sha256}, sort_keys=True)


def read_source(path: str | Path) -> dict[str, Any]:
    """``{"uri", "version", "sha256"}`` from ``path``; SourceFileError naming the problem."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise SourceFileError(f"model source file {path}: {err.strerror or err}") from None
    except ValueError as err:
        raise SourceFileError(f"model source file {path}: not JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("uri"), str) or not data["uri"]:
        raise SourceFileError(f"model source file {path}: needs a non-empty \"uri\"")
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SourceFileError(f"model source file {path}: \"version\" must be an integer >= 1, got {version!r}")
    sha = data.get("sha256")
    if sha is not None and not isinstance(sha, str):
        raise SourceFileError(f"model source file {path}: \"sha256\" must be a string")
    return {"uri": data["uri"], "version": version, "sha256": sha.lower() if sha else None}


def apply_source_file(args: Any) -> None:
    """Fill ``args.uri``/``version``/``sha256`` from ``args.source_file`` when given (it wins)."""
    if getattr(args, "source_file", None):
        source = read_source(args.source_file)
        args.uri, args.version, args.sha256 = source["uri"], source["version"], source["sha256"]
