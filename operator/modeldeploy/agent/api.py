"""The agent's HTTP API: the operator reads and sets the pod's model here.

- ``GET /v1/model`` -> 200 ``{"name", "served", "desired", "state", "message", "loadedVersions", "nonce"}``;
  ``served``/``desired`` are ``{"version", "uri", "sha256", "uriFingerprint"}`` or null (see ``agent.swap``
  for states). URIs and the message are shown without credentials or query strings (api/redact.py);
  ``uriFingerprint`` (SHA-256 of the whole URI) lets the operator compare what redaction hides.
- ``PUT /v1/model`` with ``{"uri", "version", "sha256"?, "nonce", "generation"?}`` -> 202 and the GET
  body (accepted: the swap runs in the background, or nothing was needed); 400 when the body is invalid,
  the message naming the field; 401 when the request is not signed with the agent's token; 409 when the
  version number is served (or being loaded) from other files, or the command is stale (a used or
  unknown ``nonce``, a ``generation`` older than one accepted).
- ``GET /healthz`` -> 200 ``ok`` (the process answers; the model's state is in ``/v1/model``).

``PUT`` is idempotent: the operator may send the desired model on every reconcile. A PUT makes the pod
fetch from a URI with the pod's credentials, so when the agent has a token (``--token-file``, the mounted
Secret, or ``MODELDEPLOY_AGENT_TOKEN``) a PUT must be signed with it and bound to the agent's current
nonce, which changes after every accepted PUT: the token never travels, and a captured request cannot be
replayed (the protocol and why: api/agent_auth.py). An agent configured with a token file that is
missing or empty accepts no PUT at all. Every answer, including a 401 for a malformed (e.g. non-ASCII)
``Authorization`` header, is a complete HTTP response; the connection is never just dropped.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from modeldeploy.agent.swap import Decision, ModelRef
from modeldeploy.api import agent_auth
from modeldeploy.api.redact import redact_text, redact_uri, uri_fingerprint
from modeldeploy.fetch.errors import InvalidURI
from modeldeploy.fetch.uri import parse_uri

log = logging.getLogger("modeldeploy.agent")

MODEL_PATH = "/v1/model"
HEALTH_PATH = "/healthz"
TOKEN_ENV = "MODELDEPLOY_AGENT_TOKEN"
#: Next to the token file while a rotation settles: the token before, still accepted.
PREVIOUS_TOKEN_FILE = agent_auth.PREVIOUS_TOKEN_SECRET_KEY
MAX_BODY = 64 * 1024
FIELDS = ("uri", "version", "sha256", "generation", "nonce")
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


@dataclass(frozen=True)
class Command:
    """A parsed ``PUT /v1/model``: the model wanted, and what binds the command (see api/agent_auth.py)."""

    ref: ModelRef
    nonce: str | None = None
    generation: int | None = None


class TokenSource:
    """The tokens a signed PUT may use, read at every call: the mounted Secret's ``token`` file (and
    ``previous-token`` beside it during a rotation), or a fixed token (``MODELDEPLOY_AGENT_TOKEN``)."""

    def __init__(self, static: str | None = None, path: str | None = None):
        self.static = static or None
        self.path = path or None

    @property
    def configured(self) -> bool:
        return bool(self.static or self.path)

    def __call__(self) -> list[str]:
        tokens = []
        if self.path:
            current = Path(self.path)
            for candidate in (current, current.with_name(PREVIOUS_TOKEN_FILE)):
                try:
                    value = candidate.read_text().strip()
                except OSError:
                    continue
                if value and value not in tokens:
                    tokens.append(value)
        if self.static and self.static not in tokens:
            tokens.append(self.static)
        return tokens


def _integer(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(name, f"must be an integer >= 1, got {value!r}")
    return value


def parse_model_request(body: bytes) -> Command:
    """The body of ``PUT /v1/model`` as a Command; RequestError names the first bad field.

    >>> parse_model_request(b'{"uri": "s3://b/m.onnx", "version": 2, "sha256": "' + b"AB" * 32 + b'"}').ref.sha256[:4]
    'abab'
    >>> parse_model_request(b'{"uri": "s3://b/m.onnx", "version": 2, "nonce": "n1", "generation": 7}').generation
    7
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
    generation = _integer(data, "generation")
    nonce = data.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise RequestError("nonce", f"must be a string (from GET {MODEL_PATH}), got {nonce!r}")
    return Command(ModelRef(version=version, uri=uri, sha256=sha256), nonce=nonce, generation=generation)


def public_view(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """What ``GET /v1/model`` shows of a swapper snapshot: URIs redacted, each with its fingerprint, the
    message redacted. The agent keeps the whole URI (it fetches from it); nobody else needs to see it.

    >>> v = public_view({"served": {"version": 1, "uri": "https://u:p@h/m?sig=1", "sha256": None},
    ...                  "desired": None, "message": "GET https://u:p@h/m?sig=1: 403"})
    >>> v["served"]["uri"], v["message"], len(v["served"]["uriFingerprint"])
    ('https://h/m?…', 'GET https://h/m?…: 403', 64)
    """
    out = dict(snapshot)
    for key in ("served", "desired"):
        ref = out.get(key)
        if ref:
            uri = ref.get("uri")
            out[key] = {**ref, "uri": redact_uri(uri) if uri else uri,
                        "uriFingerprint": uri_fingerprint(uri) if uri else None}
    if out.get("message"):
        out["message"] = redact_text(str(out["message"]))
    return out


class Handler(BaseHTTPRequestHandler):
    server: "AgentServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s %s", self.address_string(), redact_text(format % args))

    def _send(self, status: int, body: Any) -> None:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": redact_text(message)})

    def _model(self) -> dict[str, Any]:
        return {**public_view(self.server.agent.snapshot()), "nonce": self.server.nonce}

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == HEALTH_PATH:
            self._send(200, "ok")
        elif self.path == MODEL_PATH:
            self._send(200, self._model())
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
        server = self.server
        tokens = server.tokens()
        signed = server.require_auth or bool(tokens)
        if signed and not agent_auth.verify(self.headers.get("Authorization"), tokens, "PUT", MODEL_PATH, body):
            self._error(401, f"PUT {MODEL_PATH} needs Authorization: {agent_auth.SCHEME} <signature of the body "
                             "with the agent's token> (modeldeploy/api/agent_auth.py)")
            return
        try:
            command = parse_model_request(body)
        except RequestError as err:
            self._error(400, str(err))
            return
        stale = server.accept(command, signed)
        if stale:
            self._error(409, stale)
            return
        decision = server.agent.submit(command.ref)
        if decision.status != 202:
            self._error(decision.status, decision.message)
            return
        self._send(202, self._model())

    def do_POST(self) -> None:  # noqa: N802
        self._error(405, f"use GET or PUT {MODEL_PATH}")

    do_DELETE = do_PATCH = do_POST


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], agent: Agent,
                 tokens: TokenSource | Callable[[], Sequence[str]] | None = None):
        super().__init__(address, Handler)
        self.agent = agent
        self.tokens: Callable[[], Sequence[str]] = tokens or (lambda: [])
        #: A token was configured: PUTs must be signed even when the token file is missing (fail closed).
        self.require_auth = bool(getattr(tokens, "configured", False))
        self.nonce = secrets.token_hex(16)
        self.generation: int | None = None  # the highest generation accepted
        self._lock = threading.Lock()

    def accept(self, command: Command, signed: bool) -> str | None:
        """Bind ``command`` to this agent: with a signature, its nonce must be the current one (which is
        then replaced); a generation must not be older than one accepted. Returns why it is stale, or None."""
        with self._lock:
            if signed:
                if not command.nonce:
                    return f"nonce: required with a signature; take the current one from GET {MODEL_PATH}"
                if command.nonce != self.nonce:
                    return f"nonce: stale command (a used or unknown nonce); GET {MODEL_PATH} for the current one"
            if command.generation is not None and self.generation is not None and command.generation < self.generation:
                return (f"generation: stale command: generation {command.generation} is older than "
                        f"{self.generation}, already accepted")
            if signed:
                self.nonce = secrets.token_hex(16)
            if command.generation is not None:
                self.generation = max(command.generation, self.generation or 0)
        return None
