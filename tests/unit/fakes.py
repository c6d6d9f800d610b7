"""In-memory stand-ins for the reconciler's interfaces: a fake API server and the real watch cache.

``FakeKube`` keeps objects like an API server would (uid, resourceVersion, generation bumped on a
Deployment spec change), records every request in ``calls``, and — like a Deployment controller with
instant pods — marks an applied Deployment fully rolled out when ``ready``. The cache is the real
``ObjectCache``: tests fill it as the watches would (``watch``).
"""

from __future__ import annotations

import base64
import copy
import itertools
from datetime import datetime, timezone
from typing import Any

from modeldeploy.adapters.cache import ObjectCache
from modeldeploy.adapters.kube import KubeError
from modeldeploy.api import constants as c
from modeldeploy.reconcile.modeldeployment import Reconciler
from modeldeploy.render.triton import RenderOptions

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
_rv = itertools.count(100)


class FakeKube:
    def __init__(self, ready: bool = True, fail_on: str | None = None, status_code: int = 403):
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.ready, self.fail_on, self.status_code = ready, fail_on, status_code
        self.events: list[tuple[str, str, str]] = []

    # --- helpers for tests ---
    def put(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{kind}-{meta['name']}")
        meta["resourceVersion"] = str(next(_rv))
        self.objects[(kind, meta.get("namespace", "ns"), meta["name"])] = obj
        return copy.deepcopy(obj)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for (k, _, _), o in self.objects.items() if k == kind]

    def ops(self, *names: str) -> list[tuple[str, str]]:
        return [call for call in self.calls if call[0] in names]

    # --- KubeWriter ---
    def apply(self, obj):
        kind, meta = obj["kind"], obj["metadata"]
        self.calls.append(("apply", kind))
        if kind == self.fail_on:
            err = KubeError("apply", f"{kind} {meta['namespace']}/{meta['name']}", RuntimeError("forbidden"))
            err.status = self.status_code
            raise err
        key = (kind, meta["namespace"], meta["name"])
        old = self.objects.get(key)
        new = copy.deepcopy(dict(obj))
        new["metadata"] = {**(old or {}).get("metadata", {}), **copy.deepcopy(meta)}
        new["metadata"].setdefault("uid", f"uid-{kind}-{meta['name']}")
        others = [m for m in (old or {}).get("metadata", {}).get("managedFields", ()) if m["manager"] != c.FIELD_MANAGER]
        new["metadata"]["managedFields"] = others + [{"manager": c.FIELD_MANAGER, "operation": "Apply",
                                                      "fieldsV1": {"f:spec": {}}}]
        new["metadata"]["resourceVersion"] = str(next(_rv))
        if kind == "Deployment":
            gen = (old or {}).get("metadata", {}).get("generation", 0)
            changed = old is None or old.get("spec") != new.get("spec")
            new["metadata"]["generation"] = gen + 1 if changed else gen
            n = new["spec"]["replicas"] if self.ready else 0
            new["status"] = {"observedGeneration": new["metadata"]["generation"], "replicas": n,
                             "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n}
        self.objects[key] = new
        return copy.deepcopy(new)

    def create(self, obj):
        self.calls.append(("create", obj["kind"]))
        return self.apply(obj)

    def get(self, kind, namespace, name):
        self.calls.append(("get", kind))
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    def delete(self, kind, namespace, name, uid=None):
        self.calls.append(("delete", f"{kind}/{name}"))
        obj = self.objects.get((kind, namespace, name))
        if obj and (uid is None or obj["metadata"].get("uid") == uid):
            del self.objects[(kind, namespace, name)]

    def patch_status(self, namespace, name, status):
        self.calls.append(("patch_status", name))
        obj = self.objects.get((c.KIND, namespace, name))
        if obj is None:
            return None
        merged = {**(obj.get("status") or {}), **status}
        obj["status"] = {k: v for k, v in merged.items() if v is not None}
        obj["metadata"]["resourceVersion"] = str(next(_rv))
        return copy.deepcopy(obj)

    def scale(self, namespace, name, replicas):
        self.calls.append(("scale", f"{name}={replicas}"))
        dep = self.objects[("Deployment", namespace, name)]
        dep["spec"]["replicas"] = replicas
        dep["metadata"]["generation"] += 1
        dep["metadata"]["resourceVersion"] = str(next(_rv))
        n = replicas if self.ready else 0
        dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": n, "updatedReplicas": n,
                         "readyReplicas": n, "availableReplicas": n}
        return {"spec": {"replicas": replicas}}

    def patch_secret(self, namespace, name, patch):
        self.calls.append(("patch_secret", name))
        obj = self.objects[("Secret", namespace, name)]
        obj["metadata"].setdefault("annotations", {}).update(patch.get("metadata", {}).get("annotations") or {})
        obj["data"] = {**obj.get("data", {}), **patch.get("data", {})}

    def patch_model_deployment(self, namespace, name, patch):
        self.calls.append(("patch_md", name))
        obj = self.objects[(c.KIND, namespace, name)]
        annotations = obj["metadata"].setdefault("annotations", {})
        for key, value in (patch.get("metadata", {}).get("annotations") or {}).items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        obj["metadata"]["resourceVersion"] = str(next(_rv))

    def create_job(self, job):
        self.calls.append(("create_job", job["metadata"]["name"]))
        return self.put("Job", {**job, "status": {}})

    def create_secret_token(self, namespace, name, key, owner_reference, labels):
        self.calls.append(("create_secret", name))
        if ("Secret", namespace, name) in self.objects:
            return False
        self.put("Secret", {"metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                                         "ownerReferences": [dict(owner_reference)]},
                            "data": {key: base64.b64encode(b"t0ken").decode()}})
        return True

    def read_secret_key(self, namespace, name, key):
        raise AssertionError("the reconciler reads the token Secret with get() and checks its owner")

    def stamp_pod_template(self, namespace, deployment, annotation, value):
        self.calls.append(("stamp", f"{deployment}:{annotation}={value}"))

    def post_event(self, regarding, type_, reason, message, now):
        self.events.append((type_, reason, message))


class Cluster:
    """A FakeKube, the real cache in front of it, and a Reconciler over both."""

    def __init__(self, agents=None, options: RenderOptions | None = None, **kube_args):
        self.kube = FakeKube(**kube_args)
        self.cache = ObjectCache()
        self.reconciler = Reconciler(view=self.cache, kube=self.kube, options=options or RenderOptions(),
                                     now=lambda: T0, agents=agents)

    def watch(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` in the fake API server and deliver it to the cache, as a watch would."""
        stored = self.kube.put(kind, obj)
        self.cache.store(kind, stored)
        return stored

    def sync(self) -> None:
        """Deliver every object of the fake API server to the cache (the watches caught up)."""
        for (kind, _, _), obj in self.kube.objects.items():
            self.cache.store(kind, copy.deepcopy(obj))

    def reconcile(self, md: dict[str, Any]):
        meta = md["metadata"]
        if (c.KIND, meta["namespace"], meta["name"]) not in self.kube.objects:
            self.watch(c.KIND, md)
        return self.reconciler.reconcile(meta["namespace"], meta["name"])

    def md(self, namespace: str = "ns", name: str = "m") -> dict[str, Any]:
        return self.kube.objects[(c.KIND, namespace, name)]
