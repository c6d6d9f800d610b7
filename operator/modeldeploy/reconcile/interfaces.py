"""What the reconciler needs from the outside world, as narrow interfaces (Protocols).

The reconciler reads the cluster only through :class:`ClusterView` (the informer cache), writes only
through :class:`KubeWriter`, and talks to serving pods only through :class:`Agents`; metrics come
through :class:`modeldeploy.adapters.prometheus.MetricsProvider`. Tests pass in-memory fakes of
these; the operator passes adapters/cache.py, adapters/kube.py and adapters/agent.py. Keeping the
interfaces this small is what lets ``observe`` be "reads only" and ``act`` be "writes only".
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol


class ClusterView(Protocol):
    """Reads from the watch cache (no API request)."""

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def owned(self, kind: str, namespace: str, owner: str) -> list[dict[str, Any]]: ...

    def labelled(self, kind: str, namespace: str, label: str, value: str) -> list[dict[str, Any]]: ...

    def store(self, kind: str, obj: Mapping[str, Any]) -> bool: ...

    def delete(self, kind: str, namespace: str, name: str) -> None: ...


class KubeWriter(Protocol):
    """API requests: writes, and the few reads the cache cannot answer (objects that are not ours)."""

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None: ...

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any] | None: ...

    def create_job(self, job: Mapping[str, Any]) -> dict[str, Any]: ...

    def scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]: ...

    def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None: ...

    def patch_model_deployment(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None: ...

    def create_secret_token(self, namespace: str, name: str, key: str, owner_reference: Mapping[str, Any],
                            labels: Mapping[str, str]) -> bool: ...

    def stamp_pod_template(self, namespace: str, deployment: str, annotation: str, value: str) -> None: ...


class Agents(Protocol):
    """The model agents in serving pods (adapters/agent.py)."""

    def get(self, base: str) -> dict[str, Any]: ...

    def put(self, base: str, desired: Mapping[str, Any], token: str | None = None) -> dict[str, Any]: ...
