"""The leader-election Lease in the API server: read, create, update with optimistic concurrency. I/O only.

Why a separate client: the Lease is renewed from its own thread every couple of seconds, whatever
the reconcilers are doing, so it gets its own connection pool and a short request timeout (a renewal
that hangs must not outlive the renew deadline; the runner also has a watchdog for that).

Every update sends the ``resourceVersion`` that was read: if anyone wrote the Lease in between, the
API server answers 409 Conflict (:class:`LeaseConflict`) and nothing is written — two standbys that
decide to take over at the same moment cannot both succeed. A create of a Lease that exists is a
conflict too.

The ``kubernetes`` client is imported when a store is made, not with this module: the CLI builds its
argument parser (for every subcommand, including the ones that run in model-fetching containers)
from modules that import this one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from modeldeploy.policy.leader import Lease

#: Seconds before a Lease request is abandoned (connect, read): well inside the 7 s renew deadline.
REQUEST_TIMEOUT = 2.0


class LeaseConflict(RuntimeError):
    """Someone else wrote the Lease since it was read (409), or created it first."""


class LeaseError(RuntimeError):
    """Any other failure to read or write the Lease (network, 5xx, Forbidden): names the Lease."""


class LeaseStore(Protocol):
    """What the leader-election runner needs from the API server."""

    def get(self) -> Lease | None: ...

    def create(self, lease: Lease) -> Lease: ...

    def update(self, lease: Lease) -> Lease: ...


@dataclass
class KubeLeaseStore:
    """The Lease ``namespace/name`` through the ``kubernetes`` client ``api``."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str
    name: str
    timeout: float = REQUEST_TIMEOUT

    def __post_init__(self) -> None:
        from kubernetes import client

        self.coordination = client.CoordinationV1Api(self.api)

    @property
    def what(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    def _call(self, operation: str, fn, *args: Any) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404 and operation == "get":
                return None
            if exc.status == 409:
                raise LeaseConflict(f"{operation} {self.what}: written by someone else meanwhile") from exc
            detail = exc.body or exc.reason
            try:
                detail = json.loads(detail).get("message", detail)
            except (TypeError, ValueError, AttributeError):
                pass
            raise LeaseError(f"{operation} {self.what}: HTTP {exc.status}: {detail}") from exc
        except Exception as exc:  # noqa: BLE001 - urllib3 timeouts, connection errors: one error type out
            raise LeaseError(f"{operation} {self.what}: {exc.__class__.__name__}: {exc}") from exc
        return json.loads(resp.data) if resp.data else None

    def _body(self, lease: Lease) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if lease.resource_version:
            meta["resourceVersion"] = lease.resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": lease.spec()}

    def get(self) -> Lease | None:
        obj = self._call("get", self.coordination.read_namespaced_lease, self.name, self.namespace)
        return None if obj is None else Lease.from_object(obj)

    def create(self, lease: Lease) -> Lease:
        body = self._body(lease)
        body["metadata"].pop("resourceVersion", None)
        obj = self._call("create", self.coordination.create_namespaced_lease, self.namespace, body)
        return Lease.from_object(obj or {})

    def update(self, lease: Lease) -> Lease:
        """PUT with the resourceVersion read: a 409 if the Lease changed since."""
        if not lease.resource_version:
            raise ValueError(f"update {self.what}: no resourceVersion (read it first)")
        obj = self._call("update", self.coordination.replace_namespaced_lease, self.name, self.namespace,
                         self._body(lease))
        return Lease.from_object(obj or {})
