"""One look at a ModelDeployment's compression: find the result, or follow (or start) the Job.

Order, cheapest and most durable first: the cache record (a ConfigMap named by the content key,
written once a Job finished with a result) -> the Job of that key (created if absent) -> its pods'
termination messages once the Job finished. A finished result is recorded before anything is rolled
out, so the serving rollout that follows, an operator restart, or a second ModelDeployment with the
same key all find it without running a Job again.

Trust: names are computable from public inputs, so a record is believed only when the Job this
operator created for the key vouches for it (the record is owned by that Job's uid), and a Job only
when it carries the key and a ModelDeployment as its controller; only the Job's own pods are read;
every result document goes through ``validate_summary`` (known, bounded fields; the served file is
always ``selected/model.onnx`` under the key). See policy/compression_result.py.

Level-based like the rest of the reconciler: no memory between calls; a Job that already exists is
followed, never created twice (names are deterministic, creation is idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from modeldeploy.adapters.kube import Kube
from modeldeploy.reconcile.interfaces import ClusterView, KubeWriter
from modeldeploy.api import constants as c
from modeldeploy.api.spec import Spec
from modeldeploy.policy import compression_job as policy
from modeldeploy.policy import compression_result as result
from modeldeploy.policy.compression import RecipeError, parse_recipe, recipe_hash
from modeldeploy.render import compression_job as render
from modeldeploy.render.triton import Owner, RenderOptions

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


@dataclass(frozen=True)
class Settled:
    outcome: policy.Outcome
    key: str | None = None
    job: str | None = None
    cached: bool = False
    serve: Spec | None = None  # the spec to roll out (its model is the chosen variant), when servable
    waiting_on: str | None = None  # the Job to watch while it runs

    def status_block(self) -> dict[str, Any]:
        return policy.status_block(self.key, self.job, self.outcome, self.cached)


def compression_key(spec: Spec, options: RenderOptions) -> str:
    """Content hash of (input model, normalized recipe, compression image). Raises RecipeError, also
    for a recipe without a dataset (the Job could only fail)."""
    assert spec.compression is not None
    recipe = parse_recipe(spec.compression.recipe)
    if not recipe.dataset:
        raise RecipeError("evaluation.dataset: required (e.g. builtin://digits, or an .npz URI)")
    return recipe_hash(render.input_identity(spec.model), recipe.to_dict(), {"image": options.fetcher_image})


def _cached(kube: Kube, namespace: str, key: str, job: Mapping[str, Any] | None
            ) -> tuple[Mapping[str, Any], str] | None:
    """The cache record's summary and producer, when the record is there and ``job`` vouches for it."""
    record = kube.get_config_map(namespace, render.cache_name(key))
    if record is None:
        return None
    annotations = record["metadata"].get("annotations") or {}
    if annotations.get(c.ANNOTATION_COMPRESSION_KEY) != key or not result.record_vouched(record, job):
        return None  # a 20-digit prefix collision, a foreign object, or a Job that is gone: never trust it
    try:
        summary = result.validate_summary(json.loads((record.get("data") or {}).get(render.CACHE_DATA_KEY, "")))
    except ValueError:
        return None
    return summary, annotations.get(c.ANNOTATION_PRODUCER, "")


def settle(kube: Kube, owner: Owner, generation: int, spec: Spec, options: RenderOptions) -> Settled:
    """Where ``spec.compression`` stands for this generation; starts the Job when nothing is known."""
    assert spec.compression is not None
    if spec.model.format != "onnx":
        return Settled(policy.Outcome(policy.INVALID, f"spec.compression: needs spec.model.format onnx, "
                                                      f"got {spec.model.format}"))
    try:
        key = compression_key(spec, options)
    except RecipeError as err:
        return Settled(policy.Outcome(policy.INVALID, f"spec.compression: {err}"))
    job_name = render.job_name(key)

    job = kube.get_job(owner.namespace, job_name)
    problem = None if job is None else result.job_problem(job, key, job_name, c.KIND, c.ANNOTATION_COMPRESSION_KEY)
    if problem:
        return Settled(policy.Outcome(policy.FAILED, f"{problem}: delete it, and the operator creates its own"),
                       key, job_name)
    found = _cached(kube, owner.namespace, key, job)
    if found is not None:
        summary, produced_by = found
        return _finished(spec, key, job_name, policy.from_summary(summary),
                         cached=not produced_by.startswith(f"{owner.uid}/"))

    if job is None:
        job = kube.create_job(render.render_job(owner, spec, key, spec.compression.recipe, options))
    pods = result.own_pods(job, kube.list_pods(owner.namespace, f"{JOB_NAME_LABEL}={job_name}"))
    outcome = policy.job_outcome(job, pods)
    if outcome.summary is not None:
        # A result: record it before rolling anything out, so nobody needs this Job's pod again.
        kube.apply(render.render_cache_record(owner, generation, key, outcome.summary, job))
        mine = (job["metadata"].get("annotations") or {}).get(c.ANNOTATION_OWNER) == owner.name
        return _finished(spec, key, job_name, outcome, cached=not mine)
    waiting = job_name if outcome.state == policy.RUNNING else None
    return Settled(outcome, key, job_name, cached=False, waiting_on=waiting)


def _finished(spec: Spec, key: str, job_name: str, outcome: policy.Outcome, cached: bool) -> Settled:
    serve = render.served_spec(spec, key, outcome.summary) if outcome.servable else None  # type: ignore[arg-type]
    return Settled(outcome, key, job_name, cached=cached, serve=serve)


class CachedIO:
    """What :func:`settle` needs, over the watch cache (reads) and the writer (writes)."""

    def __init__(self, view: ClusterView, kube: KubeWriter):
        self.view, self.kube = view, kube

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.view.get("ConfigMap", namespace, name)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.view.get("Job", namespace, name)

    def create_job(self, job: Mapping[str, Any]) -> dict[str, Any]:
        created = self.kube.create_job(job)
        self.view.store("Job", created)
        return created

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        label, _, value = selector.partition("=")
        return self.view.labelled("Pod", namespace, label, value)

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        applied = self.kube.apply(obj)
        self.view.store(obj["kind"], applied)
        return applied

