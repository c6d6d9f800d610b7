"""Kopf glue: watches feed the cache and the work queue; workers reconcile; nothing about how.

The shape is controller-runtime's, built from Kopf's watches:

- every watched object (ModelDeployments, and the Deployments, pods, Jobs, ConfigMaps and Services
  labelled ``app.kubernetes.io/managed-by=modeldeploy``) is stored in the watch cache
  (adapters/cache.py) as Kopf delivers its events, and its owner's key is added to the work queue
  (handlers/workqueue.py) — so a burst of events becomes one reconcile;
- a few worker threads take keys from the queue and reconcile (reconcile/modeldeployment.py), which
  reads only from the cache; its result becomes an Event, a later look (``requeue_after``) or a retry
  with backoff — all through the queue, the operator's only timer;
- at start, one LIST per kind fills the cache before the workers run, so the first reconciles do not
  GET children one by one.

Only Kopf *event* handlers are used: Kopf's create/update/resume handlers would store the handled
spec in an annotation of every ModelDeployment (a large spec overflows its 256 KiB limit) and add
nothing here, since the reconcile is level-based and idempotent. Handlers are sync; Kopf runs them
in its thread pool and they only store and enqueue.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import kopf
from kubernetes import config as kube_config

from modeldeploy import metrics
from modeldeploy.adapters.agent import AgentClient
from modeldeploy.adapters.cache import ObjectCache, owner_name
from modeldeploy.adapters.kube import Kube
from modeldeploy.adapters.prometheus import PrometheusProvider
from modeldeploy.api import constants as c
from modeldeploy.api.conditions import format_time, one_line
from modeldeploy.policy.pods import diagnose_pods
from modeldeploy.reconcile.modeldeployment import Reconciler, Result
from modeldeploy.render.triton import DEFAULT_TRITON_IMAGE, RenderOptions
from modeldeploy.handlers.workqueue import WorkQueue

log = logging.getLogger(__name__)

#: Retry backoff after a failed reconcile: base * 2^(failures-1), capped.
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
MANAGED = {c.LABEL_MANAGED_BY: c.MANAGED_BY}
#: Kinds watched besides ModelDeployments (label-filtered), as (Kopf group, version, plural, cache kind).
CHILD_KINDS = (("apps", "v1", "deployments", "Deployment"), ("", "v1", "pods", "Pod"),
               ("batch", "v1", "jobs", "Job"), ("", "v1", "configmaps", "ConfigMap"),
               ("", "v1", "services", "Service"),
               ("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"))

Key = tuple[str, str]

#: Namespaces watched (set by ``modeldeploy operator --namespace``); empty: the whole cluster.
NAMESPACES: tuple[str, ...] = ()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def options_from_env(env: dict[str, str] | os._Environ = os.environ) -> RenderOptions:
    return RenderOptions(
        triton_image=env.get("MODELDEPLOY_TRITON_IMAGE", DEFAULT_TRITON_IMAGE),
        fetcher_image=env.get("MODELDEPLOY_FETCHER_IMAGE") or RenderOptions.fetcher_image,
        progress_deadline_seconds=int(env.get("MODELDEPLOY_PROGRESS_DEADLINE_SECONDS", "600")),
    )


def retry_delay(failures: int) -> float:
    """Seconds before retry number ``failures`` (1, 2, 4, … capped at a minute).

    >>> [retry_delay(n) for n in (1, 2, 3, 10)]
    [1.0, 2.0, 4.0, 60.0]
    """
    return min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, failures - 1))


@dataclass
class Operator:
    """The running operator's state: cache, queue, reconciler, workers. One per process."""

    kube: Kube
    options: RenderOptions
    workers: int = 4
    namespaces: tuple[str, ...] = ()
    cache: ObjectCache = field(default_factory=ObjectCache)
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    failures: dict[Key, int] = field(default_factory=dict)
    # (namespace, Job name) -> ModelDeployments whose last reconcile found them waiting for that Job.
    waiting: defaultdict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    _threads: list[threading.Thread] = field(default_factory=list)

    prometheus_url: str | None = None

    def __post_init__(self) -> None:
        self.events: queue.Queue[tuple[dict[str, Any], str, str, str, str] | None] = queue.Queue(maxsize=10_000)
        metrics_provider = PrometheusProvider(self.prometheus_url) if self.prometheus_url else None
        self.reconciler = Reconciler(view=self.cache, kube=self.kube, options=self.options, now=_now,
                                     agents=AgentClient(), metrics=metrics_provider)

    # --- cache and queue ---------------------------------------------------------------------
    def prefill(self) -> list[Key]:
        """One LIST per kind into the cache (the watches then keep it current); the ModelDeployments found."""
        keys = []
        for scope in self.namespaces or (None,):
            for _, _, _, kind in CHILD_KINDS:
                for obj in self.kube.list_all(kind, f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}", scope):
                    self.cache.store(kind, obj)
            for obj in self.kube.list_all(c.KIND, "", scope):  # last: their children are cached already
                self.cache.store(c.KIND, obj)
                keys.append((obj["metadata"]["namespace"], obj["metadata"]["name"]))
        return sorted(keys)

    def seen(self, kind: str, event_type: str | None, body: Any) -> None:
        meta = body.get("metadata") or {}
        if event_type == "DELETED":
            self.cache.delete(kind, meta.get("namespace", ""), meta.get("name", ""))
            self.reconciler.memo.forget(kind, meta.get("namespace", ""), meta.get("name", ""))
        else:
            self.cache.store(kind, body)

    def enqueue(self, namespace: str, name: str) -> None:
        self.queue.add((namespace, name))

    # --- workers -----------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        poster = threading.Thread(target=self._post_events, name="events", daemon=True)
        poster.start()
        self._threads.append(poster)

    def stop(self) -> None:
        self.queue.close()
        self.events.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    def _post_events(self) -> None:
        """Post Events from a queue of their own: a reconcile worker does not wait for them (they carry
        information, not state; one that cannot be posted is logged and dropped)."""
        while (item := self.events.get()) is not None:
            regarding, kind, reason, message, when = item
            self.kube.post_event(regarding, kind, reason, message, when)

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self.process(key)
            except Exception:  # noqa: BLE001 - a worker must outlive any one object's failure
                log.exception("reconcile of %s/%s failed", *key)
                self._retry(key)
            finally:
                self.queue.done(key)

    def process(self, key: Key) -> Result:
        namespace, name = key
        with metrics.reconciling() as timer:
            result = self.reconciler.reconcile(namespace, name)
            if result.retry:
                timer.outcome = "retry"
        if result.gone:
            self.queue.forget(key)
            self.failures.pop(key, None)
            metrics.forget(namespace, name)
            return result
        body = self.cache.get(c.KIND, namespace, name) or {}
        metrics.observe(namespace, name, result.status, body.get("spec"))
        if result.compression_job:
            self.waiting[(namespace, result.compression_job)].add(name)
        regarding = {"apiVersion": c.API_VERSION, "kind": c.KIND,
                     "metadata": body.get("metadata") or {"name": name, "namespace": namespace}}
        for kind, reason, message in result.events:
            try:
                self.events.put_nowait((regarding, kind, reason, one_line(message), format_time(_now())))
            except queue.Full:
                log.warning("event queue full; dropped %s %s for %s/%s", kind, reason, namespace, name)
        log.debug("reconciled %s/%s: phase %s, status written: %s", namespace, name,
                  (result.status or {}).get("phase"), result.written)
        if result.retry:
            log.warning("reconcile of %s/%s will be retried: %s", namespace, name, result.retry)
            self._retry(key)
        else:
            self.failures.pop(key, None)
            if result.requeue_after:
                self.queue.add(key, after=result.requeue_after)
        return result

    def _retry(self, key: Key) -> None:
        self.failures[key] = self.failures.get(key, 0) + 1
        self.queue.add(key, after=retry_delay(self.failures[key]))


_operator: Operator | None = None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger, **_: Any) -> None:
    global _operator
    settings.posting.level = logging.WARNING  # Kopf's own warnings as Events; ours are posted by the workers
    settings.watching.server_timeout = 300
    settings.watching.chunk_size = 500  # Kopf's initial lists in pages, not one response of every object
    settings.execution.max_workers = 4  # handlers only store and enqueue
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()
    _operator = Operator(kube=Kube(), options=options_from_env(),
                         workers=int(os.environ.get("MODELDEPLOY_WORKERS", "4")), namespaces=NAMESPACES,
                         prometheus_url=os.environ.get("MODELDEPLOY_PROMETHEUS_URL") or None)
    for namespace, name in _operator.prefill():
        _operator.enqueue(namespace, name)
    _operator.start()
    logger.info("modeldeploy operator configured: triton image %s, %d workers, %d objects cached",
                _operator.options.triton_image, _operator.workers, len(_operator.cache))
    prometheus = os.environ.get("MODELDEPLOY_PROMETHEUS_URL")
    if prometheus:
        logger.info("Prometheus %s: %s", prometheus, check_prometheus(prometheus))


@kopf.on.cleanup()
def shutdown(**_: Any) -> None:
    if _operator is not None:
        _operator.stop()


def check_prometheus(url: str, timeout: float = 3.0) -> str:
    """One line on whether the configured Prometheus answers (its readiness endpoint)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/-/ready", timeout=timeout) as resp:
            return f"ready (HTTP {resp.status})"
    except urllib.error.HTTPError as err:
        return f"not ready (HTTP {err.code})"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"unreachable ({getattr(err, 'reason', err)})"


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
def on_model_deployment(body: kopf.Body, type: str | None, namespace: str, name: str, **_: Any) -> None:
    if _operator is None:
        return
    _operator.seen(c.KIND, type, body)
    _operator.enqueue(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
def on_deployment(body: kopf.Body, type: str | None, namespace: str, **_: Any) -> None:
    _child_event("Deployment", body, type, namespace)


@kopf.on.event("", "v1", "services", labels=MANAGED)
def on_service(body: kopf.Body, type: str | None, namespace: str, **_: Any) -> None:
    _child_event("Service", body, type, namespace)


@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes", labels=MANAGED)
def on_http_route(body: kopf.Body, type: str | None, namespace: str, **_: Any) -> None:
    """HTTPRoutes of canaries with Gateway API routing (watched once the Gateway API CRDs exist)."""
    _child_event("HTTPRoute", body, type, namespace)


@kopf.on.event("", "v1", "configmaps", labels=MANAGED)
def on_config_map(body: kopf.Body, type: str | None, namespace: str, **_: Any) -> None:
    _child_event("ConfigMap", body, type, namespace)


def _child_event(kind: str, body: kopf.Body, type: str | None, namespace: str) -> None:
    """Store the child; reconcile its owner (drift, deletion, status progress)."""
    if _operator is None:
        return
    _operator.seen(kind, type, body)
    owner = owner_name(body)
    if owner:
        _operator.enqueue(namespace, owner)


@kopf.on.event("", "v1", "pods", labels=MANAGED)
def on_pod(body: kopf.Body, type: str | None, namespace: str, **_: Any) -> None:
    """Stored always; the owner is reconciled only for a pod in trouble (fetch failed, crash loop,
    unschedulable), which changes no Deployment status: healthy pod events cost nothing more."""
    if _operator is None:
        return
    _operator.seen("Pod", type, body)
    if type != "DELETED" and diagnose_pods([body]) is not None:
        owner = owner_name(body)
        if owner:
            _operator.enqueue(namespace, owner)


@kopf.on.event("batch", "v1", "jobs", labels={**MANAGED, c.LABEL_COMPONENT: c.COMPONENT_COMPRESSION})
def on_job(body: kopf.Body, type: str | None, namespace: str, name: str, **_: Any) -> None:
    """A compression Job changed (started, a pod failed, finished): reconcile whoever waits for it."""
    if _operator is None:
        return
    _operator.seen("Job", type, body)
    owners = set(_operator.waiting.get((namespace, name), ()))
    creator = owner_name(body)
    if creator:
        owners.add(creator)
    finished = any(cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True"
                   for cond in (body.get("status") or {}).get("conditions") or [])
    if finished or type == "DELETED":
        _operator.waiting.pop((namespace, name), None)
    for owner in sorted(owners):
        _operator.enqueue(namespace, owner)
