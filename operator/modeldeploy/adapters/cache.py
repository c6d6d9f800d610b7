"""The operator's informer cache: the objects it manages, as its watches last delivered them.

Why: a reconcile that GETs or LISTs what it needs costs API requests on every event; with hundreds of
ModelDeployments that is most of the operator's load on the API server (controller-runtime operators
read from shared informer caches for the same reason). Kopf already watches these kinds for the
handlers; every event it delivers is stored here, and the reconciler's ``observe`` step reads only
from here. Our own writes are stored too (the API server's answer to an apply or create), so a
reconcile that runs before the watch event arrives does not see its own past.

What is kept, to bound memory (1,000 ModelDeployments means thousands of pods and ConfigMaps): only the
fields the reconciler reads (:func:`slim`), and only objects labelled as ours (the watches filter on
``app.kubernetes.io/managed-by``). A label is not proof of ownership — another tenant can set it — so
readers check the controller owner reference (:func:`owned_by`) before trusting an object.

Staleness rule: an object replaces the cached one only if its ``resourceVersion`` is not older (the
API server's resourceVersions are etcd revisions; compared as integers, falling back to "newer" when
one is not a number, as the Kubernetes docs ask clients not to rely on their format).
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Mapping

from modeldeploy.api import constants as c

Key = tuple[str, str, str]  # (kind, namespace, name)

_META_KEYS = ("name", "namespace", "uid", "generation", "resourceVersion", "labels", "annotations",
              "ownerReferences", "deletionTimestamp", "creationTimestamp")
_SPEC_KEYS = {
    "Deployment": ("replicas", "selector", "template"),
    "Service": ("selector",),
    "Pod": ("nodeName",),
    "Job": (),
    "ConfigMap": (),
    "Secret": (),
}


#: Where :func:`slim` keeps who, besides the API server's status writers, manages the object's fields.
WRITERS = "_writers"


def writers(obj: Mapping[str, Any]) -> list[str]:
    """Field managers that own fields outside ``metadata`` of the object itself (status subresource writes,
    and the controllers' metadata-only bookkeeping such as a Deployment's revision annotation, excluded).

    A child whose only such writer is the operator has not been edited by anyone else since: the operator
    can trust an unchanged desired form without re-applying it, also after a restart (reconcile/act.py).

    >>> writers({"metadata": {"managedFields": [
    ...     {"manager": "modeldeploy-operator", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
    ...     {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}},
    ...     {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:metadata": {}}},
    ...     {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]}})
    ['kubectl-edit', 'modeldeploy-operator']
    """
    if WRITERS in obj:
        return list(obj[WRITERS])
    out = set()
    for entry in (obj.get("metadata") or {}).get("managedFields") or ():
        if entry.get("subresource"):
            continue
        if any(key != "f:metadata" for key in (entry.get("fieldsV1") or {})):
            out.add(entry.get("manager", ""))
    return sorted(out)


def slim(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``obj`` the reconciler reads; the rest (managedFields, pod specs, …) is dropped.

    >>> slim("Pod", {"metadata": {"name": "p", "managedFields": [{}]}, "spec": {"containers": [], "nodeName": "n"},
    ...              "status": {"phase": "Running"}})
    {'metadata': {'name': 'p'}, '_writers': [], 'spec': {'nodeName': 'n'}, 'status': {'phase': 'Running'}}
    """
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {"metadata": {k: meta[k] for k in _META_KEYS if k in meta}}
    if kind != c.KIND:
        out[WRITERS] = writers(obj)
    if kind in ("Deployment", "Service", "Pod"):
        spec = obj.get("spec") or {}
        out["spec"] = {k: spec[k] for k in _SPEC_KEYS[kind] if k in spec}
        if kind == "Deployment" and "template" in out["spec"]:
            # Only the template's metadata (revision label, annotations): the pod spec is ours to render.
            out["spec"]["template"] = {"metadata": (spec["template"] or {}).get("metadata") or {}}
    if kind == c.KIND:  # the ModelDeployment itself: all of spec and status are read
        out["spec"] = obj.get("spec") or {}
        if obj.get("status") is not None:
            out["status"] = obj["status"]
    if kind == "ConfigMap":
        out["data"] = dict(obj.get("data") or {})
    if kind in ("Deployment", "Pod", "Job") and obj.get("status") is not None:
        out["status"] = obj["status"]
    if kind == "Job":
        annotations = ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations")
        if annotations:
            out["spec"] = {"template": {"metadata": {"annotations": annotations}}}
    return out


def _rv(obj: Mapping[str, Any]) -> int | None:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion"))
    except (TypeError, ValueError):
        return None


def owner_name(obj: Mapping[str, Any]) -> str | None:
    """The ModelDeployment a child claims to belong to: its controller owner reference, else (pods,
    whose owner is a ReplicaSet) the ``modeldeploy.io/modeldeployment`` annotation."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == c.KIND and str(ref.get("apiVersion", "")).startswith(c.GROUP + "/"):
            return ref.get("name")
    return (meta.get("annotations") or {}).get(c.ANNOTATION_OWNER)


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """True when ``obj``'s controller owner reference is the ModelDeployment with ``uid``."""
    return any(ref.get("controller") and ref.get("uid") == uid
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or ())


class ObjectCache:
    """Thread-safe store of slimmed objects by (kind, namespace, name), indexed by owner name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_owner: dict[tuple[str, str, str], set[str]] = {}  # (kind, ns, owner) -> names
        self._by_ns: dict[tuple[str, str], set[str]] = {}  # (kind, ns) -> names

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def store(self, kind: str, obj: Mapping[str, Any]) -> bool:
        """Keep ``obj`` unless the cached copy is newer; True when stored."""
        meta = obj.get("metadata") or {}
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        slimmed = slim(kind, obj)
        with self._lock:
            old = self._objects.get(key)
            if old is not None:
                new_rv, old_rv = _rv(slimmed), _rv(old)
                if new_rv is not None and old_rv is not None and new_rv < old_rv:
                    return False
                self._unindex(key, old)
            self._objects[key] = slimmed
            self._by_ns.setdefault((kind, key[1]), set()).add(key[2])
            owner = owner_name(slimmed)
            if owner:
                self._by_owner.setdefault((kind, key[1], owner), set()).add(key[2])
            return True

    def delete(self, kind: str, namespace: str, name: str) -> None:
        key = (kind, namespace, name)
        with self._lock:
            old = self._objects.pop(key, None)
            if old is not None:
                self._unindex(key, old)

    def _unindex(self, key: Key, old: Mapping[str, Any]) -> None:
        in_ns = self._by_ns.get((key[0], key[1]))
        if in_ns is not None:
            in_ns.discard(key[2])
            if not in_ns:
                del self._by_ns[(key[0], key[1])]
        owner = owner_name(old)
        if owner:
            names = self._by_owner.get((key[0], key[1], owner))
            if names is not None:
                names.discard(key[2])
                if not names:
                    del self._by_owner[(key[0], key[1], owner)]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get((kind, namespace, name))

    def owned(self, kind: str, namespace: str, owner: str) -> list[dict[str, Any]]:
        """Objects of ``kind`` that claim ``owner`` (check :func:`owned_by` before trusting them)."""
        with self._lock:
            names = sorted(self._by_owner.get((kind, namespace, owner), ()))
            return [self._objects[(kind, namespace, n)] for n in names]

    def labelled(self, kind: str, namespace: str, label: str, value: str) -> list[dict[str, Any]]:
        """Objects of ``kind`` in ``namespace`` whose label ``label`` is ``value`` (a scan of one namespace)."""
        with self._lock:
            names = sorted(self._by_ns.get((kind, namespace), ()))
            objs = [self._objects[(kind, namespace, n)] for n in names]
        return [o for o in objs if ((o.get("metadata") or {}).get("labels") or {}).get(label) == value]

    def drop_namespace_owner(self, namespace: str, owner: str, kinds: Iterable[str]) -> None:
        for kind in kinds:
            for obj in self.owned(kind, namespace, owner):
                self.delete(kind, namespace, obj["metadata"]["name"])
