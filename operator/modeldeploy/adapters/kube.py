"""Kubernetes I/O for the reconciler: server-side apply, status writes, and the few reads it needs.

Every write of a child object is a server-side apply with one field manager and ``force=True``:
the API server merges, a repeated apply of the same object is a no-op, and a manual edit of a field
we manage is taken back on the next reconcile. Errors are re-raised as ``KubeError`` naming the
object and operation, so status messages say what failed.

The client is the synchronous ``kubernetes`` client; Kopf runs sync handlers in its thread pool,
so nothing here blocks the event loop.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any, Mapping

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modeldeploy.api import agent_auth
from modeldeploy.api import constants as c

from modeldeploy import __version__

USER_AGENT = f"modeldeploy-operator/{__version__}"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


class KubeError(RuntimeError):
    """A failed API call; ``status`` is the HTTP status (0 when unknown)."""

    def __init__(self, operation: str, obj: str, exc: Exception):
        status = getattr(exc, "status", 0) or 0
        detail = getattr(exc, "body", None) or str(exc)
        try:
            detail = json.loads(detail).get("message", detail)
        except (TypeError, ValueError, AttributeError):
            pass
        super().__init__(f"{operation} {obj}: {detail}")
        self.status = status


def _describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"


class Kube:
    """The narrow interface the reconciler uses. ``requests`` counts API calls made (for benchmarks)."""

    def __init__(self, api_client: client.ApiClient | None = None, field_manager: str = c.FIELD_MANAGER):
        self.api = api_client or client.ApiClient()
        self.api.user_agent = USER_AGENT  # tells our requests apart in audit logs
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.field_manager = field_manager
        self.requests = 0

    def _call(self, operation: str, what: str, fn, *args, **kwargs) -> Any:
        self.requests += 1
        try:
            resp = fn(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise KubeError(operation, what, exc) from exc
        return json.loads(resp.data) if resp.data else None

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj``; returns the object as stored (with status, for a Deployment)."""
        meta = obj["metadata"]
        fn = {
            "ConfigMap": self.core.patch_namespaced_config_map,
            "Service": self.core.patch_namespaced_service,
            "Deployment": self.apps.patch_namespaced_deployment,
        }[obj["kind"]]
        return self._call("apply", _describe(obj), fn, meta["name"], meta["namespace"], obj,
                          field_manager=self.field_manager, force=True, _content_type=APPLY)

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self._call("update status of", f"{c.KIND} {namespace}/{name}",
                   self.custom.patch_namespaced_custom_object_status,
                   c.GROUP, c.VERSION, namespace, c.PLURAL, name, {"status": status},
                   _content_type=MERGE)

    def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("get", f"{c.KIND} {namespace}/{name}", self.custom.get_namespaced_custom_object,
                              c.GROUP, c.VERSION, namespace, c.PLURAL, name)
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def list_config_maps(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        out = self._call("list", f"ConfigMaps in {namespace}", self.core.list_namespaced_config_map,
                         namespace, label_selector=label_selector)
        return out.get("items", [])

    def delete_config_map(self, namespace: str, name: str) -> None:
        try:
            self._call("delete", f"ConfigMap {namespace}/{name}", self.core.delete_namespaced_config_map,
                       name, namespace)
        except KubeError as err:
            if err.status != 404:
                raise

    def _get(self, what: str, fn, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self._call("get", what, fn, name, namespace)
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(f"Deployment {namespace}/{name}", self.apps.read_namespaced_deployment, name, namespace)

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(f"ConfigMap {namespace}/{name}", self.core.read_namespaced_config_map, name, namespace)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(f"Job {namespace}/{name}", self.batch.read_namespaced_job, name, namespace)

    def create_job(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``job``; when one of that name exists already (another reconcile, an operator that
        died after creating it), return the existing one: Job specs are immutable, never re-applied."""
        meta = job["metadata"]
        try:
            return self._call("create", _describe(job), self.batch.create_namespaced_job, meta["namespace"], job,
                              field_manager=self.field_manager)
        except KubeError as err:
            if err.status != 409:
                raise
        existing = self.get_job(meta["namespace"], meta["name"])
        if existing is None:
            raise KubeError("create", _describe(job), RuntimeError("exists, then vanished; will retry"))
        return existing

    def create_secret_token(self, namespace: str, name: str, key: str, owner_reference: Mapping[str, Any],
                            labels: Mapping[str, str],
                            extra_keys: tuple[str, ...] = (agent_auth.TRITON_KEY_SECRET_KEY,)) -> None:
        """Create Secret ``name`` holding a random token under ``key`` and under each of ``extra_keys``
        (by default Triton's control-API key, which the serving pods need next to the agent's token),
        unless it exists (one request). Never re-applied: a re-apply would rotate the token under
        running pods."""
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                             "ownerReferences": [dict(owner_reference)]},
                "stringData": {k: secrets.token_urlsafe(32) for k in (key, *extra_keys)}}
        try:
            self._call("create", _describe(body), self.core.create_namespaced_secret, namespace, body,
                       field_manager=self.field_manager)
        except KubeError as err:
            if err.status != 409:
                raise

    def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        """The decoded value of ``key`` in Secret ``name``; None when the Secret or the key is missing."""
        secret = self._get(f"Secret {namespace}/{name}", self.core.read_namespaced_secret, name, namespace)
        data = ((secret or {}).get("data") or {}).get(key)
        return base64.b64decode(data).decode() if data else None

    def stamp_pod_template(self, namespace: str, deployment: str, annotation: str, value: str) -> None:
        """Set one pod-template annotation with a field manager of its own (a rolling restart, like
        ``kubectl rollout restart``): the main apply does not own it, so it neither removes it nor
        conflicts with it. The same value again is a no-op."""
        obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": deployment, "namespace": namespace},
               "spec": {"template": {"metadata": {"annotations": {annotation: value}}}}}
        self._call("restart", _describe(obj), self.apps.patch_namespaced_deployment, deployment, namespace, obj,
                   field_manager=c.RESTART_FIELD_MANAGER, force=True, _content_type=APPLY)

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        out = self._call("list", f"Pods in {namespace}", self.core.list_namespaced_pod, namespace,
                         label_selector=label_selector)
        return out.get("items", [])
