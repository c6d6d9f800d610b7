"""Names, labels and revision hashes for the objects a ModelDeployment owns.

A revision is the hash of everything that changes what a serving pod runs (model name and format,
serving config, resources, placement, and the images the operator would use); the model's location
and version are not part of it, since running pods swap versions in place. Children carry it as a label so
that two revisions of one ModelDeployment can run side by side during a canary rollout, and so that a
spec change that does not touch the pods (e.g. replicas) creates no new revision.

Kubernetes caps label values and Service names at 63 characters; long names are cut and suffixed with
a short hash so they stay unique and stable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from modeldeploy.api import constants as c
from modeldeploy.api.spec import Spec

MAX_LABEL = 63


def short_hash(data: Any, length: int = 10) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def fit(name: str, limit: int = MAX_LABEL) -> str:
    """``name`` if it fits ``limit``, else a prefix plus a hash of the whole name (still unique, still stable)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def revision_of(spec: Spec, triton_image: str, fetcher_image: str = "") -> str:
    """Revision hash of the pod-relevant parts of a parsed spec (replicas, rollout, autoscaling excluded).

    Hashing the parsed, defaulted spec means a default filled by the API server and the same default
    filled by ``parse_spec`` give the same revision. Both images the pod runs are part of it.
    """
    relevant: dict[str, Any] = {k: asdict(getattr(spec, k)) for k in ("serving", "resources", "placement")}
    # The model's location and version are not in the pod template (the Secret <deployment>-model is;
    # running pods swap versions in place), except what shapes the pod: its name and format, the
    # credentials Secret, and the claim a pvc:// model mounts.
    model = spec.model
    claim = model.uri.split("://", 1)[1].split("/", 1)[0] if model.scheme == "pvc" else None
    relevant["model"] = {"name": model.name, "format": model.format, "credentials": model.credentials_secret,
                         "scheme": model.scheme, "claim": claim, "maxBytes": model.max_bytes}
    relevant["image"] = spec.serving.image or triton_image
    if fetcher_image:
        relevant["fetcher"] = fetcher_image
    return short_hash(relevant)


def rollout_revision(template_revision: str, model_uri: str, model_version: int, model_sha256: str | None) -> str:
    """The revision of a canary rollout: the pod template's revision and the model it serves. Under the
    Canary strategy a new model version is a new revision that runs beside the stable one (under Rolling
    it is swapped in place, so the template revision alone names the pods)."""
    return short_hash({"template": template_revision, "model": [model_uri, model_version, model_sha256]})


def deployment_name(md_name: str, track: str = c.TRACK_STABLE) -> str:
    return fit(f"{md_name}-{track}", 253 - 17)  # leave room for ReplicaSet/Pod suffixes


def service_name(md_name: str) -> str:
    return fit(md_name)


def role_service_name(md_name: str, role: str) -> str:
    """Service of one role (stable/canary) of a canary with Gateway API routing."""
    return fit(f"{md_name}-{role}")


def revision_deployment_name(md_name: str, revision: str) -> str:
    """Deployment made for one revision during canary rollouts (promoted by moving traffic, not pods)."""
    return fit(f"{md_name}-{revision}", 253 - 17)


def agent_token_name(md_name: str) -> str:
    """Secret holding the token the operator signs its commands to the pods' model agents with (``token``)
    and Triton's control-API key (``triton-key``). Named ``-agent-keys``, not the one-key ``-agent-token``
    of earlier versions: an upgraded ModelDeployment gets a new Secret with both keys from the create
    the operator already does, instead of needing a patch (and the right to patch Secrets)."""
    return fit(f"{md_name}-agent-keys", 253)


def model_source_name(deployment: str) -> str:
    """Secret with the model source of one Deployment's pods (see render_model_source)."""
    return fit(f"{deployment}-model", 253)


def legacy_model_source_name(md_name: str) -> str:
    """The ConfigMap that held the model source before it moved to one Secret per Deployment; pruned
    once no pod of the old template is left."""
    return fit(f"{md_name}-model", 253)


def config_map_name(md_name: str, revision: str) -> str:
    return fit(f"{md_name}-config-{revision}", 253)


def selector_labels(md_name: str, track: str = c.TRACK_STABLE, pod_set: str | None = None) -> dict[str, str]:
    """Labels a Deployment selects its pods by (immutable once created): by track for ``<name>-stable``,
    by pod set (the revision it was made for) for the per-revision Deployments of canary rollouts."""
    if pod_set is not None:
        return {c.LABEL_INSTANCE: fit(md_name), c.LABEL_COMPONENT: c.COMPONENT_PREDICTOR, c.LABEL_POD_SET: pod_set}
    return {
        c.LABEL_INSTANCE: fit(md_name),
        c.LABEL_COMPONENT: c.COMPONENT_PREDICTOR,
        c.LABEL_TRACK: track,
    }


def common_labels(md_name: str, model_name: str) -> dict[str, str]:
    return {
        c.LABEL_NAME: "triton",
        c.LABEL_INSTANCE: fit(md_name),
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_DEPLOYMENT: fit(md_name),
        c.LABEL_MODEL: fit(model_name),
    }
