"""Specs the CRD must refuse at ``kubectl apply`` and ``parse_spec`` must refuse too, naming the same field.

The outside review's held-out bad specs (issue 11, "Errors that say what is wrong") and their neighbours:
each passed the old schema, after which no valid child could be built and the object retried forever as
ApplyFailed. Used by tests/unit/test_spec.py (parse_spec raises SpecError with ``field``) and by
tests/integration/test_validation.py (the real API server answers 422 naming ``field``).

Each case: (name of the ModelDeployment, changes to a valid spec, the field both must name).
"""

from __future__ import annotations

import copy

VALID_SPEC = {"model": {"uri": "s3://bucket/model.onnx", "format": "onnx"}}
MODEL = VALID_SPEC["model"]
TERM = "spec.placement.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
ANTI = "spec.placement.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution"
JOB = {"quantization": {"mode": "fp16"}, "modelStore": {"claimName": "store"},
       "evaluation": {"dataset": "builtin://digits"}}

BAD_SPECS: dict[str, tuple[str, dict, str]] = {
    "name starts with a digit": ("7digits", {}, "metadata.name"),
    "name with a dot": ("digits.v2", {}, "metadata.name"),
    "name is a number": ("1", {}, "metadata.name"),
    "model name ends with a dot": ("v", {"model": {**MODEL, "name": "digits."}}, "spec.model.name"),
    "model name ends with a dash": ("v", {"model": {**MODEL, "name": "k-"}}, "spec.model.name"),
    "credentials secret with capitals": ("v", {"model": {**MODEL, "credentialsSecret": "AWS_Creds"}},
                                         "spec.model.credentialsSecret"),
    "image with a space": ("v", {"serving": {"image": "nvcr.io/nvidia/triton server:25.10"}}, "spec.serving.image"),
    "gpu product with a space": ("v", {"resources": {"gpu": {"product": "NVIDIA H100"}}}, "spec.resources.gpu.product"),
    "cpu lots": ("v", {"resources": {"cpu": "lots"}}, "spec.resources.cpu"),
    "memory beyond 64 bits": ("v", {"resources": {"memory": "99999999999999999999Ti"}}, "spec.resources.memory"),
    "job cpu lots": ("v", {"compression": {**JOB, "job": {"resources": {"cpu": "lots"}}}},
                     "spec.compression.job.resources.cpu"),
    "job memory negative": ("v", {"compression": {**JOB, "job": {"resources": {"memory": "-1Gi"}}}},
                            "spec.compression.job.resources.memory"),
    "claim name with capitals": ("v", {"compression": {**JOB, "modelStore": {"claimName": "Store"}}},
                                 "spec.compression.modelStore.claimName"),
    "node selector key with a space": ("v", {"placement": {"nodeSelector": {"bad key": "x"}}},
                                       "spec.placement.nodeSelector"),
    "node selector value ending with a dash": ("v", {"placement": {"nodeSelector": {"pool": "gpu-"}}},
                                               "spec.placement.nodeSelector"),
    "toleration key with a space": ("v", {"placement": {"tolerations": [{"key": "bad key", "operator": "Exists"}]}},
                                    "spec.placement.tolerations[0].key"),
    "toleration Exists with a value": ("v", {"placement": {"tolerations": [
        {"key": "k", "operator": "Exists", "value": "v"}]}}, "spec.placement.tolerations[0].value"),
    "toleration without key or Exists": ("v", {"placement": {"tolerations": [{"value": "v"}]}},
                                         "spec.placement.tolerations[0].operator"),
    "toleration seconds without NoExecute": ("v", {"placement": {"tolerations": [
        {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}]}},
        "spec.placement.tolerations[0].tolerationSeconds"),
    "toleration value too long": ("v", {"placement": {"tolerations": [{"key": "k", "value": "x" * 64}]}},
                                  "spec.placement.tolerations[0].value"),
    "job toleration without key or Exists": ("v", {"compression": {**JOB, "job": {"placement": {
        "tolerations": [{"value": "v"}]}}}}, "spec.compression.job.placement.tolerations[0].operator"),
    "affinity In without values": ("v", {"placement": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": []}]}]}}}}},
        f"{TERM}[0].matchExpressions[0].values"),
    "affinity without terms": ("v", {"placement": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}}, TERM),
    "affinity of the wrong type": ("v", {"placement": {"affinity": {"nodeAffinity": "zone-a"}}},
                                   "spec.placement.affinity.nodeAffinity"),
    "affinity key with a space": ("v", {"placement": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "bad key", "operator": "Exists"}]}]}}}}},
        f"{TERM}[0].matchExpressions[0].key"),
    "anti-affinity without topology key": ("v", {"placement": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "x"}}}]}}}},
        f"{ANTI}[0].topologyKey"),
}


def bad_spec(case: str) -> tuple[str, dict, str]:
    """(name, spec, field) of a case: a deep copy of the valid spec with the case's changes."""
    name, changes, field = BAD_SPECS[case]
    spec = copy.deepcopy(VALID_SPEC)
    spec.update(copy.deepcopy(changes))
    return name, spec, field
