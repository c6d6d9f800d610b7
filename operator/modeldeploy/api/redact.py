"""Credentials out of every place a URI is shown: status, Events, logs, termination messages, agent answers.

Why one pure module: a model URI reaches people through many sinks (the fetcher's termination message,
which the operator copies into the ModelDeployment's status and Events; the agent's ``GET /v1/model``;
every log line), and one forgotten sink is a leak. Each sink calls :func:`redact_uri` on a URI it holds,
or :func:`redact_text` on a message that may quote one (an error from a library, a traceback line).

The rule, for any ``scheme://`` URI:

- **userinfo** (``user:password@``) is dropped. The CRD refuses it in ``spec.model.uri`` at apply time
  (credentials belong in ``spec.model.credentialsSecret``); this catches what gets past (older objects,
  URIs in messages from elsewhere).
- **query string and fragment** of http(s) and any other network scheme are replaced by ``?…``: presigned
  URLs carry their signature there (``X-Amz-Signature``, ``X-Goog-Signature``, ``sig``, ``token``...),
  and the parameter that carries a secret differs per store, so the whole query goes; the ``…`` tells the
  reader there was one. s3://, gs://, pvc:// and file:// keep their path whole: their keys are taken
  literally and may contain ``?`` and ``#`` (fetch/uri.py).

Trade-off: two URIs that differ only in their query look the same once redacted. Whoever must tell them
apart compares :func:`uri_fingerprint` (a SHA-256 of the whole URI) instead, as the operator does with the
model agent's report.
"""

from __future__ import annotations

import hashlib
import logging
import re

#: Schemes whose path is an object key or a file path, taken literally (no query, no fragment).
LITERAL_PATH_SCHEMES = frozenset({"s3", "gs", "pvc", "file"})
ELLIPSIS = "…"

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)
# A URI inside free text: from its scheme up to whitespace, a quote, a bracket or a backslash (the end of a
# JSON string or of a repr); trailing punctuation belongs to the sentence, not to the URI.
_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>\\`]*[^\s\"'<>\\`.,;:)\]}]")


def redact_uri(uri: str) -> str:
    """``uri`` without userinfo, and without query and fragment unless its scheme has literal paths.

    >>> redact_uri("https://alice:PW@models.example.com:8443/m.onnx?X-Amz-Signature=abc#x")
    'https://models.example.com:8443/m.onnx?…'
    >>> redact_uri("s3://AKIA:SECRET@bucket/key?odd#name")
    's3://bucket/key?odd#name'
    >>> redact_uri("https://h/m.onnx"), redact_uri("not a uri")
    ('https://h/m.onnx', 'not a uri')
    """
    m = _SCHEME.match(uri)
    if not m:
        return uri
    scheme, rest = m.group("scheme"), m.group("rest")
    literal = scheme.lower() in LITERAL_PATH_SCHEMES
    end = len(rest)
    for stop in ("/",) if literal else ("/", "?", "#"):
        i = rest.find(stop)
        if i != -1:
            end = min(end, i)
    authority, tail = rest[:end], rest[end:]
    authority = authority.rpartition("@")[2]
    if not literal:
        cut = min((i for i in (tail.find("?"), tail.find("#")) if i != -1), default=-1)
        if cut != -1:
            query = tail[cut:]
            tail = tail[:cut] + ("?" + ELLIPSIS if query.startswith("?") and len(query) > 1 else "")
    return f"{scheme}://{authority}{tail}"


def redact_text(text: str) -> str:
    """``text`` with every URI in it redacted (:func:`redact_uri`); everything else unchanged.

    >>> redact_text("GET https://u:p@h/m.onnx?sig=s3cr3t: 403 Forbidden")
    'GET https://h/m.onnx?…: 403 Forbidden'
    >>> redact_text('{"uri": "http://a:b@h/x?t=1"}')
    '{"uri": "http://h/x?…"}'
    """
    if "://" not in text:
        return text
    return _IN_TEXT.sub(lambda m: redact_uri(m.group(0)), text)


def uri_fingerprint(uri: str) -> str:
    """A digest of the whole URI (query and credentials included), for comparing URIs that are only ever
    shown redacted. SHA-256, hex; it does not reveal a signature or password (too much entropy to guess).

    >>> uri_fingerprint("https://h/m?sig=1") != uri_fingerprint("https://h/m?sig=2")
    True
    """
    return hashlib.sha256(uri.encode()).hexdigest()


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URIs in each record's message (arguments merged first), so a log
    line never carries a password or a presigned signature, whoever formatted it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add :class:`RedactingFilter` to every handler of ``logger`` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
