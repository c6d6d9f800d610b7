"""Model URIs: what each scheme means to the fetcher, parsed without touching anything.

Pure (no I/O): the renderer uses it too, so the pod mounts a ``pvc://<claim>/<path>`` claim exactly where
the fetcher looks for it (``PVC_MOUNT_ROOT/<claim>``).

| scheme | form | ``location`` | ``path`` |
|---|---|---|---|
| file | ``file:///abs/path`` | ``""`` | ``/abs/path`` (on the fetcher's own filesystem) |
| http(s) | ``https://host/path?query`` | ``host[:port]`` | ``/path`` (the whole URI is requested) |
| pvc | ``pvc://<claim>/<path>`` | the claim | path inside the claim, ``""`` = the whole volume |
| s3, gs | ``s3://<bucket>/<key or prefix>`` | the bucket | key or prefix, ``""`` = the whole bucket |

Paths and keys are taken literally (no percent-decoding): object keys may contain ``%``, ``?`` or ``#``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from modeldeploy.api.redact import redact_uri
from modeldeploy.fetch.errors import InvalidURI

SCHEMES = ("file", "http", "https", "pvc", "s3", "gs")

#: Where the pod mounts the claim of a ``pvc://<claim>/...`` URI (read-only), and where the fetcher reads it.
PVC_MOUNT_ROOT = "/mnt/pvc"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class ModelURI:
    uri: str
    scheme: str
    location: str
    path: str

    @property
    def is_prefix(self) -> bool:
        """An s3/gs/pvc URI that can only name a folder (empty path or a trailing slash)."""
        return self.path == "" or self.path.endswith("/")

    def __str__(self) -> str:
        return redact(self.uri)


#: ``uri`` without user info and query string (presigned URLs carry their signature there): api/redact.py.
redact = redact_uri


def _relative_parts(path: str, uri: str) -> None:
    if any(part == ".." for part in path.split("/")):
        raise InvalidURI(f"{redact(uri)}: '..' is not allowed in the path")


def parse_uri(uri: str) -> ModelURI:
    """Split ``uri`` into scheme, location and path; raise InvalidURI with the reason when it is malformed."""
    if "://" not in uri:
        raise InvalidURI(f"{redact(uri)}: not a URI (expected one of {', '.join(s + '://' for s in SCHEMES)})")
    scheme, rest = uri.split("://", 1)
    if scheme not in SCHEMES:
        raise InvalidURI(f"{redact(uri)}: unsupported scheme {scheme}:// "
                         f"(supported: {', '.join(s + '://' for s in SCHEMES)})")
    if scheme in ("http", "https"):
        try:
            parts = urlsplit(uri)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as err:
            raise InvalidURI(f"{redact(uri)}: {err}") from None
        if not parts.hostname:
            raise InvalidURI(f"{redact(uri)}: no host")
        return ModelURI(uri, scheme, parts.netloc.rpartition("@")[2], parts.path)
    location, slash, path = rest.partition("/")
    if scheme == "file":
        if location not in ("", "localhost") or not slash:
            raise InvalidURI(f"{redact(uri)}: a file URI needs an absolute path: file:///path/to/model")
        _relative_parts(path, uri)
        return ModelURI(uri, scheme, "", "/" + path)
    if not location:
        what = "claim" if scheme == "pvc" else "bucket"
        raise InvalidURI(f"{redact(uri)}: no {what} name ({scheme}://<{what}>/<path>)")
    if scheme == "pvc" and (len(location) > 253 or not _DNS_SUBDOMAIN.match(location)):
        raise InvalidURI(f"{redact(uri)}: {location.rpartition('@')[2]!r} is not a valid PersistentVolumeClaim name")
    _relative_parts(path, uri)
    if scheme == "pvc":
        path = path.lstrip("/")
    return ModelURI(uri, scheme, location, path)


def pvc_mount_path(claim: str, root: str = PVC_MOUNT_ROOT) -> str:
    """Where the claim of a pvc:// URI is mounted in the pod."""
    return f"{root.rstrip('/')}/{claim}"
