"""Desired Kubernetes objects for one ModelDeployment: Triton Deployment, Service, config ConfigMap.

Each builder returns a complete object as a plain dict, ready for server-side apply with one field
manager: fields we do not set are left to Kubernetes and other managers, fields we set are enforced
(a manual edit is reverted on the next reconcile). Owner references make the API server's garbage
collector delete the children with their ModelDeployment.

The serving pod fetches its model before Triton starts: an init container ``fetch-model`` runs
``modeldeploy fetch`` (this project's image, see modeldeploy/fetch/) into the ``model-repository``
emptyDir that Triton serves from. A fetch failure stops the pod in ``Init:Error`` with the cause in the
init container's termination message. Credentials come from ``spec.model.credentialsSecret``: as
environment variables (``envFrom``) for s3:// and the others, as the mounted file ``gcs.json`` pointed to
by GOOGLE_APPLICATION_CREDENTIALS for gs:// (and the Secret's optional key STORAGE_EMULATOR_HOST, a
GCS-compatible endpoint, as an environment variable). A ``pvc://<claim>/<path>`` model mounts the claim
read-only where the fetcher looks for it. A ``file://`` path is read from the fetcher container's own filesystem
(development with the local pod runner; no hostPath volume is rendered).

Security (docs/security.md): every pod passes Pod Security "restricted" (non-root users, no privilege
escalation, all capabilities dropped, RuntimeDefault seccomp, read-only root filesystems with emptyDirs
where something must write), mounts no service account token, and every container has requests and
limits. Triton's control API (model repository, model config, shared memory, trace, logging) answers only
requests carrying a key header: the key is the ``triton-key`` of the Secret ``<name>-agent-keys``, given
to the Triton container as an environment variable that Kubernetes expands into its arguments (so the pod
spec shows ``$(VAR)``, not the key) and to the model agent, the only other holder.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from modeldeploy import __version__
from modeldeploy.api import agent_auth
from modeldeploy.api import constants as c
from modeldeploy.api.canary import summary_quantiles_flag
from modeldeploy.api.spec import Spec
from modeldeploy.fetch.errors import InvalidURI
from modeldeploy.fetch.source_file import FILE_NAME as SOURCE_FILE
from modeldeploy.fetch.source_file import render_source
from modeldeploy.fetch.uri import parse_uri, pvc_mount_path
from modeldeploy.render import names
from modeldeploy.render.config_pbtxt import render_config_pbtxt

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.10-py3"
DEFAULT_FETCHER_IMAGE = f"ghcr.io/modeldeploy/modeldeploy:{__version__}"

#: The kubelet's default; the fetcher writes its one-line failure cause there.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
#: The non-root user of the modeldeploy image (operator/Dockerfile).
FETCHER_UID = 10001
#: The non-root user NVIDIA's tritonserver images create for this purpose (``triton-server``, uid 1000).
TRITON_UID = 1000
#: Triton's requests and limits when spec.resources leaves cpu/memory out.
DEFAULT_TRITON_CPU = "1"
DEFAULT_TRITON_MEMORY = "4Gi"
#: Where a gs:// credentials Secret is mounted in the fetcher; the key ``gcs.json`` is the service account file.
GCS_CREDENTIALS_DIR = "/var/run/secrets/modeldeploy/gcs"
GCS_CREDENTIALS_KEY = "gcs.json"
#: Optional key of a gs:// credentials Secret: the endpoint, as Google's client libraries name it.
GCS_ENDPOINT_KEY = "STORAGE_EMULATOR_HOST"
#: Where the model source file (Secret <deployment>-model) is mounted in the fetcher and the agent.
MODEL_SOURCE_DIR = "/etc/modeldeploy/model"
AGENT_PORT = 8009
#: The agent's token (Secret <name>-agent-keys, key ``token``; the operator creates it). The agent reads
#: it from the mounted Secret at every PUT, so a rotated token needs no restart.
AGENT_TOKEN_KEY = "token"
AGENT_SECRET_DIR = "/var/run/secrets/modeldeploy/agent"


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment being rendered, as far as its children need to know it."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class RenderOptions:
    """Operator-wide settings (Helm values) that shape rendering."""

    triton_image: str = DEFAULT_TRITON_IMAGE
    fetcher_image: str = DEFAULT_FETCHER_IMAGE
    progress_deadline_seconds: int = 600


def _metadata(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner.reference()],
    }


def render_config_map(owner: Owner, spec: Spec, revision: str) -> dict[str, Any]:
    labels = {**names.common_labels(owner.name, spec.model.name), c.LABEL_REVISION: revision}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, names.config_map_name(owner.name, revision), labels),
        "immutable": True,
        "data": {"config.pbtxt": render_config_pbtxt(spec)},
    }


def _resources(spec: Spec) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    gpu = spec.resources.gpu
    if gpu.count > 0:
        resource = f"nvidia.com/mig-{gpu.mig_profile}" if gpu.mig_profile else c.GPU_RESOURCE
        limits[resource] = gpu.count
    for key, value, default in (("cpu", spec.resources.cpu, DEFAULT_TRITON_CPU),
                                ("memory", spec.resources.memory, DEFAULT_TRITON_MEMORY)):
        limits[key] = requests[key] = value if value is not None else default
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def _triton_key_env(owner_name: str) -> dict[str, Any]:
    """The Triton control-API key, from the Secret ``<name>-agent-keys`` (Triton and the agent only)."""
    return {"name": agent_auth.TRITON_KEY_ENV, "valueFrom": {"secretKeyRef": {
        "name": names.agent_token_name(owner_name), "key": agent_auth.TRITON_KEY_SECRET_KEY}}}


def _restricted(user: int) -> dict[str, Any]:
    """A container security context that passes Pod Security "restricted", as ``user``."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _triton_args(spec: Spec) -> list[str]:
    return [
        "tritonserver",
        f"--model-repository={c.MODEL_REPOSITORY}",
        "--model-control-mode=explicit",
        f"--load-model={spec.model.name}",
        "--strict-readiness=true",
        "--exit-on-error=true",
        f"--http-port={c.HTTP_PORT}",
        f"--grpc-port={c.GRPC_PORT}",
        f"--metrics-port={c.METRICS_PORT}",
        "--metrics-config=summary_latencies=true",
        # The quantiles canary analysis counts with (api/canary.py): Triton's defaults plus 0.97 and 0.98.
        f"--metrics-config=summary_quantiles={summary_quantiles_flag()}",
        # Only the model agent (it holds the key) may load, unload or configure models.
        *agent_auth.triton_restriction_args(f"$({agent_auth.TRITON_KEY_ENV})"),
    ]


def _source_args(spec: Spec, from_file: bool) -> list[str]:
    """Which model: from the mounted source file (serving pods: the template must not change with the
    model version), or spelt out (compression Jobs: the model is part of the Job's identity)."""
    if from_file:
        return ["--source-file", f"{MODEL_SOURCE_DIR}/{SOURCE_FILE}"]
    model = spec.model
    args = ["--uri", model.uri, "--version", str(model.version)]
    if model.sha256:
        args += ["--sha256", model.sha256]
    return args


def _fetch_args(spec: Spec, claim: str | None, repository: str = c.MODEL_REPOSITORY,
                from_file: bool = False) -> list[str]:
    """``modeldeploy fetch`` arguments. Every path the fetcher touches is spelt out as an argument, never
    left to a default, so a runner that maps container paths to host paths (the sandbox pod runner
    rewrites absolute-path arguments under a mount) moves them all."""
    model = spec.model
    args = ["fetch", *_source_args(spec, from_file), "--format", model.format, "--name", model.name,
            "--repository", repository, "--max-bytes", str(model.max_bytes),
            "--termination-log", TERMINATION_MESSAGE_PATH]
    if claim:
        args += ["--pvc-mount", pvc_mount_path(claim)]
    return args


def _pvc_claim(spec: Spec) -> str | None:
    """The claim of a pvc:// model URI; None for other schemes and for a malformed URI.

    A malformed pvc:// URI gets no volume: the fetcher then fails with the parse error as its termination
    message, which is where the user looks, instead of an API-server rejection of the Deployment.
    """
    if spec.model.scheme != "pvc":
        return None
    try:
        return parse_uri(spec.model.uri).location
    except InvalidURI:
        return None


def fetch_container(spec: Spec, options: RenderOptions, repository: str = c.MODEL_REPOSITORY,
                    volume: str = "model-repository", from_file: bool = False) -> dict[str, Any]:
    """The ``fetch-model`` init container: fills the model repository (volume ``volume`` mounted at
    ``repository``) from spec.model.uri, or from the mounted source file (``from_file``, serving pods).
    Also the first step of a compression Job."""
    mounts: list[dict[str, Any]] = [{"name": volume, "mountPath": repository}]
    if from_file:
        mounts.append({"name": "model-source-file", "mountPath": MODEL_SOURCE_DIR, "readOnly": True})
    claim = _pvc_claim(spec)
    if claim:
        mounts.append({"name": "model-source", "mountPath": pvc_mount_path(claim), "readOnly": True})
    container: dict[str, Any] = {
        "name": "fetch-model",
        "image": options.fetcher_image,
        "args": _fetch_args(spec, claim, repository, from_file),
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},  # page cache of big writes counts here
        },
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _restricted(FETCHER_UID),
    }
    secret = spec.model.credentials_secret
    if secret and spec.model.scheme == "gs":
        container["env"] = [{"name": "GOOGLE_APPLICATION_CREDENTIALS",
                             "value": f"{GCS_CREDENTIALS_DIR}/{GCS_CREDENTIALS_KEY}"},
                            # a GCS-compatible endpoint instead of Google's (e.g. fake-gcs-server), if the
                            # Secret names one; the fetcher still authenticates with gcs.json there
                            {"name": GCS_ENDPOINT_KEY, "valueFrom": {"secretKeyRef": {
                                "name": secret, "key": GCS_ENDPOINT_KEY, "optional": True}}}]
        mounts.append({"name": "model-credentials", "mountPath": GCS_CREDENTIALS_DIR, "readOnly": True})
    elif secret:
        container["envFrom"] = [{"secretRef": {"name": secret, "optional": False}}]
    container["volumeMounts"] = mounts
    return container


def fetch_volumes(spec: Spec) -> list[dict[str, Any]]:
    """Volumes the ``fetch-model`` container mounts besides the repository (model PVC, gs:// key)."""
    volumes: list[dict[str, Any]] = []
    claim = _pvc_claim(spec)
    if claim:
        volumes.append({"name": "model-source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    if spec.model.credentials_secret and spec.model.scheme == "gs":
        volumes.append({"name": "model-credentials", "secret": {
            "secretName": spec.model.credentials_secret, "optional": False,
            "items": [{"key": GCS_CREDENTIALS_KEY, "path": GCS_CREDENTIALS_KEY}]}})
    return volumes


def _probe(path: str, port: str = "http", **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, **timing}


def agent_container(spec: Spec, options: RenderOptions, owner_name: str) -> dict[str, Any]:
    """The ``model-agent`` sidecar: swaps the served model version in place when only the model changes
    (modeldeploy/agent/). It fetches like the init container (same image, credentials, mounts)."""
    agent = copy.deepcopy(fetch_container(spec, options, from_file=True))
    claim = _pvc_claim(spec)
    args = ["agent", "--repository", c.MODEL_REPOSITORY, "--name", spec.model.name, "--format", spec.model.format,
            "--source-file", f"{MODEL_SOURCE_DIR}/{SOURCE_FILE}", "--token-file", f"{AGENT_SECRET_DIR}/{AGENT_TOKEN_KEY}",
            # Triton at the pod's own IP (downward API; Kubernetes expands $(POD_IP) in args), not 127.0.0.1: on a
            # cluster both are the pod's, and a runtime without per-pod loopback (the sandbox) still reaches it.
            "--triton-url", f"$(POD_IP):{c.HTTP_PORT}", "--triton-grpc-url", f"$(POD_IP):{c.GRPC_PORT}",
            "--port", str(AGENT_PORT), "--max-bytes", str(spec.model.max_bytes),
            "--termination-log", TERMINATION_MESSAGE_PATH]
    if claim:
        args += ["--pvc-mount", pvc_mount_path(claim)]
    # Only the operator may tell the agent what to fetch and serve: a PUT is signed with the token of the
    # mounted Secret (re-read at every PUT, so a rotation needs no restart). The agent alone may call
    # Triton's control API: it gets the key too.
    agent["env"] = [*agent.get("env", []), _triton_key_env(owner_name),
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    agent["volumeMounts"] = [*agent["volumeMounts"],
                             {"name": "agent-secret", "mountPath": AGENT_SECRET_DIR, "readOnly": True}]
    agent.update(
        name="model-agent",
        args=args,
        ports=[{"name": "agent", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        livenessProbe=_probe("/healthz", "agent", periodSeconds=20, failureThreshold=3),
        resources={"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    )
    return agent


def pod_scheduling(node_selector: Mapping[str, str], tolerations: Iterable[Mapping[str, Any]], gpus: int,
                   gpu_product: str | None = None, affinity: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """nodeSelector/tolerations/affinity of a pod: the given placement plus the GPU conventions (the GPU
    taint tolerated and the product selected when the pod asks for GPUs). Empty fields are left out."""
    node_selector = dict(node_selector)
    tolerations = [dict(t) for t in tolerations]
    if gpus > 0:
        if gpu_product:
            node_selector[c.GPU_PRODUCT_LABEL] = gpu_product
        gpu_toleration = {"key": c.GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
        if gpu_toleration not in tolerations:
            tolerations.insert(0, gpu_toleration)
    out: dict[str, Any] = {}
    if node_selector:
        out["nodeSelector"] = node_selector
    if tolerations:
        out["tolerations"] = tolerations
    if affinity:
        out["affinity"] = dict(affinity)
    return out


def topology_spread(spec: Spec, selector: Mapping[str, str]) -> list[dict[str, Any]]:
    """spec.placement.topologySpreadConstraints when given (``[]``: none), else replicas spread over nodes:
    one node going away takes as few replicas as possible. ``ScheduleAnyway`` so a single-node cluster still
    runs every replica; ``pod-template-hash`` counts the replicas of one rollout together.
    """
    if spec.placement.topology_spread is not None:
        return [dict(c) for c in spec.placement.topology_spread]
    return [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": dict(selector)}, "matchLabelKeys": ["pod-template-hash"]}]


def scheduling(spec: Spec, selector: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Scheduling of the serving pods: spec.placement plus the GPU conventions, and the spread of
    replicas over nodes (when ``selector``, the pods' labels, is given)."""
    gpu = spec.resources.gpu
    out = pod_scheduling(spec.placement.node_selector, spec.placement.tolerations, gpu.count, gpu.product,
                         spec.placement.affinity)
    if selector is not None:
        spread = topology_spread(spec, selector)
        if spread:
            out["topologySpreadConstraints"] = spread
    return out


def render_deployment(
    owner: Owner, spec: Spec, revision: str, options: RenderOptions, track: str = c.TRACK_STABLE,
    deployment: str | None = None, replicas: int | None = None, pod_set: str | None = None,
) -> dict[str, Any]:
    """The Triton Deployment of one track. ``deployment`` (default ``<name>-<track>``) and ``replicas``
    (default the spec's) are the plan's. The selector is fixed at creation: by track for ``<name>-stable``,
    by ``pod_set`` (the revision it was made for) for the per-revision Deployments of canary rollouts."""
    deployment = deployment or names.deployment_name(owner.name, track)
    selector = names.selector_labels(owner.name, track, pod_set)
    labels = {**names.common_labels(owner.name, spec.model.name), **selector}
    pod_labels = {**labels, c.LABEL_REVISION: revision}
    model_dir = f"{c.MODEL_REPOSITORY}/{spec.model.name}"
    container = {
        "name": "triton",
        "image": spec.serving.image or options.triton_image,
        "args": _triton_args(spec),
        "ports": [
            {"name": "http", "containerPort": c.HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": c.GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": c.METRICS_PORT, "protocol": "TCP"},
        ],
        "startupProbe": _probe("/v2/health/live", periodSeconds=5, failureThreshold=120),
        "livenessProbe": _probe("/v2/health/live", periodSeconds=10, failureThreshold=3),
        # The model's readiness, not the server's: with --strict-readiness, /v2/health/ready is false
        # while the agent loads a new version next to the old one, though the old one still serves.
        "readinessProbe": _probe(f"/v2/models/{spec.model.name}/ready", periodSeconds=5, failureThreshold=3),
        # Keep serving for 5 s while the pod's endpoint leaves every proxy (EndpointSlice -> gateway/kube-proxy
        # take a moment); SIGTERM only then, so a deleted or replaced pod fails no request. Within the 30 s grace.
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "resources": _resources(spec),
        "env": [_triton_key_env(owner.name)],
        "volumeMounts": [
            {"name": "model-repository", "mountPath": c.MODEL_REPOSITORY},
            {"name": "model-config", "mountPath": f"{model_dir}/config.pbtxt", "subPath": "config.pbtxt",
             "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            # The root filesystem is read-only; the python backend and some libraries write scratch files.
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": _restricted(TRITON_UID),
    }
    pod_spec: dict[str, Any] = {
        "initContainers": [fetch_container(spec, options, from_file=True)],
        "containers": [container, agent_container(spec, options, owner.name)],
        "volumes": [
            {"name": "model-repository", "emptyDir": {}},
            {"name": "model-config", "configMap": {"name": names.config_map_name(owner.name, revision)}},
            {"name": "model-source-file", "secret": {"secretName": names.model_source_name(deployment)}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "agent-secret", "secret": {"secretName": names.agent_token_name(owner.name)}},
            *fetch_volumes(spec),
        ],
        # No container talks to the Kubernetes API: no service account token in the pod.
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 30,
        **scheduling(spec, selector),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**_metadata(owner, deployment, {**labels, c.LABEL_REVISION: revision}),
                     "annotations": {c.ANNOTATION_TEMPLATE_REVISION: names.revision_of(
                         spec, options.triton_image, options.fetcher_image)}},
        "spec": {
            "replicas": spec.desired_replicas if replicas is None else replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": options.progress_deadline_seconds,
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        c.ANNOTATION_OWNER: owner.name,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(c.METRICS_PORT),
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def render_service(owner: Owner, spec: Spec) -> dict[str, Any]:
    labels = names.common_labels(owner.name, spec.model.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, names.service_name(owner.name), labels),
        "spec": {
            "type": "ClusterIP",
            "selector": {
                c.LABEL_INSTANCE: names.fit(owner.name),
                c.LABEL_COMPONENT: c.COMPONENT_PREDICTOR,
            },
            "ports": [
                {"name": "http", "port": c.HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": c.GRPC_PORT, "targetPort": "grpc", "protocol": "TCP",
                 "appProtocol": "grpc"},
                {"name": "metrics", "port": c.METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def render_model_source(owner: Owner, spec: Spec, deployment: str | None = None) -> dict[str, Any]:
    """Secret ``<deployment>-model``: the model the pods of ``deployment`` fetch at start
    (fetch/source_file.py). Not part of the pod template, so a new version changes this object, not
    the pods (they swap in place). One per Deployment, so a stable pod that restarts during a canary
    still fetches the stable model. A Secret, not a ConfigMap: a presigned URL's signature is a
    credential."""
    model = spec.model
    name = names.model_source_name(deployment or names.deployment_name(owner.name))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _metadata(owner, name, names.common_labels(owner.name, model.name)),
        "data": {SOURCE_FILE: base64.b64encode(render_source(model.uri, model.version, model.sha256).encode()).decode()},
    }


def render_track(owner: Owner, spec: Spec, revision: str, options: RenderOptions, track: str = c.TRACK_STABLE,
                 deployment: str | None = None, replicas: int | None = None,
                 pod_set: str | None = None) -> list[dict[str, Any]]:
    """The objects of one track (model source, config ConfigMap, Deployment), in apply order: what the
    Deployment mounts comes first."""
    deployment = deployment or names.deployment_name(owner.name, track)
    return [
        render_model_source(owner, spec, deployment),
        render_config_map(owner, spec, revision),
        render_deployment(owner, spec, revision, options, track, deployment, replicas, pod_set),
    ]


def render_children(owner: Owner, spec: Spec, revision: str, options: RenderOptions) -> list[dict[str, Any]]:
    """All desired children of a ModelDeployment with one (stable) track: model source, config
    ConfigMap, Service, Deployment."""
    source, config, deployment = render_track(owner, spec, revision, options)
    return [source, config, render_service(owner, spec), deployment]
