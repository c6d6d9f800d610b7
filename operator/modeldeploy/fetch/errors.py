"""Why a fetch failed, as a small hierarchy whose ``str()`` is a one-line cause.

The CLI writes ``<ClassName>: <cause>`` to the termination log, which Kubernetes copies into the pod
status (``state.terminated.message``), so the cause must name the operation and the object, e.g.
``SourceError: GET https://models.example.com/m.onnx: 403 Forbidden``, and must never carry credentials
(URIs are redacted before they are put in a message).
"""

from __future__ import annotations


class FetchError(Exception):
    """A model that cannot be fetched as asked. The message is one line, without secrets."""


class InvalidURI(FetchError, ValueError):
    """The URI itself is malformed or names an unsupported scheme (a spec problem, not a store problem)."""


class SourceError(FetchError):
    """The store could not deliver: not found, access denied, unreachable, or the transfer broke off.

    ``status`` is the HTTP status code when the store answered with one.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ChecksumMismatch(FetchError):
    """The fetched file's SHA-256 differs from ``spec.model.sha256``."""


class LayoutError(FetchError):
    """What was fetched does not fit the model format (e.g. a folder without ``model.onnx``)."""


class MissingDependency(FetchError):
    """An optional client library for the scheme (boto3, google-cloud-storage) is not installed."""


class TooLarge(FetchError):
    """The model is bigger than ``spec.model.maxBytes`` (announced, or counted while streaming)."""


class WriteError(FetchError):
    """The model repository volume could not be written (full, read-only, permissions)."""
