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
import urllib.parse
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


def _outside(path: Path, root: Path) -> bool:
    return path != root and root not in path.parents


def _follow(entry_path: str, root: Path, base: Path, uri: ModelURI, what: str) -> Path:
    """The real path of ``entry_path``, refused (SourceError) when a symbolic link leads out of ``root``;
    ``base`` is where names in the message are counted from."""
    real = Path(os.path.realpath(entry_path))
    if _outside(real, root):
        rel = os.path.relpath(entry_path, base)
        raise SourceError(f"{uri}: {rel} is a symbolic link to a path outside {what}; refusing to follow it")
    return real


def _copy_tree(src: Path, dest: Path, uri: ModelURI, progress: Progress, root: Path, base: Path, what: str,
               ancestors: frozenset[Path] = frozenset()) -> None:
    """Copy the folder ``src`` (real path, inside ``root``) to ``dest``. Symbolic links are followed only
    while they stay inside ``root`` (a model folder, or a claim): an ``etc -> /etc`` link in a model
    folder must not copy the fetcher's own files into the repository. Links to a folder being copied
    (loops) are refused."""
    make_dirs(dest)
    ancestors = ancestors | {src}
    try:
        entries = sorted(os.scandir(src), key=lambda e: e.name)
    except OSError as err:
        raise _local_error(uri, err) from None
    for entry in entries:
        target = dest / entry.name
        path = Path(entry.path)
        if entry.is_symlink():
            path = _follow(entry.path, root, base, uri, what)
            if path in ancestors:
                rel = os.path.relpath(entry.path, base)
                raise SourceError(f"{uri}: {rel} is a symbolic link to a folder it is in; refusing to follow it")
        if path.is_dir():
            _copy_tree(path, target, uri, progress, root, base, what, ancestors)
        elif path.is_file():
            write_chunks(target, _read_local(path, uri), progress)
        # sockets, fifos, dangling links: not model files; skipped


def fetch_local(uri: ModelURI, dest: Path, ctx: Context) -> Fetched:
    src = local_path(uri, ctx.pvc_root, ctx.pvc_mount)
    if uri.scheme == "pvc":  # the boundary is the claim: links between its folders are fine
        mount = Path(ctx.pvc_mount or pvc_mount_path(uri.location, ctx.pvc_root))
        root, base, what = Path(os.path.realpath(mount)), mount, "the claim"
        real = _follow(str(src), root, base, uri, what) if src != mount else root
    else:  # file://: the path itself is what the user named; below it, the folder is the boundary
        real = Path(os.path.realpath(src))
        root, base, what = real, real, "the model folder"
    if real.is_dir():
        _copy_tree(real, dest, uri, ctx.progress, root, root, what)
        return Fetched("folder")
    try:
        ctx.progress.expect(real.stat().st_size)
    except OSError as err:
        raise _local_error(uri, err) from None
    return Fetched("file", write_chunks(dest, _read_local(real, uri), ctx.progress))


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


def check_redirect(old_url: str, new_url: str) -> None:
    """Raise SourceError unless following a redirect from ``old_url`` to ``new_url`` is safe: only to
    http:// or https:// (urllib alone would follow ftp://), and never from https:// down to http://.
    The message names the scheme only: a redirect target often carries a presigned signature."""
    old_scheme = old_url.split("://", 1)[0].lower()
    new_scheme = new_url.split("://", 1)[0].lower() if "://" in new_url else "?"
    if new_scheme not in ("http", "https"):
        raise SourceError(f"redirected to a {new_scheme}:// URL; only http:// and https:// redirects are followed")
    if old_scheme == "https" and new_scheme == "http":
        raise SourceError("redirected from https:// to http://; a downgrade is not followed")


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    def http_error_302(self, req, fp, code, msg, headers):  # noqa: PLR0913 - the stdlib's signature
        location = headers.get("location") or headers.get("uri")
        if location:
            try:
                check_redirect(req.full_url, urllib.parse.urljoin(req.full_url, location))
            except SourceError:
                fp.close()
                raise
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_RedirectHandler)


def fetch_http(uri: ModelURI, dest: Path, ctx: Context) -> Fetched:
    """GET the URI (redirects followed, up to 10, only to http(s)) into ``dest``; always a single file."""
    what = f"GET {uri}"
    request = urllib.request.Request(uri.uri, headers={"User-Agent": USER_AGENT})
    try:
        response = _OPENER.open(request, timeout=ctx.timeout)
    except SourceError as err:
        raise SourceError(f"{what}: {err}") from None
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
        ctx.progress.expect(total, source=what)
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
                if total is not None and written > total:
                    raise SourceError(f"{what}: the server sent more than the {total} bytes it announced")
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
    import importlib

    try:
        from google.api_core import exceptions as api_exceptions  # type: ignore[import-not-found]
        from google.auth import exceptions as auth_exceptions  # type: ignore[import-not-found]
        # import_module, not `from google.cloud import storage`: the latter finds the attribute left on the
        # google.cloud package by an earlier import even when the module itself cannot be imported now.
        storage = importlib.import_module("google.cloud.storage")
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
