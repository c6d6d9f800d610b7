"""Credential redaction (api/redact.py): URIs, URIs inside messages, log records."""

import doctest
import io
import json
import logging

import pytest

from modeldeploy.api import redact
from modeldeploy.api.redact import redact_text, redact_uri, uri_fingerprint


def test_docstring_examples():
    assert doctest.testmod(redact).failed == 0


@pytest.mark.parametrize("uri, shown", [
    ("http://alice:PW@host/m.onnx", "http://host/m.onnx"),
    ("https://alice@host:8443/a/m.onnx", "https://host:8443/a/m.onnx"),
    ("https://u:p%40ss@host/m.onnx?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA", "https://host/m.onnx?…"),
    ("https://host?sig=1", "https://host?…"),
    ("https://host/m.onnx#token=abc", "https://host/m.onnx"),
    ("https://host/m.onnx?", "https://host/m.onnx"),
    ("https://host/m.onnx?…", "https://host/m.onnx?…"),  # idempotent
    ("https://a@b@host/m", "https://host/m"),  # the last @ ends the userinfo
    ("ftp://u:p@host/x?y", "ftp://host/x?…"),
    ("s3://AKIA:SECRET@bucket/key", "s3://bucket/key"),
    ("s3://bucket/odd?key#name", "s3://bucket/odd?key#name"),  # object keys are literal
    ("gs://bucket/a@b/m.onnx", "gs://bucket/a@b/m.onnx"),  # an @ in the path is not userinfo
    ("pvc://store/k/selected/model.onnx", "pvc://store/k/selected/model.onnx"),
    ("file:///models/m.onnx", "file:///models/m.onnx"),
    ("no scheme", "no scheme"),
    ("", ""),
])
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown


@pytest.mark.parametrize("text, shown", [
    ("SourceError: GET https://u:PW@h/m.onnx?sig=abc: 403 Forbidden",
     "SourceError: GET https://h/m.onnx?…: 403 Forbidden"),
    ("fetch of version 2 failed (https://h/m?sig=abc), still serving 1",
     "fetch of version 2 failed (https://h/m?…), still serving 1"),
    ("two: http://a:b@x/1 and https://c:d@y/2?t=1.", "two: http://x/1 and https://y/2?…."),
    ("urlopen error <urlopen error [Errno 111] for 'https://u:p@h/m'>", "urlopen error <urlopen error [Errno 111] for 'https://h/m'>"),
    ("nothing to see here", "nothing to see here"),
    ("line1 https://u:p@h/a\nline2 https://h/b?q=1", "line1 https://h/a\nline2 https://h/b?…"),
])
def test_redact_text(text, shown):
    assert redact_text(text) == shown


def test_redacted_json_stays_json():
    doc = {"uri": "https://alice:PW@h/m.onnx?X-Amz-Signature=s", "message": "GET http://bob:pw@h/x: 404"}
    out = json.loads(redact_text(json.dumps(doc)))
    assert out == {"uri": "https://h/m.onnx?…", "message": "GET http://h/x: 404"}


def test_fingerprint_tells_apart_what_redaction_hides():
    a, b = "https://h/m.onnx?sig=1", "https://h/m.onnx?sig=2"
    assert redact_uri(a) == redact_uri(b)
    assert uri_fingerprint(a) != uri_fingerprint(b)
    assert uri_fingerprint(a) == uri_fingerprint(a) and len(uri_fingerprint(a)) == 64
    assert "sig" not in uri_fingerprint(a)


def test_log_records_are_redacted_with_their_arguments_and_tracebacks():
    logger = logging.getLogger("test-redact")
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        redact.install_log_redaction(logger)
        redact.install_log_redaction(logger)  # once is enough
        assert sum(isinstance(f, redact.RedactingFilter) for f in handler.filters) == 1
        logger.warning("fetching %s", "https://alice:PW@h/m.onnx?sig=s3cr3t")
        try:
            raise ValueError("bad https://bob:PW2@h/x?token=t0k")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "fetching https://h/m.onnx?…" in out
    assert "ValueError: bad https://h/x?…" in out
    for secret in ("PW", "s3cr3t", "alice", "bob", "t0k"):
        assert secret not in out
