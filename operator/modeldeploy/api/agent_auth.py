"""How the operator proves that a command to a pod's model agent is its own, fresh, and meant for that pod.

Why not a bearer token: the agent's port is reached over the pod network without TLS, so a token sent
with every request can be read off the wire, and a captured request can be replayed later (an outside
review reverted a pod to an old model that way while status said the new one). Instead, the contract
between ``adapters/agent.py`` (the operator) and ``agent/api.py`` (the sidecar) is:

- **Signed, never sent**: a ``PUT`` carries ``Authorization: HMAC-SHA256 <hex>``, the HMAC-SHA256 of
  ``"PUT /v1/model\\n" + body`` keyed with the per-ModelDeployment token (Secret ``<name>-agent-keys``).
  The token itself stays in the operator and the Secret; a changed body breaks the signature.
- **Bound to one use on one pod**: the body carries the agent's current ``nonce``, which the agent shows
  in ``GET /v1/model`` and replaces with a new random one after every signed PUT it accepts. A captured
  request therefore works at most once, and never on another pod (each agent has its own nonce).
- **Ordered**: the body may carry the ModelDeployment's ``generation``; the agent refuses a command older
  than one it already accepted, so a delayed request cannot undo a newer one.
- **Rotatable**: the agent reads its tokens from the mounted Secret on every PUT (``token``, and
  ``previous-token`` while a rotation settles), so a rotated token needs no restart.

Trade-off: the operator GETs each pod before it PUTs (it does anyway to decide what to send); PUTs are
rare (one per pod per model change). Pure: no I/O here.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable

SCHEME = "HMAC-SHA256"


def signature(token: str, method: str, path: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<METHOD> <path>\\n" + body`` keyed with ``token``.

    >>> signature("t0ken", "PUT", "/v1/model", b'{"version": 2}')[:16]
    '407a7b956de3b073'
    """
    message = f"{method.upper()} {path}\n".encode() + body
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def authorization(token: str, method: str, path: str, body: bytes) -> str:
    """The ``Authorization`` header value of a signed request."""
    return f"{SCHEME} {signature(token, method, path, body)}"


def verify(header: str | None, tokens: Iterable[str], method: str, path: str, body: bytes) -> bool:
    """True when ``header`` is a valid signature of the request with one of ``tokens``. A header that is
    missing, of another scheme, or not ASCII (which ``hmac.compare_digest`` would refuse to compare) is
    simply not valid: the caller answers 401, it never drops the connection.

    >>> body = b'{"version": 2}'
    >>> verify(authorization("a", "PUT", "/v1/model", body), ["b", "a"], "PUT", "/v1/model", body)
    True
    >>> verify(authorization("a", "PUT", "/v1/model", body), ["a"], "PUT", "/v1/model", body + b" ")
    False
    >>> verify("HMAC-SHA256 é", ["a"], "PUT", "/v1/model", body), verify("Bearer a", ["a"], "PUT", "/v1/model", body)
    (False, False)
    """
    if not header or not header.isascii():
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme != SCHEME or not given:
        return False
    given = given.strip().lower()
    return any(hmac.compare_digest(given, signature(token, method, path, body)) for token in tokens if token)


# --- Triton's own control API ---------------------------------------------------------------------------
#: Triton API groups only the model agent may call (``--http-restricted-api`` / ``--grpc-restricted-protocol``):
#: loading and unloading models (a load with a file override runs code in the pod), their configuration,
#: shared memory, tracing and logging. Inference, health, metadata and statistics stay open to clients.
TRITON_RESTRICTED_APIS = ("model-repository", "model-config", "shared-memory", "trace", "logging")
#: The header Triton checks on those calls over HTTP (lower case: gRPC metadata keys must be).
TRITON_KEY_HEADER = "modeldeploy-triton-key"
#: Over gRPC Triton expects the key with a prefix of its own (found on Triton 2.51: "This protocol is
#: restricted, expecting header 'triton-grpc-protocol-<key>'").
TRITON_GRPC_KEY_HEADER = f"triton-grpc-protocol-{TRITON_KEY_HEADER}"
#: The environment variable that carries its value into the Triton and agent containers (from the Secret
#: ``<name>-agent-keys``, key :data:`TRITON_KEY_SECRET_KEY`); Triton gets it through ``$(VAR)`` in its args.
TRITON_KEY_ENV = "MODELDEPLOY_TRITON_API_KEY"
TRITON_KEY_SECRET_KEY = "triton-key"
#: The Secret key that holds the token a rotation replaced, which the agents still accept while the
#: rotation settles (agent/api.py reads it beside ``token``).
PREVIOUS_TOKEN_SECRET_KEY = "previous-token"


def triton_restriction_args(value: str) -> list[str]:
    """Triton 2.51 flags that restrict :data:`TRITON_RESTRICTED_APIS` to requests carrying the header
    :data:`TRITON_KEY_HEADER` with ``value`` (syntax checked against the real binary: ``<apis>:<key>=<value>``).

    >>> triton_restriction_args("$(K)")[0]
    '--http-restricted-api=model-repository,model-config,shared-memory,trace,logging:modeldeploy-triton-key=$(K)'
    """
    spec = f"{','.join(TRITON_RESTRICTED_APIS)}:{TRITON_KEY_HEADER}={value}"
    return [f"--http-restricted-api={spec}", f"--grpc-restricted-protocol={spec}"]
