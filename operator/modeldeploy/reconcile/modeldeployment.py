"""One reconcile of one ModelDeployment: observe -> plan -> render -> act -> one status write.

It reads as Argo Rollouts' ``rollout/canary.go``:

1. **observe** (reconcile/observe.py): the object and its children from the watch cache, the agents
   only when a model swap is due — no API request;
2. **plan** (policy/plan.py, pure): the tracks that should serve, the swap step, what to prune, when
   to look again;
3. **render** (render/triton.py, pure): the desired objects of each track;
4. **act** (reconcile/act.py): ownership-checked applies of what changed, agent commands, prunes;
5. **status** (policy/status.py, pure): computed whole from what was planned and observed, diffed
   against the stored status, and written once — or not at all when nothing changed.

Every way out (invalid spec, a name taken by someone else's object, an API error, a compression that
holds the rollout) goes through the same status step, so there is exactly one status write per
reconcile. Level-based: only the object as it is now matters, so the function is safe to call for
any event and twice in a row. No Kopf here: the handlers decide when to call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping

from modeldeploy.adapters.cache import owned_by
from modeldeploy.adapters.kube import KubeError
from modeldeploy.adapters.prometheus import SeriesProvider
from modeldeploy.api import constants as c
from modeldeploy.api.redact import redact_uri, uri_fingerprint
from modeldeploy.api.spec import SpecError, parse_spec, unimplemented_fields
from modeldeploy.policy import canary as canary_policy
from modeldeploy.policy import commands, compression_job, rollout
from modeldeploy.policy import plan as planning
from modeldeploy.policy.pods import diagnose_pods
from modeldeploy.policy.status import Observation, compute_status, status_changed, transition_event
from modeldeploy.reconcile import canary, compression
from modeldeploy.reconcile.act import Actor, AppliedMemo, Conflict
from modeldeploy.reconcile.agents import AgentCommands
from modeldeploy.reconcile.interfaces import Agents, ClusterView, KubeWriter
from modeldeploy.reconcile.autoscaling import Autoscaler
from modeldeploy.reconcile.observe import children, observe
from modeldeploy.render import names
from modeldeploy.render import traffic as traffic_render
from modeldeploy.render.triton import Owner, RenderOptions, render_service, render_track

log = logging.getLogger(__name__)

#: HTTP status of an API-server rejection of the object itself (a field no valid child can have).
UNPROCESSABLE = 422
#: Ready/Stalled reason when a child's name is taken by an object that is not ours.
REASON_NAME_TAKEN = "NameTaken"
#: Seconds between two steady-state checks of what the pods' agents serve (agent GETs, no API request).
VERIFY_SECONDS = 300.0


@dataclass(frozen=True)
class Result:
    status: dict[str, Any] | None
    written: bool = False  # status was written (it changed)
    events: tuple[tuple[str, str, str], ...] = ()  # (type, reason, message): a phase transition, canary steps
    retry: str | None = None  # a transient failure worth retrying, else None
    requeue_after: float | None = None  # look again after this many seconds (an in-place swap runs)
    compression_job: str | None = None  # a running compression Job this ModelDeployment waits for
    gone: bool = False  # the ModelDeployment no longer exists (or is being deleted)

    @property
    def event(self) -> tuple[str, str, str] | None:
        """The phase-transition Event, if any (the first Event)."""
        return self.events[0] if self.events else None


def _selector_string(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@dataclass
class Reconciler:
    """Reconciles ModelDeployments read from ``view`` (the watch cache), writing through ``kube``."""

    view: ClusterView
    kube: KubeWriter
    options: RenderOptions
    now: Callable[[], datetime]
    agents: Agents | None = None
    metrics: SeriesProvider | None = None  # Prometheus, for canary analysis (None: every analysis is NoData)
    memo: AppliedMemo = field(default_factory=AppliedMemo)
    autoscaler: Autoscaler | None = None
    #: Seconds between two steady-state checks of what each pod's agent serves (0: never).
    verify_seconds: float = VERIFY_SECONDS

    def __post_init__(self) -> None:
        if self.autoscaler is None:
            self.autoscaler = Autoscaler(self.metrics)
        self.commands = AgentCommands(self.kube, self.agents, lambda: self.now())  # now may be replaced
        self._verified: dict[tuple[str, str], float] = {}

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is kept in memory about a ModelDeployment that is gone."""
        self.autoscaler.forget(namespace, name)  # type: ignore[union-attr]
        self._verified.pop((namespace, name), None)
        self.commands.forget(namespace, name)

    def reconcile(self, namespace: str, name: str) -> Result:
        body = self.view.get(c.KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.forget(namespace, name)
            return Result(status=None, gone=True)
        meta = body["metadata"]
        previous = body.get("status") or {}
        owner = Owner(name=name, namespace=namespace, uid=meta["uid"])
        obs, extra = self._observe_plan_act(body, owner, previous)
        status = compute_status(obs, previous, self.now())
        written = status_changed(previous, status)
        if written:
            stored = self.kube.patch_status(namespace, name, status)
            if stored is None:
                return Result(status=status, gone=True)
            self.view.store(c.KIND, stored)
        if extra.pop("clear_command", False):  # after status holds the outcome (policy/commands.py)
            self.kube.patch_model_deployment(namespace, name, commands.clear_patch())
        transition = transition_event(previous, status)
        events = ((transition,) if transition else ()) + tuple(extra.pop("events", ()))
        return Result(status=status, written=written, events=events, **extra)

    # --- the steps -----------------------------------------------------------------------------
    def _observe_plan_act(self, body: Mapping[str, Any], owner: Owner, previous: Mapping[str, Any]
                          ) -> tuple[Observation, dict[str, Any]]:
        """The Observation the status is computed from, and the Result's extra fields."""
        generation = body["metadata"].get("generation", 1)
        try:
            spec = parse_spec(owner.name, body.get("spec") or {})
        except SpecError as err:
            return Observation(generation=generation, desired_replicas=0, spec_error=str(err)), {}

        selector = names.selector_labels(owner.name)
        base: dict[str, Any] = dict(
            generation=generation,
            desired_replicas=spec.desired_replicas,
            deployment_name=names.deployment_name(owner.name),
            service_name=names.service_name(owner.name),
            namespace=owner.namespace,
            selector=_selector_string(selector),
            model_name=spec.model.name,
            model_version=spec.model.version,
            unimplemented=tuple(unimplemented_fields(spec)),
        )
        extra: dict[str, Any] = {}
        if spec.compression is not None:
            try:
                settled = compression.settle(compression.CachedIO(self.view, self.kube), owner, generation, spec,
                                             self.options)
            except KubeError as err:
                return Observation(**base, apply_error=str(err)), {"retry": str(err)}
            base.update(compressed=compression_job.compressed_condition(settled.outcome),
                        compression=settled.status_block())
            extra["compression_job"] = settled.waiting_on
            if settled.serve is None:
                return self._held(owner, previous, base, settled), extra
            spec = settled.serve
            base.update(model_uri=redact_uri(spec.model.uri), model_sha256=spec.model.sha256)

        revision = names.revision_of(spec, self.options.triton_image, self.options.fetcher_image)
        kids = children(self.view, owner.namespace, owner.name, owner.uid)
        total = spec.desired_replicas
        if spec.autoscaling is not None:
            total = self._autoscale(owner, spec, kids, previous, base, extra)
        if spec.canary is not None:
            return self._canary(body, owner, previous, spec, revision, base, extra, kids, total)
        base["revision"] = revision
        base["desired_replicas"] = total
        key, clock = (owner.namespace, owner.name), self.now().timestamp()
        verify = self.verify_seconds > 0 and clock - self._verified.get(key, 0.0) >= self.verify_seconds
        observed = observe(kids, self.agents, owner.name, spec, revision, previous, total, verify=verify)
        plan = planning.plan(owner.name, spec, revision, previous, observed, replicas=total)
        if observed.agent_reports is not None and (plan.swap is None or plan.swap.done):
            self._verified[key] = clock  # every reachable pod serves what status says
        if self.verify_seconds > 0 and self.agents is not None:
            extra["requeue_after"] = _earliest(extra.get("requeue_after"), self.verify_seconds)

        actor = Actor(self.view, self.kube, self.memo, owner.uid)
        try:
            deployment = self._act(actor, owner, spec, plan, observed, generation)
        except Conflict as err:
            return Observation(**base, blocked=(REASON_NAME_TAKEN, str(err))), {}
        except KubeError as err:
            if err.status == UNPROCESSABLE:  # no retry makes an invalid object valid: a person must act
                return Observation(**base, blocked=(c.REASON_INVALID_SPEC, str(err))), {}
            return Observation(**base, apply_error=str(err), deployment=observed.deployments.get(
                plan.stable.deployment)), {"retry": str(err)}

        problem = _problem(deployment, total, observed.pods, revision)
        base["deployment_name"] = plan.stable.deployment
        swap_condition, swap_block, served = _swap_status(plan, spec, previous)
        base.update(model_name=served.get("name"), model_version=served.get("version"), model_uri=served.get("uri"),
                    model_sha256=served.get("sha256"), model_fingerprint=served.get("uriFingerprint"))
        extra["requeue_after"] = _earliest(plan.requeue_after, extra.get("requeue_after"))
        return Observation(**base, deployment=deployment, pod_problem=problem, swap=swap_condition,
                           model_swap=swap_block, replica_failure=_replica_failure(deployment)), extra

    def _tracks(self, actor: Actor, owner: Owner, tracks, observed: planning.Observed) -> dict[str, Any]:
        """Apply (or only scale) every track's Deployment and what it mounts; the live Deployments by role."""
        live: dict[str, Any] = {}
        for track in tracks:
            if not track.render:
                dep = observed.deployments[track.deployment]
                actor.scale(dep, track.replicas)
                live[track.role] = observed.deployments.get(track.deployment)
                continue
            for obj in render_track(owner, track.spec, track.revision, self.options, track.role, track.deployment,
                                    track.replicas, track.pod_set):
                applied = actor.ensure(obj)
                if obj["kind"] == "Deployment":
                    live[track.role] = applied
        return live

    def _act(self, actor: Actor, owner: Owner, spec, plan: planning.Plan, observed: planning.Observed,
             generation: int) -> dict[str, Any] | None:
        """Apply every track's objects and the Service, tell agents, prune. Returns the stable Deployment."""
        if plan.new_pods:
            self.commands.ensure_token(owner, spec)
        stable = self._tracks(actor, owner, plan.tracks, observed).get(c.TRACK_STABLE)
        actor.ensure(render_service(owner, spec))
        if plan.swap is not None:
            self.commands.swap(owner, spec, plan.swap, list(observed.pods), generation)
        if plan.restart:  # like `kubectl rollout restart`; the same model again is a no-op
            self.kube.stamp_pod_template(owner.namespace, plan.stable.deployment, c.ANNOTATION_MODEL_FILES,
                                         names.short_hash(planning.desired_model(spec).files_key()))
        for kind, name, uid in plan.prune:
            actor.delete(kind, owner.namespace, name, uid)
        return stable

    def _autoscale(self, owner: Owner, spec, kids: planning.Observed, previous: Mapping[str, Any],
                   base: dict[str, Any], extra: dict[str, Any]) -> int:
        """The autoscaler's total for now (reconcile/autoscaling.py); status block, condition, Events, next look."""
        running = (previous.get("canary") or {})
        weight = running.get("weight") if running.get("phase") in canary_policy.ACTIVE else None
        current = sum(int(((d.get("spec") or {}).get("replicas")) or 0) for d in kids.deployments.values())
        look = self.autoscaler.look(spec.autoscaling, owner.namespace, owner.name, spec.model.name, current,
                                    kids.pods, previous.get("autoscaling"), self.now(), canary_weight=weight,
                                    spec_replicas_ignored=True)  # THE RULE: autoscaling wins (api/spec.py)
        base.update(autoscaling=look.status, extra_conditions=(look.condition,))
        extra["events"] = list(extra.get("events", ())) + list(look.events)
        extra["requeue_after"] = look.requeue_after
        return look.replicas

    def _canary(self, body: Mapping[str, Any], owner: Owner, previous: Mapping[str, Any], spec, template_revision: str,
                base: dict[str, Any], extra: dict[str, Any], observed: planning.Observed,
                total: int) -> tuple[Observation, dict[str, Any]]:
        """``strategy: Canary``: revisions side by side, traffic split, judged, promoted or rolled back."""
        now = self.now()
        rnd = canary.plan_round(observed, self.metrics, body, spec, template_revision, previous, now, total)
        decision, roles = rnd.decision, rnd.roles
        stable_track = rnd.tracks[0]
        base.update(revision=stable_track.revision, deployment_name=stable_track.deployment)
        rolled = planning.rolled_out(observed.deployments.get(stable_track.deployment), stable_track.replicas)
        services, routes = [names.service_name(owner.name)], []
        if roles.traffic is not None:
            services += [names.role_service_name(owner.name, c.TRACK_STABLE)]
            if roles.traffic.canary_revision:
                services.append(names.role_service_name(owner.name, c.TRACK_CANARY))
            routes.append(names.service_name(owner.name))
        prune = planning.stale_children(owner.name, rnd.tracks, observed, rolled, services, routes)
        actor = Actor(self.view, self.kube, self.memo, owner.uid)
        try:
            if previous.get("currentRevision") != stable_track.revision or len(rnd.tracks) > 1:
                self.commands.ensure_token(owner, spec)
            live = self._tracks(actor, owner, rnd.tracks, observed)
            actor.ensure(render_service(owner, spec))
            if roles.traffic is not None:
                for obj in _traffic_objects(owner, spec, roles.traffic):
                    actor.ensure(obj)
            for kind, name, uid in prune:
                actor.delete(kind, owner.namespace, name, uid)
        except Conflict as err:
            return Observation(**base, blocked=(REASON_NAME_TAKEN, str(err))), extra
        except KubeError as err:
            if err.status == UNPROCESSABLE:
                return Observation(**base, blocked=(c.REASON_INVALID_SPEC, str(err))), extra
            return Observation(**base, apply_error=str(err), deployment=observed.deployments.get(
                stable_track.deployment)), {**extra, "retry": str(err)}

        deployment = live.get(c.TRACK_STABLE)
        served = model_status(spec) if stable_track.render else (previous.get("model") or model_status(spec))
        base.update(model_name=served.get("name"), model_version=served.get("version"), model_uri=served.get("uri"),
                    model_sha256=served.get("sha256"), model_fingerprint=served.get("uriFingerprint"))
        extra.update(requeue_after=_earliest(decision.requeue_after, extra.get("requeue_after")),
                     clear_command=decision.clear_command,
                     events=list(extra.get("events", ())) + [(e.type, e.reason, e.message) for e in decision.events])
        base["desired_replicas"] = stable_track.replicas
        base["extra_conditions"] = tuple(base.get("extra_conditions", ())) + tuple(decision.conditions)
        return Observation(**base, deployment=deployment,
                           pod_problem=_problem(deployment, stable_track.replicas, observed.pods, stable_track.revision),
                           replica_failure=_replica_failure(deployment), swap=canary.condition(decision),
                           canary=decision.status or None), extra

    def _held(self, owner: Owner, previous: Mapping[str, Any], base: dict[str, Any],
              settled: compression.Settled) -> Observation:
        """Compression has not produced a servable model (running, gate failed, Job failed, bad recipe):
        apply nothing, so whatever Deployment exists keeps serving the previous model, and say so."""
        deployment = self.view.get("Deployment", owner.namespace, base["deployment_name"])
        if deployment is not None and not owned_by(deployment, owner.uid):
            deployment = None
        served = previous.get("model") or {}
        if deployment is None:
            base.update(service_name=None, model_name=None)
        else:
            base.update(revision=previous.get("currentRevision"), model_name=served.get("name", base["model_name"]),
                        model_version=served.get("version"), model_uri=served.get("uri"),
                        model_sha256=served.get("sha256"))
        return Observation(**base, deployment=deployment, hold=compression_job.hold_reason(settled.outcome))


def _swap_status(plan: planning.Plan, spec, previous: Mapping[str, Any]
                 ) -> tuple[tuple[str, str, bool] | None, dict[str, Any] | None, Mapping[str, Any]]:
    """(Ready override, status.modelSwap, status.model) for the swap part of ``plan``."""
    if plan.swap_waiting:
        return None, None, previous.get("model") or model_status(spec)
    swap = plan.swap
    if swap is None or swap.done:
        return None, None, model_status(spec)
    desired = planning.desired_model(spec)
    block = {"version": desired.version, "uri": desired.uri, "podsServing": swap.serving, "pods": swap.total,
             "podStates": dict(swap.pods)}
    block["uri"] = redact_uri(desired.uri)
    return swap.condition, block, previous.get("model") or {}


def model_status(spec) -> dict[str, Any]:
    """``status.model`` for the model ``spec`` names: the URI redacted (a presigned URL's signature is a
    credential) with a fingerprint of the whole URI, which is what comparisons use."""
    model = spec.model
    out: dict[str, Any] = {"name": model.name, "version": model.version, "uri": redact_uri(model.uri),
                           "uriFingerprint": uri_fingerprint(model.uri)}
    if model.sha256:
        out["sha256"] = model.sha256
    return out


def _earliest(*delays: float | None) -> float | None:
    """The soonest of the requested later looks (None: no look requested)."""
    chosen = [d for d in delays if d]
    return min(chosen) if chosen else None


def _problem(deployment: Mapping[str, Any] | None, want: int, pods, revision: str) -> tuple[str, str] | None:
    """Why replicas of ``revision`` are missing (policy/pods.py), looked for only when some are."""
    if ((deployment or {}).get("status") or {}).get("availableReplicas", 0) >= want:
        return None
    mine = [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION) == revision]
    return diagnose_pods(mine or pods)


def _traffic_objects(owner: Owner, spec, traffic: rollout.Traffic) -> list[dict[str, Any]]:
    """Role Services and the HTTPRoute of a canary with Gateway API routing (render/traffic.py)."""
    ref, ns, model = owner.reference(), owner.namespace, spec.model.name
    objs = [traffic_render.role_service(ref, ns, owner.name, model, c.TRACK_STABLE, traffic.stable_revision)]
    if traffic.canary_revision:
        objs.append(traffic_render.role_service(ref, ns, owner.name, model, c.TRACK_CANARY, traffic.canary_revision))
    routing = traffic.routing
    header = routing.header_match.as_gateway_api() if (traffic.header and routing.header_match) else None
    objs.append(traffic_render.http_route(ref, ns, owner.name, model, [p.as_gateway_api() for p in routing.parent_refs],
                                          traffic.canary_weight if traffic.canary_revision else None, header,
                                          routing.hostnames))
    return objs


def _replica_failure(deployment: Mapping[str, Any] | None) -> str | None:
    """The Deployment's ReplicaFailure condition message (FailedCreate: a quota, Pod Security, an
    invalid pod), which no pod will ever show since none gets created."""
    for cond in ((deployment or {}).get("status") or {}).get("conditions") or ():
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return f"{cond.get('reason', 'ReplicaFailure')}: {cond.get('message', '')}".strip()
    return None
