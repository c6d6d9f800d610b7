"""The agent's HTTP API: the operator reads and sets the pod's model here.

- ``GET /v1/model`` -> 200 ``{"name", "served", "desired", "state", "message", "loadedVersions"}``;
  ``served``/``desired`` are ``{"version", "uri", "sha256"}`` or null (see ``agent.swap`` for states).
- ``PUT /v1/model`` with ``{"uri", "version", "sha256"?}`` -> 202 and the GET body (accepted: the swap
  runs in the background, or nothing was needed); 400 when the body is invalid, the message naming the
  field; 409 when the version number is served (or being loaded) from other files; 401 when a token is
  configured and the request does not carry it.
- ``GET /healthz`` -> 200 ``ok`` (the process answers; the model's state is in ``/v1/model``).

``PUT`` is idempotent: the operator may send the desired model on every reconcile. Only the request
parsing (:func:`parse_model_request`) is logic; the handler maps outcomes to status codes.

A PUT makes the pod fetch from a URI with the pod's credentials, so when ``MODELDEPLOY_AGENT_TOKEN``
is set (a Secret), PUT requires ``Authorization: Bearer <token>``; GET stays open (it shows URIs as
the spec has them, no credentials).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from modeldeploy.agent.swap import Decision, ModelRef
from modeldeploy.fetch.errors import InvalidURI
from modeldeploy.fetch.uri import parse_uri

log = logging.getLogger("modeldeploy.agent")

MODEL_PATH = "/v1/model"
HEALTH_PATH = "/healthz"
TOKEN_ENV = "MODELDEPLOY_AGENT_TOKEN"
MAX_BODY = 64 * 1024
FIELDS = ("uri", "version", "sha256")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Agent(Protocol):
    """What the API needs (``agent.swap.Swapper``; a fake in tests)."""

    def snapshot(self) -> dict[str, Any]: ...

    def submit(self, ref: ModelRef) -> Decision: ...


class RequestError(ValueError):
    """A PUT body that cannot be accepted; ``field`` names the culprit, ``str()`` is the 400 message."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


def parse_model_request(body: bytes) -> ModelRef:
    """The body of ``PUT /v1/model`` as a ModelRef; RequestError names the first bad field.

    >>> parse_model_request(b'{"uri": "s3://b/m.onnx", "version": 2, "sha256": "' + b"AB" * 32 + b'"}').sha256[:4]
    'abab'
    >>> parse_model_request(b'{"uri": "s3://b/m.onnx", "version": "2"}')
    Traceback (most recent call last):
    ...
    modeldeploy.agent.api.RequestError: version: must be an integer >= 1, got '2'
    """
    try:
        data = json.loads(body or b"null")
    except ValueError as err:
        raise RequestError("body", f"not JSON ({err})") from None
    if not isinstance(data, dict):
        raise RequestError("body", "must be a JSON object with uri, version and optionally sha256")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
    uri = data.get("uri")
    if not isinstance(uri, str) or not uri:
        raise RequestError("uri", "required, a non-empty string")
    try:
        parse_uri(uri)
    except InvalidURI as err:
        raise RequestError("uri", str(err)) from None
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RequestError("version", f"must be an integer >= 1, got {version!r}")
    sha256 = data.get("sha256")
    if sha256 is not None:
        if not isinstance(sha256, str) or not _SHA256.match(sha256.lower()):
            raise RequestError("sha256", f"must be 64 hex digits, got {sha256!r}")
        sha256 = sha256.lower()
    return ModelRef(version=version, uri=uri, sha256=sha256)


class Handler(BaseHTTPRequestHandler):
    server: "AgentServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: Any) -> None:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message})

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == HEALTH_PATH:
            self._send(200, "ok")
        elif self.path == MODEL_PATH:
            self._send(200, self.server.agent.snapshot())
        else:
            self._error(404, f"no such path {self.path}: use {MODEL_PATH} or {HEALTH_PATH}")

    def do_PUT(self) -> None:  # noqa: N802
        if self.path != MODEL_PATH:
            self._error(404 if self.path != HEALTH_PATH else 405, f"PUT is for {MODEL_PATH}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._error(400, f"body: Content-Length must be 0..{MAX_BODY}")
            return
        body = self.rfile.read(length)
        token = self.server.token
        if token and not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
            self._error(401, f"PUT {MODEL_PATH} needs Authorization: Bearer <token> (the agent's {TOKEN_ENV})")
            return
        try:
            ref = parse_model_request(body)
        except RequestError as err:
            self._error(400, str(err))
            return
        decision = self.server.agent.submit(ref)
        if decision.status != 202:
            self._error(decision.status, decision.message)
            return
        self._send(202, self.server.agent.snapshot())

    def do_POST(self) -> None:  # noqa: N802
        self._error(405, f"use GET or PUT {MODEL_PATH}")

    do_DELETE = do_PATCH = do_POST


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], agent: Agent, token: str | None = None):
        super().__init__(address, Handler)
        self.agent = agent
        self.token = token or None
