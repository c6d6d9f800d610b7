"""One reconcile of one ModelDeployment: observe -> render -> apply -> compute status -> write if changed.

Level-based: the function looks only at the object as it is now, so it is safe to call for any event
(spec change, child drift, operator restart) and twice in a row. It imports no Kopf; the handlers
decide when to call it and turn its result into Events and retries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from modeldeploy.api import constants as c
from modeldeploy.api.spec import SpecError, parse_spec, unimplemented_fields
from modeldeploy.adapters.kube import Kube, KubeError
from modeldeploy.policy import compression_job
from modeldeploy.adapters.agent import AgentClient
from modeldeploy.reconcile import compression, model_swap
from modeldeploy.policy.pods import diagnose_pods
from modeldeploy.policy.status import Observation, compute_status, status_changed, transition_event
from modeldeploy.render import names
from modeldeploy.render.triton import AGENT_TOKEN_KEY, Owner, RenderOptions, render_children

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    status: dict[str, Any]
    written: bool  # status was written (it changed)
    event: tuple[str, str, str] | None  # (type, reason, message) for a phase transition
    retry: str | None  # a transient failure worth retrying (apply error), else None
    deployment_generation: int | None = None  # metadata.generation of the Deployment as applied/observed
    compression_job: str | None = None  # a running compression Job this ModelDeployment waits for
    requeue_after: float | None = None  # look again after this many seconds (an in-place swap runs)


def _selector_string(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def reconcile(kube: Kube, body: Mapping[str, Any], options: RenderOptions, now: Callable[[], datetime],
              observed_deployment: Mapping[str, Any] | None = None, agents: AgentClient | None = None) -> Result:
    """Apply the children and refresh status; with ``observed_deployment``, refresh status only.
    With ``agents``, running pods are moved to a new model version in place (reconcile/model_swap.py).

    The status-only path serves Deployment status events when the caller knows nothing was changed
    since its last apply (same generations): it saves three server-side applies per event.
    """
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    generation = meta.get("generation", 1)
    previous = body.get("status") or {}
    owner = Owner(name=name, namespace=namespace, uid=meta["uid"])

    try:
        spec = parse_spec(name, body.get("spec") or {})
    except SpecError as err:
        obs = Observation(generation=generation, desired_replicas=0, spec_error=str(err))
        return _finish(kube, namespace, name, previous, obs, now, retry=None)

    selector = names.selector_labels(name)
    base: dict[str, Any] = dict(
        generation=generation,
        desired_replicas=spec.desired_replicas,
        deployment_name=names.deployment_name(name),
        service_name=names.service_name(name),
        namespace=namespace,
        selector=_selector_string(selector),
        model_name=spec.model.name,
        model_version=spec.model.version,
        unimplemented=tuple(unimplemented_fields(spec)),
    )
    if spec.compression is not None:
        try:
            settled = compression.settle(kube, owner, generation, spec, options)
        except KubeError as err:
            obs = Observation(**base, apply_error=str(err))
            return _finish(kube, namespace, name, previous, obs, now, retry=str(err))
        base.update(compressed=compression_job.compressed_condition(settled.outcome),
                    compression=settled.status_block())
        if settled.serve is None:
            return _hold(kube, namespace, name, previous, base, settled, observed_deployment, now)
        spec = settled.serve
        base.update(model_uri=spec.model.uri, model_sha256=spec.model.sha256)

    revision = names.revision_of(spec, options.triton_image, options.fetcher_image)
    base["revision"] = revision
    deployment = observed_deployment
    if deployment is None:
        try:
            if previous.get("currentRevision") != revision:  # new pods are coming: their agents need it
                create_agent_token(kube, owner, spec)
            for obj in render_children(owner, spec, revision, options):
                applied = kube.apply(obj)
                if obj["kind"] == "Deployment":
                    deployment = applied
        except KubeError as err:
            obs = Observation(**base, apply_error=str(err))
            return _finish(kube, namespace, name, previous, obs, now, retry=str(err))

    problem = None
    dstatus = (deployment or {}).get("status") or {}
    if dstatus.get("availableReplicas", 0) < spec.desired_replicas:
        problem = diagnose_pods(kube.list_pods(namespace, _selector_string(selector)))
    swap = None
    if agents is not None and model_swap.needed(previous, revision, spec):
        swap = model_swap.SwapStep(served=previous.get("model"))  # wait for the rollout, then swap
        if _rolled_out(deployment, spec.desired_replicas):
            swap = model_swap.step(kube, agents, namespace, name, revision, spec, previous,
                                   _selector_string(selector), token=lambda: agent_token(kube, owner, spec))
    served = (swap.served if swap else None) or model_swap.model_status(spec)
    base.update(model_name=served.get("name"), model_version=served.get("version"), model_uri=served.get("uri"),
                model_sha256=served.get("sha256"))
    obs = Observation(**base, deployment=deployment, pod_problem=problem,
                      swap=swap.condition if swap else None, model_swap=swap.block if swap else None)
    result = _finish(kube, namespace, name, previous, obs, now, retry=None,
                     deployment_generation=(deployment or {}).get("metadata", {}).get("generation"))
    if swap and swap.requeue_after:
        result = Result(**{**result.__dict__, "requeue_after": swap.requeue_after})
    # Prune only on a status change into Ready: a finished rollout; steady-state events cost no list call.
    if result.written and result.status["phase"] == c.PHASE_READY:
        prune_config_maps(kube, namespace, name, keep={revision})
    return result


def create_agent_token(kube: Kube, owner: Owner, spec) -> None:
    """Make sure Secret ``<name>-agent-token`` exists (created once; one request, no read)."""
    kube.create_secret_token(owner.namespace, names.agent_token_name(owner.name), AGENT_TOKEN_KEY,
                             owner.reference(), names.common_labels(owner.name, spec.model.name))


def agent_token(kube: Kube, owner: Owner, spec) -> str | None:
    """The token of this ModelDeployment's model agents, for telling them to swap (read when needed,
    recreated if someone deleted the Secret: pods started after that get the new one)."""
    name = names.agent_token_name(owner.name)
    token = kube.read_secret_key(owner.namespace, name, AGENT_TOKEN_KEY)
    if token is None:
        create_agent_token(kube, owner, spec)
        token = kube.read_secret_key(owner.namespace, name, AGENT_TOKEN_KEY)
    return token


def _rolled_out(deployment: Mapping[str, Any] | None, want: int) -> bool:
    """Every replica runs the current template and is available (no rolling update under way)."""
    if deployment is None:
        return False
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    return (status.get("observedGeneration", 0) >= generation and status.get("updatedReplicas", 0) >= want
            and status.get("availableReplicas", 0) >= want and status.get("replicas", 0) == want)


def _hold(kube: Kube, namespace: str, name: str, previous: Mapping[str, Any], base: dict[str, Any],
          settled: compression.Settled, observed_deployment: Mapping[str, Any] | None,
          now: Callable[[], datetime]) -> Result:
    """Compression has not produced a servable model (running, gate failed, Job failed, bad recipe):
    apply nothing, so whatever Deployment exists keeps serving the previous model, and say so."""
    try:
        deployment = observed_deployment or kube.get_deployment(namespace, base["deployment_name"])
    except KubeError as err:
        obs = Observation(**base, apply_error=str(err))
        return _finish(kube, namespace, name, previous, obs, now, retry=str(err))
    served = previous.get("model") or {}
    if deployment is None:
        base.update(service_name=None, model_name=None)
    else:
        base.update(revision=previous.get("currentRevision"), model_name=served.get("name", base["model_name"]),
                    model_version=served.get("version"), model_uri=served.get("uri"),
                    model_sha256=served.get("sha256"))
    obs = Observation(**base, deployment=deployment, hold=compression_job.hold_reason(settled.outcome))
    result = _finish(kube, namespace, name, previous, obs, now, retry=None,
                     deployment_generation=(deployment or {}).get("metadata", {}).get("generation"))
    return Result(**{**result.__dict__, "compression_job": settled.waiting_on})


def _finish(kube: Kube, namespace: str, name: str, previous: Mapping[str, Any], obs: Observation,
            now: Callable[[], datetime], retry: str | None, deployment_generation: int | None = None) -> Result:
    status = compute_status(obs, previous, now())
    written = status_changed(previous, status)
    if written:
        kube.patch_status(namespace, name, status)
    return Result(status=status, written=written, event=transition_event(previous, status), retry=retry,
                  deployment_generation=deployment_generation)


def prune_config_maps(kube: Kube, namespace: str, name: str, keep: set[str]) -> list[str]:
    """Delete config ConfigMaps of revisions no longer served (only once the rollout finished)."""
    selector = f"{c.LABEL_DEPLOYMENT}={names.fit(name)},{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
    deleted = []
    for cm in kube.list_config_maps(namespace, selector):
        cm_meta = cm["metadata"]
        revision = (cm_meta.get("labels") or {}).get(c.LABEL_REVISION)
        if revision is not None and revision not in keep:  # <name>-model has no revision: never pruned
            kube.delete_config_map(namespace, cm_meta["name"])
            deleted.append(cm_meta["name"])
    return deleted
