"""Carry out a plan: ownership-checked applies, deletes of what we own, agent commands. Writes only.

Two rules make this safe in a shared cluster:

- **Never take over an object we did not create.** A child is applied only when it is ours (its
  controller owner reference is this ModelDeployment's uid). The watch cache holds only objects
  labelled as ours, so on a cache miss the object is read once (GET): absent -> created by the apply;
  present and not ours -> nothing is written and :class:`Conflict` names it (the status says so).
  A label alone proves nothing (anyone can set it): the uid does.
- **Never re-apply what has not changed.** :class:`AppliedMemo` remembers, per child, the hash of
  what we applied and the object's ``generation`` (Deployments, where status updates do not change it)
  or ``resourceVersion`` (the others) right after. An unchanged desired object whose live copy shows
  the same marker needs no request; a manual edit changes the marker, so drift is still taken back.
  After a restart (an empty memo, a new leader) the child's own record serves: every apply stamps the
  hash of the desired form in the annotation ``modeldeploy.io/applied-hash``, and the object's managed
  fields say whether anyone else has written its spec since (``adapters.cache.writers``). Same hash and
  no other writer: nothing to apply, so a restart of an operator with 1,000 objects applies nothing.

Deletes carry a uid precondition: a same-named object created by someone else since is never deleted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Mapping

from modeldeploy.adapters.cache import owned_by, writers
from modeldeploy.api import constants as c
from modeldeploy.render.names import short_hash
from modeldeploy.reconcile.interfaces import ClusterView, KubeWriter


#: Field managers of this operator: its applies, and the pod-template stamp of a restart.
OUR_FIELD_MANAGERS = {c.FIELD_MANAGER, c.RESTART_FIELD_MANAGER}


class Conflict(Exception):
    """A child's name is taken by an object this ModelDeployment does not own."""

    def __init__(self, kind: str, namespace: str, name: str, owner: str):
        super().__init__(f"{kind} {namespace}/{name} already exists and is not owned by this ModelDeployment "
                         f"({owner}); rename or delete it, or rename the ModelDeployment")
        self.kind, self.namespace, self.name = kind, namespace, name


def _describe_owner(obj: Mapping[str, Any]) -> str:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    ctrl = next((r for r in refs if r.get("controller")), None)
    return f"owned by {ctrl.get('kind')} {ctrl.get('name')}" if ctrl else "it has no controller owner"


def _marker(kind: str, live: Mapping[str, Any]) -> str:
    """What changes when someone else edits the object: a Deployment's generation (its status updates
    do not move it), any other kind's resourceVersion."""
    meta = live.get("metadata") or {}
    return f"g{meta.get('generation')}" if kind == "Deployment" else f"r{meta.get('resourceVersion')}"


ANNOTATION_APPLIED = "modeldeploy.io/applied-hash"


def stamped(desired: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` with the hash of itself in :data:`ANNOTATION_APPLIED` (what the live object will carry)."""
    meta = dict(desired["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_APPLIED: short_hash(desired, 16)}
    return {**desired, "metadata": meta}


def applied_before(desired: Mapping[str, Any], live: Mapping[str, Any], field_managers: set[str]) -> bool:
    """True when ``live`` is what an earlier apply of ``desired`` left and nobody else wrote it since."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    return (annotations.get(ANNOTATION_APPLIED) == short_hash(desired, 16)
            and set(writers(live)) <= field_managers)


class AppliedMemo:
    """Per child: (hash of the desired object, marker of the live object right after our apply)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str], tuple[str, str | None]] = {}

    def unchanged(self, desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
        if live is None:
            return False
        key = _key(desired)
        with self._lock:
            seen = self._seen.get(key)
        return seen is not None and seen == (short_hash(desired, 16), _marker(key[0], live))

    def knows(self, desired: Mapping[str, Any]) -> bool:
        """True when this process applied (or confirmed) the child before: its marker is the judge."""
        with self._lock:
            return _key(desired) in self._seen

    def record(self, desired: Mapping[str, Any], live: Mapping[str, Any]) -> None:
        with self._lock:
            self._seen[_key(desired)] = (short_hash(desired, 16), _marker(desired["kind"], live))

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._seen.pop((kind, namespace, name), None)


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta["namespace"], meta["name"]


@dataclass
class Actor:
    """Applies desired children of one ModelDeployment (uid ``owner_uid``) through ``kube``."""

    view: ClusterView
    kube: KubeWriter
    memo: AppliedMemo
    owner_uid: str

    def ensure(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Make ``desired`` true in the cluster; returns the live object. Raises Conflict or KubeError."""
        kind, namespace, name = _key(desired)
        live = self.view.get(kind, namespace, name)
        if live is not None and not owned_by(live, self.owner_uid):
            live = self.kube.get(kind, namespace, name)  # the cache may be behind a delete + recreate
        fetched = live is None
        if fetched:
            live = self.kube.get(kind, namespace, name)
        if live is not None and not owned_by(live, self.owner_uid):
            raise Conflict(kind, namespace, name, _describe_owner(live))
        if fetched and live is not None:
            # Kept for the next round: an unwatched kind (Secrets) would be read again on every reconcile.
            self.view.store(kind, live)
        if live is not None and self.memo.unchanged(desired, live):
            return live
        if live is not None and not self.memo.knows(desired) and applied_before(desired, live, OUR_FIELD_MANAGERS):
            self.memo.record(desired, live)  # the operator restarted; nothing changed meanwhile
            return live
        applied = self.kube.apply(stamped(desired))
        self.view.store(kind, applied)
        self.memo.record(desired, applied)
        return applied

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete our object ``name`` (uid from the cache; an uncached kind is read first to check it is ours)."""
        if not uid:
            live = self.kube.get(kind, namespace, name)
            if live is None or not owned_by(live, self.owner_uid):
                return
            uid = live["metadata"]["uid"]
        self.kube.delete(kind, namespace, name, uid=uid)
        self.view.delete(kind, namespace, name)
        self.memo.forget(kind, namespace, name)

    def scale(self, live: Mapping[str, Any], replicas: int) -> None:
        """Resize a Deployment we own but do not re-render (the stable one while a canary runs)."""
        if not owned_by(live, self.owner_uid):
            meta = live.get("metadata") or {}
            raise Conflict("Deployment", meta.get("namespace", ""), meta.get("name", ""), _describe_owner(live))
        if ((live.get("spec") or {}).get("replicas")) != replicas:
            meta = live["metadata"]
            self.kube.scale(meta["namespace"], meta["name"], replicas)
            self.view.store("Deployment", {**live, "spec": {**(live.get("spec") or {}), "replicas": replicas}})
