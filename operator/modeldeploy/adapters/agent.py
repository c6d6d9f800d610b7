"""HTTP client of the model agent sidecar (modeldeploy/agent/): GET and PUT ``/v1/model`` of one pod.

Where a pod's agent is: ``http://<pod IP>:8009``, on a cluster and in the sandbox alike (the sandbox's pod
runner gives each pod its own address); the operator knows nothing else about where pods run.

Errors come back as values (``AgentError``) with a one-line cause, because an unreachable agent is a
status fact (reported per pod), not an operator failure.

A PUT is signed with the ModelDeployment's agent token and bound to the agent's current nonce, read by
a GET just before (api/agent_auth.py): the token never travels, and a captured request is good for
nothing once the agent has accepted it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Mapping

from modeldeploy.api import agent_auth
from modeldeploy.api.redact import redact_text

AGENT_PORT = 8009
MODEL_PATH = "/v1/model"


class AgentError(RuntimeError):
    pass


def endpoint(pod: Mapping[str, Any], port: int = AGENT_PORT) -> str | None:
    """Base URL of the pod's agent, or None when the pod has no address yet.

    >>> endpoint({"metadata": {}, "status": {"podIP": "10.244.3.7"}})
    'http://10.244.3.7:8009'
    >>> endpoint({"metadata": {}, "status": {"podIP": "fd00::7"}})
    'http://[fd00::7]:8009'
    >>> endpoint({"metadata": {}, "status": {}}) is None
    True
    """
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}"


class AgentClient:
    def __init__(self, timeout: float = 3.0):
        self.timeout = timeout

    def _request(self, url: str, method: str, body: Mapping[str, Any] | None = None,
                 token: str | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body, sort_keys=True).encode()
        req = urllib.request.Request(url + MODEL_PATH, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token and data is not None:
            req.add_header("Authorization", agent_auth.authorization(token, method, MODEL_PATH, data))
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                detail = json.loads(err.read() or b"{}").get("error", "")
            except ValueError:
                detail = ""
            raise AgentError(redact_text(f"{method} {MODEL_PATH}: HTTP {err.code}: {detail}".rstrip(": "))) from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise AgentError(f"{method} {MODEL_PATH}: {reason}") from None

    def get(self, base: str) -> dict[str, Any]:
        return self._request(base, "GET")

    def put(self, base: str, desired: Mapping[str, Any], token: str | None = None) -> dict[str, Any]:
        """Tell the agent at ``base`` to serve ``desired`` (policy/model_swap.Desired.body()). With a token,
        the request is signed and carries the nonce the agent shows right now."""
        body = dict(desired)
        if token:
            nonce = self.get(base).get("nonce")
            if not isinstance(nonce, str) or not nonce:
                raise AgentError(f"GET {MODEL_PATH}: no nonce in the answer (an agent older than this operator?)")
            body["nonce"] = nonce
        return self._request(base, "PUT", body, token)
