"""Kopf handlers for ModelDeployment: when to reconcile, nothing about how.

- create / update of spec / resume at operator start -> reconcile the ModelDeployment;
- any event of a Deployment we manage (status progress, a manual edit, a deletion) -> reconcile its
  owner, which refreshes status and takes back drift. When neither the ModelDeployment's nor the
  Deployment's generation moved since our last apply, the event is a status change and only the
  status is refreshed (no apply). Drift that does not bump the Deployment's generation (labels,
  annotations) is taken back at the next spec change or operator restart.
- an event of a serving pod that has a problem (see policy/pods.py) -> reconcile its owner, so a
  failed model fetch shows in status without waiting for the Deployment's progress deadline.
- any event of a compression Job -> reconcile the ModelDeployment that created it and every other
  one that waits for the same Job (same content key), so a finished Job is rolled out at once.

Handlers are sync functions: Kopf runs them in its thread pool, so the sync Kubernetes client does not
block the event loop. A per-object lock keeps the entry points from reconciling the same
ModelDeployment at once; the lock and the last-applied generations are forgotten when a reconcile
finds the ModelDeployment gone (its Deployment's deletion event triggers one), so their memory does
not grow with churn. (An extra Kopf event handler on ModelDeployments for this made Kopf run the
creation handler twice for most objects under load: 1.8 instead of 1.0 per object at N=200.)
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

import kopf
from kubernetes import config as kube_config

from modeldeploy.api import constants as c
from modeldeploy.adapters.agent import AgentClient
from modeldeploy.adapters.kube import Kube
from modeldeploy.policy.pods import diagnose_pods
from modeldeploy.reconcile.modeldeployment import reconcile
from modeldeploy.render.triton import DEFAULT_TRITON_IMAGE, RenderOptions

RETRY_DELAY_SECONDS = 15

_kube: Kube | None = None
_options = RenderOptions()
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
# (namespace, name) -> (ModelDeployment generation, Deployment generation) after our last apply. A
# Deployment event that matches both is a status change only, and needs no re-apply.
_applied: dict[tuple[str, str], tuple[int, int]] = {}
# (namespace, Job name) -> ModelDeployments whose last reconcile found them waiting for that Job.
_waiting: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
# ModelDeployments with a look scheduled (an in-place model swap runs: agents make no Kubernetes events).
_timers: dict[tuple[str, str], threading.Timer] = {}
_agents = AgentClient()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def options_from_env(env: dict[str, str] | os._Environ = os.environ) -> RenderOptions:
    return RenderOptions(
        triton_image=env.get("MODELDEPLOY_TRITON_IMAGE", DEFAULT_TRITON_IMAGE),
        fetcher_image=env.get("MODELDEPLOY_FETCHER_IMAGE") or RenderOptions.fetcher_image,
        progress_deadline_seconds=int(env.get("MODELDEPLOY_PROGRESS_DEADLINE_SECONDS", "600")),
    )


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger, **_: Any) -> None:
    global _kube, _options
    # Kopf keeps its bookkeeping in annotations under our own prefix; status stays ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration")
    settings.posting.level = 30  # post Events for warnings and above from Kopf itself; ours are explicit
    settings.watching.server_timeout = 300
    settings.execution.max_workers = int(os.environ.get("MODELDEPLOY_WORKERS", "8"))
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config()
    _kube = Kube()
    _options = options_from_env()
    logger.info("modeldeploy operator configured: triton image %s", _options.triton_image)
    prometheus = os.environ.get("MODELDEPLOY_PROMETHEUS_URL")
    if prometheus:
        logger.info("Prometheus %s: %s", prometheus, check_prometheus(prometheus))


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


def _reconcile(namespace: str, name: str, logger, deployment: Any = None) -> None:
    """Reconcile the ModelDeployment as stored now.

    The object is read inside the lock: a body handed over by Kopf, or read before waiting, can miss
    the status another reconcile just wrote, and would then report a stale phase transition.
    """
    assert _kube is not None, "operator not configured (startup handler did not run)"
    key = (namespace, name)
    with _locks[key]:
        body = _kube.get_model_deployment(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            # Gone or being deleted: the garbage collector removes the children; forget our notes
            # (the Deployment's deletion event brings us here once more).
            _applied.pop(key, None)
            _locks.pop(key, None)
            return
        generation = body["metadata"].get("generation")
        dep_generation = (deployment or {}).get("metadata", {}).get("generation")
        unchanged = deployment is not None and _applied.get(key) == (generation, dep_generation)
        result = reconcile(_kube, body, _options, _now, observed_deployment=deployment if unchanged else None,
                           agents=_agents)
        if result.deployment_generation is not None and not result.retry:
            _applied[key] = (generation, result.deployment_generation)
        if result.compression_job:
            _waiting[(namespace, result.compression_job)].add(name)
    if result.event:
        kind, reason, message = result.event
        kopf.event(body, type=kind, reason=reason, message=message)
    logger.debug("reconciled %s/%s: phase %s, status written: %s", *key, result.status["phase"], result.written)
    if result.requeue_after:
        _schedule(namespace, name, result.requeue_after, logger)
    if result.retry:
        raise kopf.TemporaryError(result.retry, delay=RETRY_DELAY_SECONDS)


def _schedule(namespace: str, name: str, delay: float, logger) -> None:
    """Reconcile ``namespace/name`` again in ``delay`` seconds (one pending look per object)."""
    key = (namespace, name)
    if key in _timers and _timers[key].is_alive():
        return

    def look() -> None:
        _timers.pop(key, None)
        try:
            _reconcile(namespace, name, logger)
        except kopf.TemporaryError as err:
            logger.warning("scheduled reconcile of %s/%s failed: %s", namespace, name, err)
        except Exception:  # noqa: BLE001 - a timer thread must not die silently
            logger.exception("scheduled reconcile of %s/%s failed", namespace, name)

    # Run in a copy of the handler's context: kopf.event() finds Kopf's settings there.
    timer = threading.Timer(delay, contextvars.copy_context().run, args=(look,))
    timer.daemon = True
    _timers[key] = timer
    timer.start()


@kopf.on.resume(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.create(c.GROUP, c.VERSION, c.PLURAL)
@kopf.on.update(c.GROUP, c.VERSION, c.PLURAL, field="spec")
def reconcile_model_deployment(namespace: str, name: str, logger, **_: Any) -> None:
    _reconcile(namespace, name, logger)


def controller_owner(body: Any) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == c.KIND and ref.get("apiVersion", "").startswith(c.GROUP + "/"):
            return ref.get("name")
    return None


@kopf.on.event("apps", "v1", "deployments", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY})
def on_deployment_event(body: kopf.Body, type: str | None, namespace: str, logger, **_: Any) -> None:
    owner = controller_owner(body)
    if owner is None or _kube is None:
        return
    # A deleted (or deleting) Deployment must be applied again, never only observed.
    gone = type == "DELETED" or body.get("metadata", {}).get("deletionTimestamp")
    try:
        _reconcile(namespace, owner, logger, deployment=None if gone else body)
    except kopf.TemporaryError as err:
        # Event handlers are not retried by Kopf; the ModelDeployment's own handler retries.
        logger.warning("reconcile of %s/%s after a Deployment event failed: %s", namespace, owner, err)


@kopf.on.event("", "v1", "pods", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY})
def on_pod_event(body: kopf.Body, type: str | None, namespace: str, logger, **_: Any) -> None:
    """A serving pod in trouble (model fetch failed, crash loop, unschedulable) changes no Deployment
    status, so no Deployment event would tell the operator; healthy pod events cost nothing here."""
    if type == "DELETED" or _kube is None or diagnose_pods([body]) is None:
        return
    owner = (body.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_OWNER)
    if not owner:
        return
    try:
        _reconcile(namespace, owner, logger)
    except kopf.TemporaryError as err:
        logger.warning("reconcile of %s/%s after a pod event failed: %s", namespace, owner, err)



@kopf.on.event("batch", "v1", "jobs", labels={c.LABEL_MANAGED_BY: c.MANAGED_BY,
                                            c.LABEL_COMPONENT: c.COMPONENT_COMPRESSION})
def on_job_event(body: kopf.Body, type: str | None, namespace: str, name: str, logger, **_: Any) -> None:
    """A compression Job changed (started, a pod failed, finished): reconcile whoever waits for it."""
    if _kube is None:
        return
    owners = set(_waiting.get((namespace, name), ()))
    creator = (body.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_OWNER)
    if creator:
        owners.add(creator)
    finished = any(cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True"
                   for cond in (body.get("status") or {}).get("conditions") or [])
    if finished or type == "DELETED":
        _waiting.pop((namespace, name), None)
    for owner in sorted(owners):
        try:
            _reconcile(namespace, owner, logger)
        except kopf.TemporaryError as err:
            logger.warning("reconcile of %s/%s after a Job event failed: %s", namespace, owner, err)
