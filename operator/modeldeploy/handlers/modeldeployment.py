"""Kopf glue: watches feed the cache and the work queue; workers reconcile; nothing about how.

The shape is controller-runtime's, built from Kopf's watches:

- every watched object (ModelDeployments, and the Deployments, pods, Jobs, ConfigMaps, Services and
  HTTPRoutes labelled ``app.kubernetes.io/managed-by=modeldeploy``) is stored in the watch cache
  (adapters/cache.py) as its events arrive, and its owner's key is added to the work queue
  (handlers/workqueue.py) — so a burst of events becomes one reconcile;
- Kopf watches the ModelDeployments (and HTTPRoutes, whose CRD may appear later: Kopf notices);
  the numerous children are followed by our own informers (adapters/informer.py), one event at a
  time, because Kopf's per-object queues hold every object whole at once when a leader starts with
  thousands of them (the memory figures are in docs/benchmarks.md);
- a few worker threads take keys from the queue and reconcile (reconcile/modeldeployment.py), which
  reads only from the cache; its result becomes an Event, a later look (``requeue_after``) or a retry
  with backoff — all through the queue, the operator's only timer;
- at start, the informers' first lists fill the cache before the workers run, so the first reconciles
  do not GET children one by one; ModelDeployments that look settled (Ready at their current
  generation) are queued behind every change (a new leader's pass over 1,000 of them does not delay
  the one object someone just edited).

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
from modeldeploy.adapters.informer import DELETED, LISTED, Informer
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
MANAGED_SELECTOR = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
#: Children followed by informers: kind -> label selector.
INFORMED = {"Deployment": MANAGED_SELECTOR, "Pod": MANAGED_SELECTOR, "ConfigMap": MANAGED_SELECTOR,
            "Service": MANAGED_SELECTOR,
            "Job": f"{MANAGED_SELECTOR},{c.LABEL_COMPONENT}={c.COMPONENT_COMPRESSION}"}
#: Children Kopf watches (their CRD may be installed after the operator starts), listed at start too.
KOPF_CHILDREN = ("HTTPRoute",)
#: How long the start waits for the informers' first lists before reconciling from a partial cache.
SYNC_TIMEOUT_SECONDS = 120.0

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


def settled(body: Any) -> bool:
    """A ModelDeployment whose last reconcile left it Ready at its current generation: at start it
    only needs a look for drift, behind every change (WorkQueue ``low``).

    >>> settled({"metadata": {"generation": 3}, "status": {"phase": "Ready", "observedGeneration": 3}})
    True
    >>> settled({"metadata": {"generation": 4}, "status": {"phase": "Ready", "observedGeneration": 3}})
    False
    >>> settled({"metadata": {"generation": 1}})
    False
    """
    status = body.get("status") or {}
    return (status.get("phase") == c.PHASE_READY
            and status.get("observedGeneration") == (body.get("metadata") or {}).get("generation"))


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
    informers: list[Informer] = field(default_factory=list)

    prometheus_url: str | None = None

    def __post_init__(self) -> None:
        self.events: queue.Queue[tuple[dict[str, Any], str, str, str, str] | None] = queue.Queue(maxsize=10_000)
        metrics_provider = PrometheusProvider(self.prometheus_url) if self.prometheus_url else None
        self.reconciler = Reconciler(view=self.cache, kube=self.kube, options=self.options, now=_now,
                                     agents=AgentClient(), metrics=metrics_provider)

    # --- cache and queue ---------------------------------------------------------------------
    def prefill(self, sync_timeout: float = SYNC_TIMEOUT_SECONDS) -> list[tuple[Key, bool]]:
        """Start the informers and wait for their first lists; list the Kopf-watched children and the
        ModelDeployments into the cache. Returns the ModelDeployments found, each with whether it
        looked settled (:func:`settled`)."""
        for scope in self.namespaces or (None,):
            for kind, selector in INFORMED.items():
                informer = Informer(self.kube, kind, selector, scope,
                                    lambda event, obj, kind=kind: self.child_event(kind, event, obj))
                informer.start()
                self.informers.append(informer)
        for informer in self.informers:
            if not informer.wait_synced(sync_timeout):
                log.warning("%r: first list not in after %.0f s; reconciling from a partial cache "
                            "(children missing from it are read one by one)", informer, sync_timeout)
        keys = []
        for scope in self.namespaces or (None,):
            for kind in KOPF_CHILDREN:
                for obj in self.kube.list_all(kind, MANAGED_SELECTOR, scope):
                    self.cache.store(kind, obj)
            for obj in self.kube.list_all(c.KIND, "", scope):  # last: their children are cached already
                self.cache.store(c.KIND, obj)
                keys.append(((obj["metadata"]["namespace"], obj["metadata"]["name"]), settled(obj)))
        return sorted(keys)

    def seen(self, kind: str, event_type: str | None, body: Any) -> None:
        meta = body.get("metadata") or {}
        if event_type == DELETED:
            self.cache.delete(kind, meta.get("namespace", ""), meta.get("name", ""))
            self.reconciler.memo.forget(kind, meta.get("namespace", ""), meta.get("name", ""))
        else:
            self.cache.store(kind, body)

    def enqueue(self, namespace: str, name: str, low: bool = False) -> None:
        self.queue.add((namespace, name), low=low)

    def model_deployment_event(self, event_type: str | None, body: Any) -> None:
        """Store it; reconcile it — behind every change when it was merely listed and looks settled."""
        meta = body.get("metadata") or {}
        self.seen(c.KIND, event_type, body)
        self.enqueue(meta.get("namespace", ""), meta.get("name", ""),
                     low=event_type in (None, LISTED) and settled(body))

    def child_event(self, kind: str, event_type: str | None, body: Any) -> None:
        """Store the child; reconcile whoever it concerns. An item of the first list is only stored
        (its owner is queued by :meth:`prefill`); Kopf's listing events (type None) queue it low."""
        self.seen(kind, event_type, body)
        if event_type == LISTED:
            return
        meta = body.get("metadata") or {}
        namespace, low = meta.get("namespace", ""), event_type is None
        if kind == "Pod":
            # The owner only for a pod in trouble (fetch failed, crash loop, unschedulable), which changes
            # no Deployment status: healthy pod events cost nothing more.
            if event_type == DELETED or diagnose_pods([body]) is None:
                return
        if kind == "Job":
            self._job_event(event_type, body)
            return
        owner = owner_name(body)
        if owner:
            self.enqueue(namespace, owner, low=low)

    def _job_event(self, event_type: str | None, body: Any) -> None:
        """A compression Job changed (started, a pod failed, finished): reconcile whoever waits for it."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        owners = set(self.waiting.get((namespace, name), ()))
        creator = owner_name(body)
        if creator:
            owners.add(creator)
        finished = any(cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True"
                       for cond in (body.get("status") or {}).get("conditions") or [])
        if finished or event_type == DELETED:
            self.waiting.pop((namespace, name), None)
        for owner in sorted(owners):
            self.enqueue(namespace, owner)

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
        for informer in self.informers:
            informer.stop()
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
    for (namespace, name), looks_settled in _operator.prefill():
        _operator.enqueue(namespace, name, low=looks_settled)
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
def on_model_deployment(body: kopf.Body, type: str | None, **_: Any) -> None:
    if _operator is not None:
        _operator.model_deployment_event(type, body)


@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes", labels=MANAGED)
def on_http_route(body: kopf.Body, type: str | None, **_: Any) -> None:
    """HTTPRoutes of canaries with Gateway API routing (watched once the Gateway API CRDs exist)."""
    if _operator is not None:
        _operator.child_event("HTTPRoute", type, body)
