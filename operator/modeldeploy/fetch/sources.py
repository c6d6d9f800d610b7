"""One reader per URI scheme. Each writes what the URI names to ``dest``: a file, or a folder tree.

A source decides file-or-folder itself (a local path is a directory or not; an s3/gs key that is not an
object is tried as a prefix), returns ``Fetched`` with the file's SHA-256, and raises ``SourceError``
with a message that names the operation and the redacted URI. Nothing here knows about Triton's layout;
``layout`` does.

s3:// and gs:// need boto3 / google-cloud-storage (``pip install 'modeldeploy[fetch]'``). They are imported
only when such a URI is fetched, so the operator and the other schemes work without them.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from modeldeploy import __version__
from modeldeploy.fetch.errors import InvalidURI, MissingDependency, SourceError
from modeldeploy.fetch.transfer import CHUNK, Progress, make_dirs, write_chunks
from modeldeploy.fetch.uri import PVC_MOUNT_ROOT, ModelURI, pvc_mount_path

USER_AGENT = f"modeldeploy-fetch/{__version__}"


@dataclass
class Context:
    progress: Progress
    timeout: float = 60.0
    pvc_root: str = PVC_MOUNT_ROOT
    pvc_mount: str | None = None  # where the claim is mounted, when not <pvc_root>/<claim>
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass(frozen=True)
class Fetched:
    kind: str  # "file" or "folder"
    sha256: str | None = None  # of the file; None for a folder


# --- file:// and pvc:// --------------------------------------------------------------------------------

def local_path(uri: ModelURI, pvc_root: str = PVC_MOUNT_ROOT, pvc_mount: str | None = None) -> Path:
    """The path a file:// or pvc:// URI names on the fetcher's filesystem."""
    if uri.scheme == "file":
        return Path(uri.path)
    if uri.scheme == "pvc":
        mount = Path(pvc_mount or pvc_mount_path(uri.location, pvc_root))
        if not mount.is_dir():
            raise SourceError(f"{uri}: claim {uri.location!r} is not mounted at {mount}")
        return mount / uri.path if uri.path else mount
    raise InvalidURI(f"{uri}: not a local URI")


def _local_error(uri: ModelURI, err: OSError) -> SourceError:
    if isinstance(err, FileNotFoundError):
        return SourceError(f"{uri}: no such file or directory: {err.filename}")
    if isinstance(err, PermissionError):
        return SourceError(f"{uri}: permission denied: {err.filename}")
    return SourceError(f"{uri}: read {err.filename or ''}: {err.strerror or err}")


def _read_local(path: Path, uri: ModelURI) -> Iterator[bytes]:
    """The file's bytes; a read error is the source's fault (SourceError), a write error is not ours to map."""
    try:
        f = open(path, "rb")
    except OSError as err:
        raise _local_error(uri, err) from None
    with f:
        while True:
            try:
                chunk = f.read(CHUNK)
            except OSError as err:
                raise _local_error(uri, err) from None
            if not chunk:
                return
            yield chunk


def _copy_tree(src: Path, dest: Path, uri: ModelURI, progress: Progress) -> None:
    make_dirs(dest)
    try:
        entries = sorted(os.scandir(src), key=lambda e: e.name)
    except OSError as err:
        raise _local_error(uri, err) from None
    for entry in entries:
        target = dest / entry.name
        if entry.is_dir():
            _copy_tree(Path(entry.path), target, uri, progress)
        elif entry.is_file():
            write_chunks(target, _read_local(Path(entry.path), uri), progress)
        # sockets, fifos, dangling links: not model files; skipped


def fetch_local(uri: ModelURI, dest: Path, ctx: Context) -> Fetched:
    src = local_path(uri, ctx.pvc_root, ctx.pvc_mount)
    if src.is_dir():
        _copy_tree(src, dest, uri, ctx.progress)
        return Fetched("folder")
    try:
        ctx.progress.expect(src.stat().st_size)
    except OSError as err:
        raise _local_error(uri, err) from None
    return Fetched("file", write_chunks(dest, _read_local(src, uri), ctx.progress))


# --- http:// and https:// ------------------------------------------------------------------------------

def _phrase(status: int | None) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _network_reason(reason: Any, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host ({reason.strerror or reason})"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {getattr(reason, 'reason', None) or reason}"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def fetch_http(uri: ModelURI, dest: Path, ctx: Context) -> Fetched:
    """GET the URI (redirects followed by urllib, up to 10) into ``dest``; always a single file."""
    what = f"GET {uri}"
    request = urllib.request.Request(uri.uri, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=ctx.timeout)  # noqa: S310 - scheme checked
    except urllib.error.HTTPError as err:
        reason = err.reason or _phrase(err.code)
        err.close()
        raise SourceError(f"{what}: {err.code} {reason}".rstrip(), status=err.code) from None
    except urllib.error.URLError as err:
        raise SourceError(f"{what}: {_network_reason(err.reason, ctx.timeout)}") from None
    except (OSError, http.client.HTTPException) as err:
        raise SourceError(f"{what}: {_network_reason(err, ctx.timeout)}") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        ctx.progress.expect(total)
        written = 0

        def received() -> Iterator[bytes]:
            nonlocal written
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    detail = ("connection closed early" if isinstance(err, http.client.IncompleteRead)
                              else _network_reason(err, ctx.timeout))
                    raise SourceError(f"{what}: transfer broke off after {written} of {total or '?'} bytes: "
                                      f"{detail}") from None
                if not chunk:
                    return
                written += len(chunk)
                yield chunk

        digest = write_chunks(dest, received(), ctx.progress)
        if total is not None and written != total:
            raise SourceError(f"{what}: transfer broke off after {written} of {total} bytes")
    return Fetched("file", digest)


# --- s3:// ---------------------------------------------------------------------------------------------

def import_boto3():
    try:
        import boto3  # type: ignore[import-not-found]
        import botocore.config  # type: ignore[import-not-found]
        import botocore.exceptions  # type: ignore[import-not-found]
    except ImportError:
        raise MissingDependency("s3:// needs boto3, which is not installed in this image "
                                "(pip install 'modeldeploy[fetch]')") from None
    return boto3, botocore


def fetch_s3(uri: ModelURI, dest: Path, ctx: Context) -> Fetched:
    """An object or a prefix from an S3-compatible store (``modeldeploy.fetch.s3``; boto3 imported on use)."""
    from modeldeploy.fetch.s3 import fetch_s3 as fetch
    return fetch(uri, dest, ctx)


# --- gs:// ---------------------------------------------------------------------------------------------

def import_gcs():
    try:
        from google.api_core import exceptions as api_exceptions  # type: ignore[import-not-found]
        from google.auth import exceptions as auth_exceptions  # type: ignore[import-not-found]
        from google.cloud import storage  # type: ignore[import-not-found]
    except ImportError:
        raise MissingDependency("gs:// needs google-cloud-storage, which is not installed in this image "
                                "(pip install 'modeldeploy[fetch]')") from None
    return storage, api_exceptions, auth_exceptions


def fetch_gs(uri: ModelURI, dest: Path, ctx: Context) -> Fetched:
    """A blob or a prefix from Google Cloud Storage (``modeldeploy.fetch.gcs``; the library imported on use)."""
    from modeldeploy.fetch.gcs import fetch_gs as fetch
    return fetch(uri, dest, ctx)


SOURCES: dict[str, Callable[[ModelURI, Path, Context], Fetched]] = {
    "file": fetch_local,
    "pvc": fetch_local,
    "http": fetch_http,
    "https": fetch_http,
    "s3": fetch_s3,
    "gs": fetch_gs,
}
