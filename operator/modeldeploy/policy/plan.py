"""The reconcile plan: from what the spec asks and what was observed, what should exist and be done. Pure.

Argo Rollouts' ``rolloutContext.reconcile`` reads the same way: observe (informer caches) -> decide
(this module) -> render -> act -> one status write. Everything here is a function of its arguments,
so every decision is table-tested without a cluster, and the reconciler (reconcile/modeldeployment.py)
stays glue.

A plan says:

- ``tracks``: the Deployments that should serve, each with its revision (pod label), replica count
  and the spec whose model it serves. Today one ``stable`` track; a canary adds a second.
- ``swap``: the in-place model swap step (policy/model_swap.py) when pods of the current revision
  must move to a new model version without restarting.
- ``prune``: children no longer needed, found by observation (any config ConfigMap whose revision
  no track serves and no pod runs, a Deployment no track names, the pre-Secret model source
  ConfigMap once no old pod is left) — so a crash between two steps never leaves garbage behind.
- ``requeue_after``: when to look again though no Kubernetes event will come (agents swapping).

Worked example: spec model version 2, status says every pod of revision ``abc`` serves version 1, the
Deployment is rolled out, the agents of pods a and b report version 1 -> one stable track
(revision abc), swap.put == ("a",), requeue after 2 s, nothing pruned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from modeldeploy.api import constants as c
from modeldeploy.api.spec import Spec
from modeldeploy.policy import model_swap
from modeldeploy.policy.pods import diagnose_pods
from modeldeploy.render import names

#: Seconds until the next look while a swap runs (the agents' progress makes no Kubernetes event).
SWAP_POLL_SECONDS = 2.0
#: Seconds until the next look after a swap failure that needs a person (the agent retries with backoff).
SWAP_STALLED_POLL_SECONDS = 30.0


@dataclass(frozen=True)
class Track:
    """One Deployment that should serve: ``role`` is stable or canary.

    ``render``: its objects are rendered from ``spec`` and applied; False for the stable Deployment while
    a canary runs (the spec describes the canary; stable is only scaled). ``pod_set``: the selector value
    of a per-revision Deployment (None: ``<name>-stable``, selected by track)."""

    role: str
    deployment: str
    revision: str
    replicas: int
    spec: Spec
    pod_set: str | None = None
    render: bool = True


@dataclass(frozen=True)
class Observed:
    """What the reconciler saw of one ModelDeployment's children (from the watch cache)."""

    deployments: Mapping[str, Mapping[str, Any]]  # name -> Deployment we own
    pods: Sequence[Mapping[str, Any]] = ()  # serving pods of this ModelDeployment
    config_maps: Sequence[Mapping[str, Any]] = ()  # ConfigMaps we own
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> Service we own
    routes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> HTTPRoute we own
    agent_reports: Sequence[model_swap.PodReport] | None = None  # asked only when a swap is due


@dataclass(frozen=True)
class Plan:
    tracks: tuple[Track, ...]
    new_pods: bool  # a new revision's pods are coming: their agent token must exist
    swap: model_swap.Plan | None = None
    swap_waiting: bool = False  # a swap is due but the Deployment is still rolling out
    restart: bool = False  # stamp the pod template: new pods must fetch the current model source
    prune: tuple[tuple[str, str, str], ...] = ()  # (kind, name, uid)
    requeue_after: float | None = None

    @property
    def stable(self) -> Track:
        return next(t for t in self.tracks if t.role == c.TRACK_STABLE)


def desired_model(spec: Spec) -> model_swap.Desired:
    return model_swap.Desired(spec.model.uri, spec.model.version, spec.model.sha256)


def _same_model(served: Mapping[str, Any], desired: model_swap.Desired) -> bool:
    """``status.model`` (``served``) is ``desired``: same version, same URI (by fingerprint, as status shows
    URIs redacted; a status written before fingerprints existed holds the URI itself), same sha256."""
    if served.get("version") != desired.version:
        return False
    if "uri" not in served and "uriFingerprint" not in served:
        return True  # a status that recorded only the version
    return model_swap.same_uri(served, desired) and served.get("sha256") == desired.sha256


def swap_due(previous: Mapping[str, Any], revision: str, spec: Spec) -> bool:
    """True when running pods of ``revision`` must be moved to ``spec.model`` by their agents: the
    revision did not change (no rolling update will bring new pods) but the confirmed served model
    (``status.model``) is not the one the spec names."""
    served = previous.get("model") or {}
    return bool(served) and previous.get("currentRevision") == revision and not _same_model(served, desired_model(spec))


def rolled_out(deployment: Mapping[str, Any] | None, want: int) -> bool:
    """Every replica runs the current template and is available (no rolling update under way)."""
    if deployment is None:
        return False
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    return (status.get("observedGeneration", 0) >= generation and status.get("updatedReplicas", 0) >= want
            and status.get("availableReplicas", 0) >= want and status.get("replicas", 0) == want)


def fetch_failing(pods: Sequence[Mapping[str, Any]], revision: str) -> bool:
    """True when a pod of ``revision`` cannot fetch its model (its init container fails)."""
    mine = [p for p in pods if _labels(p).get(c.LABEL_REVISION) == revision]
    problem = diagnose_pods(mine)
    return problem is not None and problem[0] == c.REASON_FETCH_FAILED


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def pod_set_of(deployment: Mapping[str, Any] | None) -> str | None:
    """The pod set a live Deployment selects (its selector is immutable: re-rendering must keep it)."""
    selector = ((deployment or {}).get("spec") or {}).get("selector") or {}
    return (selector.get("matchLabels") or {}).get(c.LABEL_POD_SET)


def stale_children(md_name: str, tracks: Sequence[Track], observed: Observed, rolled: bool,
                   services: Sequence[str] = (), routes: Sequence[str] = ()) -> tuple[tuple[str, str, str], ...]:
    """Children to delete, by observation (never by remembering what was replaced).

    - a config ConfigMap whose revision no track serves and no (non-terminated) pod runs;
    - a Deployment we own that no track names;
    - the pre-Secret model source ConfigMap ``<name>-model`` once the stable Deployment is rolled out
      and every pod runs a revision a track serves (no pod of the old template mounts it any more).

    >>> from modeldeploy.api.spec import parse_spec
    >>> spec = parse_spec("m", {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}})
    >>> cm = lambda name, rev: {"metadata": {"name": name, "uid": name + "-uid", "labels": {c.LABEL_REVISION: rev}}}
    >>> obs = Observed(deployments={}, pods=[{"metadata": {"labels": {c.LABEL_REVISION: "old"}}, "status": {}}],
    ...                config_maps=[cm("m-config-new", "new"), cm("m-config-old", "old"), cm("m-config-gone", "gone")])
    >>> stale_children("m", [Track("stable", "m-stable", "new", 1, spec)], obs, rolled=False)
    (('ConfigMap', 'm-config-gone', 'm-config-gone-uid'),)
    """
    keep = {t.revision for t in tracks}
    running = {_labels(p).get(c.LABEL_REVISION) for p in observed.pods
               if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")}
    out: list[tuple[str, str, str]] = []
    legacy = names.legacy_model_source_name(md_name)
    for cm in observed.config_maps:
        meta = cm.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(c.LABEL_COMPONENT) == c.COMPONENT_COMPRESSION:
            continue  # compression cache records are kept for re-use
        revision = labels.get(c.LABEL_REVISION)
        if revision is not None:
            if revision not in keep and revision not in running:
                out.append(("ConfigMap", meta["name"], meta.get("uid", "")))
        elif meta.get("name") == legacy and rolled and running <= keep:
            out.append(("ConfigMap", meta["name"], meta.get("uid", "")))
    wanted = {t.deployment for t in tracks}
    for name, dep in sorted(observed.deployments.items()):
        if name not in wanted:
            out.append(("Deployment", name, (dep.get("metadata") or {}).get("uid", "")))
            # its model source goes with it (Secrets are not watched: act reads it to check it is ours)
            out.append(("Secret", names.model_source_name(name), ""))
    for kind, live, keep in (("Service", observed.services, set(services)), ("HTTPRoute", observed.routes, set(routes))):
        for name, obj in sorted(live.items()):
            if name not in keep:
                out.append((kind, name, (obj.get("metadata") or {}).get("uid", "")))
    return tuple(sorted(out))


def stable_deployment(md_name: str, previous: Mapping[str, Any], observed: Observed) -> str:
    """The Deployment that serves: ``status.deployment`` when it exists (a per-revision one after a canary
    rollout), else ``<name>-stable``."""
    name = previous.get("deployment")
    return name if name in observed.deployments else names.deployment_name(md_name)


def plan(md_name: str, spec: Spec, revision: str, previous: Mapping[str, Any], observed: Observed,
         replicas: int | None = None) -> Plan:
    """What should exist and be done for ``spec`` (revision ``revision``) under the Rolling strategy, given
    the stored status and what was observed; ``replicas``: the autoscaler's total (default the spec's).
    See the module docstring."""
    name = stable_deployment(md_name, previous, observed)
    stable = Track(c.TRACK_STABLE, name, revision, spec.desired_replicas if replicas is None else replicas, spec,
                   pod_set=pod_set_of(observed.deployments.get(name)))
    deployment = observed.deployments.get(stable.deployment)
    rolled = rolled_out(deployment, stable.replicas)
    swap = None
    waiting = restart = False
    requeue = None
    if swap_due(previous, revision, spec):
        if rolled and observed.agent_reports is not None:
            swap = model_swap.plan(desired_model(spec), observed.agent_reports)
            restart = swap.restart
            if not swap.done:
                stalled = swap.condition is not None and swap.condition[2]
                requeue = SWAP_STALLED_POLL_SECONDS if stalled else SWAP_POLL_SECONDS
        else:
            waiting = True  # the Deployment's own events bring the next look
            # Pods that never got the old model (its fetch fails) have no agent to swap: replace them, so
            # they fetch the model the spec names now instead of retrying the old one with back-off.
            restart = fetch_failing(observed.pods, revision)
    elif observed.agent_reports is not None:
        # The steady-state check: status says every pod serves the spec's model; a pod whose agent says
        # otherwise (a replayed command, a hand-made load) is moved back. An agent that does not answer
        # proves nothing here and changes nothing.
        reachable = [r for r in observed.agent_reports if r.report is not None]
        check = model_swap.plan(desired_model(spec), reachable)
        if reachable and not check.done:
            swap, restart, requeue = check, check.restart, SWAP_POLL_SECONDS
    return Plan(
        tracks=(stable,),
        new_pods=previous.get("currentRevision") != revision,
        swap=swap,
        swap_waiting=waiting,
        restart=restart,
        prune=stale_children(md_name, (stable,), observed, rolled, services=(names.service_name(md_name),)),
        requeue_after=requeue,
    )
