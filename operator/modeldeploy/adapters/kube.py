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
from typing import Any, Iterator, Mapping

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from modeldeploy.adapters.informer import json_lines
from modeldeploy.api import agent_auth
from modeldeploy.api import constants as c

from modeldeploy import __version__

USER_AGENT = f"modeldeploy-operator/{__version__}"
#: Custom resources the operator writes: kind -> (group, version, plural).
CUSTOM_KINDS = {"HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes")}
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

    def _fns(self, kind: str) -> tuple[Any, Any, Any, Any]:
        """(create, patch, read, delete) of the typed client for ``kind``, with the typed clients'
        argument order (custom resources such as HTTPRoute are adapted to it)."""
        if kind in CUSTOM_KINDS:
            return self._custom_fns(*CUSTOM_KINDS[kind])
        core, apps, batch = self.core, self.apps, self.batch
        return {
            "ConfigMap": (core.create_namespaced_config_map, core.patch_namespaced_config_map,
                          core.read_namespaced_config_map, core.delete_namespaced_config_map),
            "Secret": (core.create_namespaced_secret, core.patch_namespaced_secret,
                       core.read_namespaced_secret, core.delete_namespaced_secret),
            "Service": (core.create_namespaced_service, core.patch_namespaced_service,
                        core.read_namespaced_service, core.delete_namespaced_service),
            "Deployment": (apps.create_namespaced_deployment, apps.patch_namespaced_deployment,
                           apps.read_namespaced_deployment, apps.delete_namespaced_deployment),
            "Job": (batch.create_namespaced_job, batch.patch_namespaced_job,
                    batch.read_namespaced_job, batch.delete_namespaced_job),
        }[kind]

    def _custom_fns(self, group: str, version: str, plural: str) -> tuple[Any, Any, Any, Any]:
        custom = self.custom
        return (
            lambda namespace, body, **kw: custom.create_namespaced_custom_object(group, version, namespace, plural,
                                                                                 body, **kw),
            lambda name, namespace, body, **kw: custom.patch_namespaced_custom_object(group, version, namespace,
                                                                                      plural, name, body, **kw),
            lambda name, namespace, **kw: custom.get_namespaced_custom_object(group, version, namespace, plural,
                                                                             name, **kw),
            lambda name, namespace, body=None, **kw: custom.delete_namespaced_custom_object(
                group, version, namespace, plural, name, body=body, **kw),
        )

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj``; returns the object as stored (with status, for a Deployment)."""
        meta = obj["metadata"]
        fn = self._fns(obj["kind"])[1]
        return self._call("apply", _describe(obj), fn, meta["name"], meta["namespace"], obj,
                          field_manager=self.field_manager, force=True, _content_type=APPLY)

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``obj``; ``KubeError`` with status 409 when an object of that name exists."""
        meta = obj["metadata"]
        fn = self._fns(obj["kind"])[0]
        return self._call("create", _describe(obj), fn, meta["namespace"], obj, field_manager=self.field_manager)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One uncached read (None when absent): only for objects the watches cannot show us."""
        return self._get(f"{kind} {namespace}/{name}", self._fns(kind)[2], name, namespace)

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete, only the object with ``uid`` when given (never a same-named object created since)."""
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            self._call("delete", f"{kind} {namespace}/{name}", self._fns(kind)[3], name, namespace, body=body)
        except KubeError as err:
            if err.status not in (404, 409):  # gone already, or a different object now: not ours to delete
                raise

    def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch a Secret of ours (the agent token's rotation)."""
        self._call("patch", f"Secret {namespace}/{name}", self.core.patch_namespaced_secret, name, namespace,
                   dict(patch), field_manager=self.field_manager, _content_type=MERGE)

    def scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Set a Deployment's replicas through its scale subresource (the stable Deployment while a canary
        runs: its template is not ours to re-render, only its size). Returns the Scale."""
        return self._call("scale", f"Deployment {namespace}/{name}", self.apps.patch_namespaced_deployment_scale,
                          name, namespace, {"spec": {"replicas": replicas}}, field_manager=self.field_manager,
                          _content_type=MERGE)

    def patch_model_deployment(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch a ModelDeployment's metadata (the operator only ever removes a handled
        rollout-command annotation this way)."""
        self._call("patch", f"{c.KIND} {namespace}/{name}", self.custom.patch_namespaced_custom_object,
                   c.GROUP, c.VERSION, namespace, c.PLURAL, name, dict(patch), _content_type=MERGE)

    def post_event(self, regarding: Mapping[str, Any], type_: str, reason: str, message: str,
                   now: str) -> None:
        """A core/v1 Event about ``regarding`` (an object with apiVersion/kind/metadata), as kubectl describe
        shows them. Best effort: an Event that cannot be posted is not worth failing a reconcile."""
        meta = regarding.get("metadata") or {}
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'x')}.", "namespace": meta.get("namespace")},
            "involvedObject": {"apiVersion": regarding.get("apiVersion", c.API_VERSION),
                               "kind": regarding.get("kind", c.KIND), "name": meta.get("name"),
                               "namespace": meta.get("namespace"), "uid": meta.get("uid")},
            "type": type_, "reason": reason, "message": message[:1024],
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "source": {"component": c.FIELD_MANAGER},
            "reportingComponent": c.FIELD_MANAGER,
        }
        try:
            self._call("create", f"Event for {meta.get('namespace')}/{meta.get('name')}",
                       self.core.create_namespaced_event, meta.get("namespace"), event)
        except KubeError:
            pass

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch ``status``; returns the ModelDeployment as stored, None when it is gone (404)."""
        try:
            return self._call("update status of", f"{c.KIND} {namespace}/{name}",
                   self.custom.patch_namespaced_custom_object_status,
                   c.GROUP, c.VERSION, namespace, c.PLURAL, name, {"status": status},
                   _content_type=MERGE)
        except KubeError as err:
            if err.status == 404:  # deleted meanwhile: the end of the object, not an error
                return None
            raise

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
                            extra_keys: tuple[str, ...] = (agent_auth.TRITON_KEY_SECRET_KEY,)) -> bool:
        """Create Secret ``name`` holding a random token under ``key`` and under each of ``extra_keys``
        (by default Triton's control-API key, which the serving pods need next to the agent's token),
        unless it exists (one request); True when created. Never re-applied: a re-apply would rotate
        the keys under running pods."""
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
            return False
        return True

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

    #: Items per page of :meth:`list_all` (a page is parsed and handed over before the next is read).
    PAGE = 500

    def _list_fn(self, kind: str, namespace: str | None) -> tuple[Any, tuple[Any, ...]]:
        """(list function, its positional arguments) for ``kind`` in ``namespace`` or cluster-wide."""
        custom = {c.KIND: (c.GROUP, c.VERSION, c.PLURAL), **CUSTOM_KINDS}
        if kind in custom:
            group, version, plural = custom[kind]
            if namespace:
                return self.custom.list_namespaced_custom_object, (group, version, namespace, plural)
            return self.custom.list_cluster_custom_object, (group, version, plural)
        api, name = {"Deployment": (self.apps, "deployment"), "Pod": (self.core, "pod"),
                     "Job": (self.batch, "job"), "ConfigMap": (self.core, "config_map"),
                     "Service": (self.core, "service")}[kind]
        if namespace:
            return getattr(api, f"list_namespaced_{name}"), (namespace,)
        return getattr(api, f"list_{name}_for_all_namespaces"), ()

    def list_page(self, kind: str, label_selector: str, namespace: str | None, token: str | None,
                  limit: int) -> dict[str, Any]:
        """One page of ``kind`` matching ``label_selector`` (``items``, ``metadata.continue`` and
        ``metadata.resourceVersion``). A kind whose CRD is not installed (the Gateway API's) is an empty list."""
        fn, args = self._list_fn(kind, namespace)
        extra = {"_continue": token} if token else {}
        try:
            return self._call("list", f"{kind}s" + (f" in {namespace}" if namespace else ""), fn, *args,
                              label_selector=label_selector, limit=limit, **extra) or {}
        except KubeError as err:
            if err.status == 404 and kind in CUSTOM_KINDS:
                return {"items": [], "metadata": {}}
            raise

    def list_all(self, kind: str, label_selector: str, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Every ``kind`` matching ``label_selector`` (in ``namespace``, or cluster-wide), a page of
        :data:`PAGE` per request: used once at start to fill the watch cache before the first reconcile."""
        token = None
        while True:
            out = self.list_page(kind, label_selector, namespace, token, self.PAGE)
            yield from out.get("items", [])
            token = (out.get("metadata") or {}).get("continue")
            if not token:
                return

    def watch_events(self, kind: str, label_selector: str, namespace: str | None, resource_version: str,
                     timeout_seconds: int) -> Iterator[dict[str, Any]]:
        """The events of one watch request from ``resource_version`` (bookmarks on), as the API server
        streams them; it ends when the server closes the request after ``timeout_seconds``. The client
        gives up reading 30 s later (a silently dropped connection; bookmarks arrive about once a minute)."""
        fn, args = self._list_fn(kind, namespace)
        self.requests += 1
        try:
            resp = fn(*args, label_selector=label_selector, resource_version=resource_version, watch=True,
                      allow_watch_bookmarks=True, timeout_seconds=timeout_seconds, _preload_content=False,
                      _request_timeout=(10, timeout_seconds + 30))
        except ApiException as exc:
            raise KubeError("watch", f"{kind}s" + (f" in {namespace}" if namespace else ""), exc) from exc
        try:
            yield from json_lines(iter_resp_lines(resp))
        finally:
            resp.close()
            resp.release_conn()

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        out = self._call("list", f"Pods in {namespace}", self.core.list_namespaced_pod, namespace,
                         label_selector=label_selector)
        return out.get("items", [])
