"""Typed, defaulted view of a ModelDeployment spec.

The API server applies the CRD's defaults and validation before the operator sees an object, but
renderers must not depend on that: unit tests, ``kubectl apply --dry-run=client`` users and older
stored objects can all miss defaults. So ``parse_spec`` applies the same defaults again and checks the
cross-field rules that the schema cannot express, returning a frozen value object the renderers use.

Errors raise ``SpecError`` naming the field, which the reconciler turns into a Stalled condition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

# A module import: api/canary.py imports this module the same way, so either may be imported first.
from modeldeploy.api import canary as canary_api

MODEL_FORMATS = ("onnx", "tensorrt", "torchscript", "python", "savedmodel")
URI_SCHEMES = ("s3", "gs", "http", "https", "pvc", "file")

#: Triton backend (or platform) derived from the model format.
BACKEND_BY_FORMAT = {
    "onnx": "onnxruntime",
    "tensorrt": "tensorrt",
    "torchscript": "pytorch",
    "python": "python",
    "savedmodel": "tensorflow",
}

#: File name Triton expects inside ``<model>/<version>/`` for each format.
MODEL_FILE_BY_FORMAT = {
    "onnx": "model.onnx",
    "tensorrt": "model.plan",
    "torchscript": "model.pt",
    "python": "model.py",
    "savedmodel": "model.savedmodel",
}


_PVC_URI = re.compile(r"^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/.+")
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@")  # as the CRD's rule on spec.model.uri

#: Default of spec.model.maxBytes: what one fetch may write (every file of a folder counted).
DEFAULT_MAX_BYTES = 64 * 2**30
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


class SpecError(ValueError):
    """A spec the operator cannot serve. ``field`` is the JSON path of the offending field."""

    def __init__(self, field_path: str, message: str):
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


@dataclass(frozen=True)
class ModelSpec:
    uri: str
    format: str
    name: str
    version: int = 1
    sha256: str | None = None
    credentials_secret: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0]


@dataclass(frozen=True)
class DynamicBatching:
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 100


WARMUP_DATA_TYPES = ("BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16")


@dataclass(frozen=True)
class WarmupInput:
    data_type: str
    dims: tuple[int, ...]
    random: bool = False


@dataclass(frozen=True)
class WarmupSample:
    name: str
    inputs: tuple[tuple[str, WarmupInput], ...]  # (input name, tensor), sorted by name
    batch_size: int = 1
    count: int = 1


@dataclass(frozen=True)
class ServingSpec:
    image: str | None = None
    backend: str | None = None
    max_batch_size: int = 0
    dynamic_batching: DynamicBatching | None = None
    instances_per_device: int = 1
    warmup: tuple[WarmupSample, ...] = ()


@dataclass(frozen=True)
class GpuSpec:
    count: int = 1
    product: str | None = None
    mig_profile: str | None = None


@dataclass(frozen=True)
class ResourcesSpec:
    gpu: GpuSpec = field(default_factory=GpuSpec)
    cpu: str | None = None
    memory: str | None = None


@dataclass(frozen=True)
class PlacementSpec:
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    #: None: the operator's default spread over nodes; () turns spreading off.
    topology_spread: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True)
class CompressionJobSpec:
    """How the compression Job runs (``spec.compression.job``); ``None`` placement = ``spec.placement``."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0
    backoff_limit: int = 1
    active_deadline_seconds: int = 3600
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Mapping[str, Any], ...] | None = None


#: ``spec.compression`` keys that configure the Job and the store; the rest is the recipe.
COMPRESSION_JOB_KEYS = ("modelStore", "job")


@dataclass(frozen=True)
class CompressionSpec:
    """``spec.compression`` split into the recipe (what ``modeldeploy compress`` reads, checked by
    ``policy.compression.parse_recipe`` in the reconciler) and where/how the Job runs."""

    recipe: Mapping[str, Any]
    claim_name: str
    job: CompressionJobSpec = field(default_factory=CompressionJobSpec)


@dataclass(frozen=True)
class Spec:
    model: ModelSpec
    serving: ServingSpec
    resources: ResourcesSpec
    placement: PlacementSpec
    replicas: int | None
    autoscaling: Mapping[str, Any] | None
    compression: CompressionSpec | None
    rollout_strategy: str
    canary: "canary_api.CanarySpec | None"  # parsed when strategy is Canary (api/canary.py)

    @property
    def backend(self) -> str:
        return self.serving.backend or BACKEND_BY_FORMAT[self.model.format]

    @property
    def desired_replicas(self) -> int:
        """Replicas to run now: spec.replicas, else autoscaling.minReplicas (autoscaling not implemented), else 1."""
        if self.replicas is not None:
            return self.replicas
        if self.autoscaling is not None:
            return int(self.autoscaling.get("minReplicas", 1))
        return 1


def _int(value: Any, path: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(path, f"must be >= {minimum}, got {value}")
    return value


def parse_bytes(value: Any, path: str) -> int:
    """A byte count: an integer, or a Kubernetes quantity string (binary or decimal suffix).

    >>> parse_bytes("64Gi", "f"), parse_bytes("1.5k", "f"), parse_bytes(100, "f")
    (68719476736, 1500, 100)
    >>> parse_bytes("lots", "spec.model.maxBytes")
    Traceback (most recent call last):
    ...
    modeldeploy.api.spec.SpecError: spec.model.maxBytes: must be a byte count such as 20Gi or 500M, got 'lots'
    """
    if isinstance(value, int) and not isinstance(value, bool):
        amount = value
    else:
        m = _QUANTITY.match(value) if isinstance(value, str) else None
        if not m:
            raise SpecError(path, f"must be a byte count such as 20Gi or 500M, got {value!r}")
        number = m.group("number")
        whole, _, frac = number.partition(".")
        factor = _FACTORS[m.group("suffix")]
        amount = int(whole) * factor + (int(frac) * factor) // 10 ** len(frac) if frac else int(whole) * factor
    if amount < 1:
        raise SpecError(path, f"must be at least 1 byte, got {value!r}")
    return amount


def parse_spec(name: str, spec: Mapping[str, Any]) -> Spec:
    """Parse and default ``spec`` of the ModelDeployment called ``name``; raise SpecError when unservable."""
    model = spec.get("model") or {}
    uri = model.get("uri")
    if not uri:
        raise SpecError("spec.model.uri", "is required")
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in URI_SCHEMES:
        raise SpecError("spec.model.uri", f"scheme must be one of {', '.join(s + '://' for s in URI_SCHEMES)}")
    if scheme == "pvc" and not _PVC_URI.match(uri):
        raise SpecError("spec.model.uri", "with pvc:// must be pvc://<claim name>/<path inside the claim>")
    if _USERINFO.match(uri):  # an object stored before the CRD refused it; the message never repeats the URI
        raise SpecError("spec.model.uri", "must not contain credentials (user:password@host): put them in a "
                                          "Secret and name it in spec.model.credentialsSecret")
    fmt = model.get("format")
    if fmt not in MODEL_FORMATS:
        raise SpecError("spec.model.format", f"must be one of {', '.join(MODEL_FORMATS)}, got {fmt!r}")
    model_spec = ModelSpec(
        uri=uri,
        format=fmt,
        name=model.get("name") or name,
        version=_int(model.get("version", 1), "spec.model.version", 1),
        sha256=model.get("sha256"),
        credentials_secret=model.get("credentialsSecret"),
        max_bytes=parse_bytes(model.get("maxBytes", DEFAULT_MAX_BYTES), "spec.model.maxBytes"),
    )

    serving = spec.get("serving") or {}
    max_batch = _int(serving.get("maxBatchSize", 0), "spec.serving.maxBatchSize", 0)
    dyn = serving.get("dynamicBatching")
    dynamic = None
    if dyn is not None:
        if max_batch == 0:
            raise SpecError("spec.serving.dynamicBatching", "needs spec.serving.maxBatchSize > 0")
        sizes = tuple(_int(s, "spec.serving.dynamicBatching.preferredBatchSizes[]", 1)
                      for s in dyn.get("preferredBatchSizes", ()))
        too_big = [s for s in sizes if s > max_batch]
        if too_big:
            raise SpecError("spec.serving.dynamicBatching.preferredBatchSizes",
                            f"{too_big} exceed spec.serving.maxBatchSize ({max_batch})")
        dynamic = DynamicBatching(
            preferred_batch_sizes=sizes,
            max_queue_delay_microseconds=_int(dyn.get("maxQueueDelayMicroseconds", 100),
                                              "spec.serving.dynamicBatching.maxQueueDelayMicroseconds", 0),
        )
    serving_spec = ServingSpec(
        image=serving.get("image"),
        backend=serving.get("backend"),
        max_batch_size=max_batch,
        dynamic_batching=dynamic,
        instances_per_device=_int(serving.get("instancesPerDevice", 1), "spec.serving.instancesPerDevice", 1),
        warmup=_warmup(serving.get("warmup") or (), max_batch),
    )

    resources = spec.get("resources") or {}
    gpu = resources.get("gpu") or {}
    gpu_spec = GpuSpec(
        count=_int(gpu.get("count", 1), "spec.resources.gpu.count", 0),
        product=gpu.get("product"),
        mig_profile=gpu.get("migProfile"),
    )
    if gpu_spec.count == 0 and (gpu_spec.product or gpu_spec.mig_profile):
        raise SpecError("spec.resources.gpu.count", "is 0 but spec.resources.gpu.product/migProfile is set")
    resources_spec = ResourcesSpec(
        gpu=gpu_spec,
        cpu=None if resources.get("cpu") is None else str(resources["cpu"]),
        memory=None if resources.get("memory") is None else str(resources["memory"]),
    )

    placement = spec.get("placement") or {}
    placement_spec = PlacementSpec(
        node_selector=dict(placement.get("nodeSelector") or {}),
        tolerations=tuple(placement.get("tolerations") or ()),
        affinity=placement.get("affinity"),
        topology_spread=(None if placement.get("topologySpreadConstraints") is None
                         else tuple(placement["topologySpreadConstraints"])),
    )

    replicas = spec.get("replicas")
    autoscaling = spec.get("autoscaling")
    if replicas is not None:
        replicas = _int(replicas, "spec.replicas", 0)
        if autoscaling is not None:
            raise SpecError("spec.replicas", "and spec.autoscaling are mutually exclusive")
    if autoscaling is not None:
        lo, hi = autoscaling.get("minReplicas", 1), autoscaling.get("maxReplicas")
        if hi is None:
            raise SpecError("spec.autoscaling.maxReplicas", "is required")
        if lo > hi:
            raise SpecError("spec.autoscaling.minReplicas", f"({lo}) must be <= spec.autoscaling.maxReplicas ({hi})")

    rollout = spec.get("rollout") or {}
    compression = spec.get("compression")
    return Spec(
        model=model_spec,
        serving=serving_spec,
        resources=resources_spec,
        placement=placement_spec,
        replicas=replicas,
        autoscaling=autoscaling,
        compression=None if compression is None else _compression(compression),
        rollout_strategy=rollout.get("strategy", "Rolling"),
        canary=canary_api.parse_canary(rollout.get("canary")) if rollout.get("strategy") == "Canary" else None,
    )


def _warmup(items: Any, max_batch: int) -> tuple[WarmupSample, ...]:
    samples = []
    for i, item in enumerate(items):
        where = f"spec.serving.warmup[{i}]"
        name = item.get("name")
        if not name or not isinstance(name, str):
            raise SpecError(f"{where}.name", "is required")
        batch = _int(item.get("batchSize", 1), f"{where}.batchSize", 1)
        if batch > max(max_batch, 1):
            raise SpecError(f"{where}.batchSize", f"{batch} exceeds spec.serving.maxBatchSize ({max_batch}; "
                                                  "with batching off, warmup samples have batch size 1)")
        inputs = item.get("inputs") or {}
        if not inputs:
            raise SpecError(f"{where}.inputs", "needs at least one model input")
        tensors = []
        for input_name, tensor in sorted(inputs.items()):
            at = f"{where}.inputs.{input_name}"
            dtype = tensor.get("dataType")
            if dtype not in WARMUP_DATA_TYPES:
                raise SpecError(f"{at}.dataType", f"must be one of {', '.join(WARMUP_DATA_TYPES)}, got {dtype!r}")
            dims = tuple(_int(d, f"{at}.dims[]", 1) for d in tensor.get("dims") or ())
            if not dims:
                raise SpecError(f"{at}.dims", "is required (the shape without the batch dimension)")
            data = tensor.get("data", "zero")
            if data not in ("zero", "random"):
                raise SpecError(f"{at}.data", f"must be zero or random, got {data!r}")
            tensors.append((input_name, WarmupInput(dtype, dims, random=data == "random")))
        samples.append(WarmupSample(name=name, inputs=tuple(tensors), batch_size=batch,
                                    count=_int(item.get("count", 1), f"{where}.count", 1)))
    return tuple(samples)


def _compression(data: Mapping[str, Any]) -> CompressionSpec:
    store = data.get("modelStore") or {}
    claim = store.get("claimName")
    if not claim:
        raise SpecError("spec.compression.modelStore.claimName",
                        "is required: the PersistentVolumeClaim that holds compressed models")
    job = data.get("job") or {}
    res = job.get("resources") or {}
    placement = job.get("placement")
    job_spec = CompressionJobSpec(
        cpu=None if res.get("cpu") is None else str(res["cpu"]),
        memory=None if res.get("memory") is None else str(res["memory"]),
        gpu=_int(res.get("gpu", 0), "spec.compression.job.resources.gpu", 0),
        backoff_limit=_int(job.get("backoffLimit", 1), "spec.compression.job.backoffLimit", 0),
        active_deadline_seconds=_int(job.get("activeDeadlineSeconds", 3600),
                                     "spec.compression.job.activeDeadlineSeconds", 1),
        node_selector=None if placement is None else dict(placement.get("nodeSelector") or {}),
        tolerations=None if placement is None else tuple(placement.get("tolerations") or ()),
    )
    recipe = {k: v for k, v in data.items() if k not in COMPRESSION_JOB_KEYS}
    return CompressionSpec(recipe=recipe, claim_name=claim, job=job_spec)


def unimplemented_fields(spec: Spec) -> list[str]:
    """Fields this version accepts but does not act on yet; reported, never silently ignored."""
    fields = []
    if spec.autoscaling is not None:
        fields.append("spec.autoscaling")
    return fields
