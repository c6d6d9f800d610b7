"""HTTP client of the model agent sidecar (modeldeploy/agent/): GET and PUT ``/v1/model`` of one pod.

Where a pod's agent is: ``http://<pod IP>:8009``, on a cluster and in the sandbox alike (the sandbox's pod
runner gives each pod its own address); the operator knows nothing else about where pods run.

Errors come back as values (``AgentError``) with a one-line cause, because an unreachable agent is a
status fact (reported per pod), not an operator failure.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Mapping

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
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url + MODEL_PATH, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                detail = json.loads(err.read() or b"{}").get("error", "")
            except ValueError:
                detail = ""
            raise AgentError(f"{method} {MODEL_PATH}: HTTP {err.code}: {detail}".rstrip(": ")) from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise AgentError(f"{method} {MODEL_PATH}: {reason}") from None

    def get(self, base: str) -> dict[str, Any]:
        return self._request(base, "GET")

    def put(self, base: str, desired: Mapping[str, Any], token: str | None = None) -> dict[str, Any]:
        return self._request(base, "PUT", desired, token)
