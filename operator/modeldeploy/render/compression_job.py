"""Desired objects for ``spec.compression``: the compression Job and the cache record of its result.

Why content-addressed names: the Job and the output folder are named by a hash of (input model,
normalized recipe, compression image). So a re-applied or re-ordered but equal recipe finds the same
Job or the same result instead of starting another; two ModelDeployments with the same model and
recipe share one; a restarted operator that lost all memory finds the running Job by name and never
creates a second (creating an existing name fails with AlreadyExists). The image is part of the hash
because the image pins every tool version (onnx, onnxruntime, numpy) that shapes the output.

The input model is identified by ``spec.model.sha256`` when given; otherwise by its URI and version,
which is only as stable as what the URI points at (docs/compression.md says so: set sha256).

The Job (``restartPolicy: Never``):

- init container ``fetch-model``: the serving pods' fetcher, into an emptyDir ``/work/input``;
- container ``compress``: ``modeldeploy compress --recipe-json ... --out /store/<key>`` with the model
  store claim at ``/store``. Its termination message is the result summary
  (policy/compression_result.py), which the operator reads from the pod;
- ``podFailurePolicy``: exit code 3 (no variant passed the gate) fails the Job at once: a gate failure
  is a result, retrying it would compute the same numbers;
- restricted pod security (non-root, no privilege escalation, read-only root, ``fsGroup`` so the
  store is writable), ``/tmp`` an emptyDir.

The cache record is a ConfigMap ``modeldeploy-compressed-<key>`` holding the summary, owned by the Job
that produced it (its uid): the record is trusted only while that Job vouches for it
(policy/compression_result.py), so the Job is kept (no ``ttlSecondsAfterFinished``) for as long as the
ModelDeployment that created it, and both go with it. Deleting the record makes the next reconcile read
the result from the Job's pod again; deleting the Job runs it again.

Serving pods always fetch ``pvc://<claim>/<key>/selected/model.onnx``: no path is taken from a result.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any, Mapping

from modeldeploy.api import constants as c
from modeldeploy.api.spec import ModelSpec, Spec
from modeldeploy.policy.compression_result import SELECTED_FILE
from modeldeploy.render import names
from modeldeploy.render.triton import (FETCHER_UID, TERMINATION_MESSAGE_PATH, Owner, RenderOptions,
                                       fetch_container, fetch_volumes, pod_scheduling)

INPUT_DIR = "/work/input"
STORE_DIR = "/store"
KEY_IN_NAMES = 20  # hex digits of the key in object names: 80 bits, collision-free in practice
KEY_IN_LABEL = 40
GATE_FAILED_EXIT_CODE = 3  # modeldeploy compress's "no variant passed" (compress/command.py)
CACHE_DATA_KEY = "summary.json"
DEFAULT_CPU = "1"
DEFAULT_MEMORY = "2Gi"


def input_identity(model: ModelSpec) -> str:
    """What identifies the input model in the key: its digest, else its location."""
    if model.sha256:
        return f"sha256:{model.sha256}"
    return f"uri:{model.uri}#version={model.version}"


def job_name(key: str) -> str:
    return f"modeldeploy-compress-{key[:KEY_IN_NAMES]}"


def cache_name(key: str) -> str:
    return f"modeldeploy-compressed-{key[:KEY_IN_NAMES]}"


def served_uri(spec: Spec, key: str) -> str:
    """Where serving pods fetch a chosen variant: ``pvc://<store claim>/<key>/selected/model.onnx``, the
    one file a Job's result may name (never a path read from the result)."""
    assert spec.compression is not None
    if len(key) != 64 or any(ch not in "0123456789abcdef" for ch in key):
        raise ValueError(f"compression key {key!r} is not a SHA-256")
    return f"pvc://{spec.compression.claim_name}/{key}/{SELECTED_FILE}"


def served_spec(spec: Spec, key: str, summary: Mapping[str, Any]) -> Spec:
    """``spec`` with its model replaced by the chosen variant in the store (same name and version)."""
    model = replace(spec.model, uri=served_uri(spec, key), sha256=summary.get("sha256"),
                    credentials_secret=None)
    return replace(spec, model=model)


def _labels(owner: Owner, key: str) -> dict[str, str]:
    return {
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_COMPONENT: c.COMPONENT_COMPRESSION,
        c.LABEL_DEPLOYMENT: names.fit(owner.name),
        c.LABEL_COMPRESSION_KEY: key[:KEY_IN_LABEL],
    }


def _scheduling(spec: Spec) -> dict[str, Any]:
    """The Job's own placement when set, else spec.placement; GPU conventions only for a GPU Job."""
    assert spec.compression is not None
    job = spec.compression.job
    return pod_scheduling(spec.placement.node_selector if job.node_selector is None else job.node_selector,
                          spec.placement.tolerations if job.tolerations is None else job.tolerations, job.gpu)


def _resources(spec: Spec) -> dict[str, Any]:
    assert spec.compression is not None
    job = spec.compression.job
    amounts: dict[str, Any] = {"cpu": job.cpu or DEFAULT_CPU, "memory": job.memory or DEFAULT_MEMORY}
    if job.gpu > 0:
        amounts[c.GPU_RESOURCE] = str(job.gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def render_job(owner: Owner, spec: Spec, key: str, recipe: Mapping[str, Any], options: RenderOptions
               ) -> dict[str, Any]:
    """The compression Job for ``spec`` (``spec.compression`` set, model format onnx) under ``key``.

    ``recipe`` is the normalized recipe (``parse_recipe(...).to_dict()`` is not what the CLI reads;
    pass ``spec.compression.recipe``, the user's own keys, which the CLI parses the same way).
    """
    assert spec.compression is not None
    model = spec.model
    labels = _labels(owner, key)
    fetch = fetch_container(spec, options, repository=INPUT_DIR, volume="input")
    compress = {
        "name": "compress",
        "image": options.fetcher_image,
        "args": [
            "compress",
            "--model", f"{INPUT_DIR}/{model.name}/{model.version}/model.onnx",
            "--recipe-json", json.dumps(dict(recipe), sort_keys=True, separators=(",", ":")),
            "--out", f"{STORE_DIR}/{key}",
            "--termination-log", TERMINATION_MESSAGE_PATH,
        ],
        "env": [{"name": "TMPDIR", "value": "/tmp"}, {"name": "HOME", "value": "/tmp"}, *fetch.get("env", [])],
        **({"envFrom": copy.deepcopy(fetch["envFrom"])} if "envFrom" in fetch else {}),
        "resources": _resources(spec),
        # The dataset is read with the fetcher's readers: same credentials, and the model's claim (a
        # pvc:// dataset on it) where the fetcher mounts it.
        "volumeMounts": [
            {"name": "input", "mountPath": INPUT_DIR, "readOnly": True},
            {"name": "store", "mountPath": STORE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            *[m for m in fetch["volumeMounts"] if m["name"] != "input"],
        ],
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": copy.deepcopy(fetch["securityContext"]),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "initContainers": [fetch],
        "containers": [compress],
        "volumes": [
            {"name": "input", "emptyDir": {}},
            {"name": "store", "persistentVolumeClaim": {"claimName": spec.compression.claim_name}},
            {"name": "tmp", "emptyDir": {}},
            *fetch_volumes(spec),
        ],
        "securityContext": {"runAsNonRoot": True, "runAsUser": FETCHER_UID, "runAsGroup": FETCHER_UID,
                            "fsGroup": FETCHER_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,  # the Job talks to no API: its result is its termination message
        **_scheduling(spec),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(key),
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": {c.ANNOTATION_OWNER: owner.name, c.ANNOTATION_COMPRESSION_KEY: key},
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "backoffLimit": spec.compression.job.backoff_limit,
            "activeDeadlineSeconds": spec.compression.job.active_deadline_seconds,
            "podFailurePolicy": {"rules": [{
                "action": "FailJob",
                "onExitCodes": {"containerName": "compress", "operator": "In",
                                "values": [GATE_FAILED_EXIT_CODE]},
            }]},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {c.ANNOTATION_OWNER: owner.name}},
                "spec": pod_spec,
            },
        },
    }


def render_cache_record(owner: Owner, generation: int, key: str, summary: Mapping[str, Any],
                        job: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap that remembers a finished compression (chosen or gate-failed) under ``key``, owned by
    the ``job`` that produced it (which vouches for it, and takes it along when it goes)."""
    job_meta = job["metadata"]
    labels = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_COMPONENT: c.COMPONENT_COMPRESSION,
              c.LABEL_COMPRESSION_KEY: key[:KEY_IN_LABEL]}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": cache_name(key),
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": {c.ANNOTATION_COMPRESSION_KEY: key,
                            c.ANNOTATION_PRODUCER: f"{owner.uid}/{generation}"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_meta["name"],
                                 "uid": job_meta["uid"]}],
        },
        "data": {CACHE_DATA_KEY: json.dumps(dict(summary), sort_keys=True, separators=(",", ":"))},
    }
