"""The :class:`~modeldeploy.agent.swap.Triton` port on ``tritonclient``: reads over HTTP, model control over gRPC.

Why two protocols: a load over HTTP holds one of Triton's HTTP worker threads until the model is
loaded, and in our measurements (Triton 2.51) every HTTP inference request sent meanwhile waited for
it in most runs: a stall as long as the load (1.4-2 s for the digits model; a large model on a GPU
takes tens of seconds, longer than many clients' timeouts, and the kubelet's readiness probe goes to
the same port). The same load over gRPC stalled nothing (max latency 0.1 s). So ``load`` goes to
the gRPC port when ``tritonclient[grpc]`` is installed and a gRPC address is given, else over HTTP.

A client is created per call: tritonclient's HTTP client is gevent-based and must not be shared
between threads, and the agent calls Triton a few times per swap, not per request.

Triton's control API (repository index, model config, load) is restricted in the serving pod to
requests carrying a key header (api/agent_auth.py): the agent, the only holder of the key besides
Triton, sends it on every call of those groups.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from modeldeploy.agent.swap import TritonError, VersionStates
from modeldeploy.api.agent_auth import TRITON_GRPC_KEY_HEADER, TRITON_KEY_HEADER

log = logging.getLogger("modeldeploy.agent")


def grpc_available() -> bool:
    try:
        import tritonclient.grpc  # noqa: F401
    except ImportError:
        return False
    return True


class TritonAdapter:
    def __init__(self, http_url: str, grpc_url: str | None = None, *, load_timeout: float = 600.0,
                 timeout: float = 10.0, key: str | None = None):
        self.http_url = http_url
        self.grpc_url = grpc_url if grpc_url and grpc_available() else None
        if grpc_url and not self.grpc_url:
            log.warning("tritonclient[grpc] is not installed: model loads go over HTTP, which can delay "
                        "HTTP inference requests while a model loads")
        self.load_timeout = load_timeout
        self.timeout = timeout
        self.key = key
        #: Headers (HTTP) and metadata (gRPC) for Triton's restricted API groups.
        self.headers = {TRITON_KEY_HEADER: key} if key else None
        self.grpc_headers = {TRITON_GRPC_KEY_HEADER: key} if key else None

    def _http(self, network_timeout: float | None = None):
        import tritonclient.http as th

        return th.InferenceServerClient(self.http_url, connection_timeout=self.timeout,
                                        network_timeout=network_timeout or self.timeout)

    def version_states(self, name: str) -> VersionStates:
        from tritonclient.utils import InferenceServerException

        client = self._http()
        try:
            index = client.get_model_repository_index(headers=self.headers)
        except (InferenceServerException, OSError) as err:
            raise TritonError(f"repository index: {err}") from None
        finally:
            client.close()
        return {int(e["version"]): (e.get("state", ""), e.get("reason", ""))
                for e in index if e.get("name") == name and str(e.get("version", "")).isdigit()}

    def served_config(self, name: str) -> dict[str, Any]:
        from tritonclient.utils import InferenceServerException

        client = self._http()
        try:
            return client.get_model_config(name, headers=self.headers)
        except (InferenceServerException, OSError) as err:
            raise TritonError(f"config of model {name}: {err}") from None
        finally:
            client.close()

    def is_ready(self, name: str, version: int) -> bool:
        from tritonclient.utils import InferenceServerException

        client = self._http()
        try:
            return bool(client.is_model_ready(name, str(version)))
        except (InferenceServerException, OSError):
            return False
        finally:
            client.close()

    def load(self, name: str, config: dict[str, Any]) -> None:
        from tritonclient.utils import InferenceServerException

        body = json.dumps(config)
        try:
            if self.grpc_url:
                import tritonclient.grpc as tg

                client = tg.InferenceServerClient(self.grpc_url)
                try:
                    client.load_model(name, config=body, headers=self.grpc_headers,
                                      client_timeout=self.load_timeout)
                finally:
                    client.close()
            else:
                client = self._http(network_timeout=self.load_timeout)
                try:
                    client.load_model(name, config=body, headers=self.headers)
                finally:
                    client.close()
        except (InferenceServerException, OSError) as err:
            raise TritonError(str(err)) from None
