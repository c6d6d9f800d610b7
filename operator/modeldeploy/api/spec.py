"""Typed, defaulted view of a ModelDeployment spec.

The API server applies the CRD's defaults and validation before the operator sees an object, but
renderers must not depend on that: unit tests, ``kubectl apply --dry-run=client`` users and older
stored objects can all miss defaults. So ``parse_spec`` applies the same defaults again and checks the
cross-field rules that the schema cannot express, returning a frozen value object the renderers use.

Errors raise ``SpecError`` naming the field, which the reconciler turns into a Stalled condition. That is
the only exception ``parse_spec`` raises, for any JSON value whatever (a property-based test feeds it
arbitrary documents): a wrong type is a SpecError too, never an AttributeError or TypeError. And whatever it
returns renders to children Kubernetes accepts: names, labels, quantities, images and scheduling fields
are checked with :mod:`modeldeploy.api.validation`, the same rules the CRD enforces at ``kubectl apply``.

Replicas follow THE RULE written in the CRD's ``spec.replicas`` description: spec.replicas defaults to 1;
when spec.autoscaling is set it wins, spec.replicas is ignored and status says so (:func:`replicas_note`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from modeldeploy.api import validation as v
# A module import: api/canary.py imports this module the same way, so either may be imported first.
from modeldeploy.api import autoscaling as autoscaling_api
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
_SHA256 = re.compile(r"[a-f0-9]{64}")
_MIG_PROFILE = re.compile(r"[0-9]+g\.[0-9]+gb")
BACKENDS = ("onnxruntime", "tensorrt", "pytorch", "python", "tensorflow")
ROLLOUT_STRATEGIES = ("Rolling", "Canary")


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
    replicas: int  #: spec.replicas, default 1 (the scale subresource reads and writes it)
    autoscaling: "autoscaling_api.AutoscalingSpec | None"  # api/autoscaling.py
    compression: CompressionSpec | None
    rollout_strategy: str
    canary: "canary_api.CanarySpec | None"  # parsed when strategy is Canary (api/canary.py)

    @property
    def backend(self) -> str:
        return self.serving.backend or BACKEND_BY_FORMAT[self.model.format]

    @property
    def desired_replicas(self) -> int:
        """Replicas to start with, by THE RULE: spec.autoscaling, when set, wins over spec.replicas (its
        minReplicas, until the autoscaler decides: status.autoscaling); otherwise spec.replicas (default 1)."""
        if self.autoscaling is not None:
            return self.autoscaling.min_replicas
        return self.replicas


def replicas_note(spec: Spec) -> str | None:
    """What status says when spec.replicas is ignored (spec.autoscaling is set), else None.

    >>> base = {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}}
    >>> replicas_note(parse_spec("m", {**base, "replicas": 3, "autoscaling": {"minReplicas": 2, "maxReplicas": 5,
    ...                                                                     "targetPendingRequestsPerReplica": 4}}))
    'spec.replicas (3) is ignored: spec.autoscaling sets the replica count (2 to 5)'
    >>> replicas_note(parse_spec("m", {**base, "replicas": 3})) is None
    True
    """
    if spec.autoscaling is None:
        return None
    low, high = spec.autoscaling.min_replicas, spec.autoscaling.max_replicas
    return f"spec.replicas ({spec.replicas}) is ignored: spec.autoscaling sets the replica count ({low} to {high})"


def _int(value: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"must be an integer, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise SpecError(path, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SpecError(path, f"must be <= {maximum}, got {value}")
    return value


def _show(value: Any, limit: int = 60) -> str:
    """A value for an error message: its repr, cut to one short line."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    """An optional JSON object: {} when absent (None), SpecError when something else."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(path, f"must be an object, got {_show(value)}")
    return value


def _list(value: Any, path: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(path, f"must be a list, got {_show(value)}")
    return value


def _str(value: Any, path: str, check=None) -> str | None:
    """An optional string; ``check`` (a validation function) may refuse it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecError(path, f"must be a string, got {_show(value)}")
    if check is not None and (message := check(value)) is not None:
        raise SpecError(path, f"{message}, got {_show(value)}")
    return value


def _quantity(value: Any, path: str, check) -> str | None:
    if value is None:
        return None
    if (message := check(value)) is not None:
        raise SpecError(path, f"{message}, got {_show(value)}")
    return str(value)


def _problems(problems) -> None:
    """Raise the first (path, message) of a structure check as a SpecError."""
    for path, message in problems:
        raise SpecError(path, message)


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
            raise SpecError(path, f"must be a byte count such as 20Gi or 500M, got {_show(value)}")
        number = m.group("number")
        whole, _, frac = number.partition(".")
        factor = _FACTORS[m.group("suffix")]
        amount = int(whole) * factor + (int(frac) * factor) // 10 ** len(frac) if frac else int(whole) * factor
    if amount < 1:
        raise SpecError(path, f"must be at least 1 byte, got {_show(value)}")
    return amount


def _placement(data: Any, path: str, with_affinity: bool = True) -> PlacementSpec:
    placement = _obj(data, path)
    selector, tolerations = placement.get("nodeSelector") or {}, placement.get("tolerations") or []
    affinity = placement.get("affinity") if with_affinity else None  # the Job's placement has none (CRD)
    _problems(v.check_node_selector(selector, f"{path}.nodeSelector"))
    _problems(v.check_tolerations(tolerations, f"{path}.tolerations"))
    if affinity is not None:
        _problems(v.check_affinity(affinity, f"{path}.affinity"))
    spread = placement.get("topologySpreadConstraints") if with_affinity else None
    if spread is not None:
        spread = tuple(_obj(item, f"{path}.topologySpreadConstraints[{i}]")
                       for i, item in enumerate(_list(spread, f"{path}.topologySpreadConstraints")))
    return PlacementSpec(node_selector=dict(selector), tolerations=tuple(tolerations), affinity=affinity or None,
                         topology_spread=spread)


def parse_spec(name: str, spec: Any) -> Spec:
    """Parse and default ``spec`` of the ModelDeployment called ``name``; raise SpecError when unservable.

    SpecError is the only exception, whatever JSON ``spec`` is.
    """
    message = v.dns1035_label(name) if isinstance(name, str) else "must be a string"
    if message is not None:
        raise SpecError("metadata.name", f"{message} (the Service takes this name), got {_show(name)}")
    spec = _obj(spec, "spec")
    model = _obj(spec.get("model"), "spec.model")
    uri = _str(model.get("uri"), "spec.model.uri")
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
    if not isinstance(fmt, str) or fmt not in MODEL_FORMATS:
        raise SpecError("spec.model.format", f"must be one of {', '.join(MODEL_FORMATS)}, got {_show(fmt)}")
    model_spec = ModelSpec(
        uri=uri,
        format=fmt,
        name=_str(model.get("name"), "spec.model.name", v.model_name) or name,
        version=_int(model.get("version", 1), "spec.model.version", 1),
        sha256=_str(model.get("sha256"), "spec.model.sha256",
                    lambda x: None if _SHA256.fullmatch(x) else "must be 64 lowercase hex digits"),
        credentials_secret=_str(model.get("credentialsSecret"), "spec.model.credentialsSecret", v.dns1123_subdomain),
        max_bytes=parse_bytes(model.get("maxBytes", DEFAULT_MAX_BYTES), "spec.model.maxBytes"),
    )

    serving = _obj(spec.get("serving"), "spec.serving")
    max_batch = _int(serving.get("maxBatchSize", 0), "spec.serving.maxBatchSize", 0)
    dyn = serving.get("dynamicBatching")
    dynamic = None
    if dyn is not None:
        dyn = _obj(dyn, "spec.serving.dynamicBatching")
        if max_batch == 0:
            raise SpecError("spec.serving.dynamicBatching", "needs spec.serving.maxBatchSize > 0")
        sizes = tuple(_int(s, "spec.serving.dynamicBatching.preferredBatchSizes[]", 1)
                      for s in _list(dyn.get("preferredBatchSizes"), "spec.serving.dynamicBatching.preferredBatchSizes"))
        too_big = [s for s in sizes if s > max_batch]
        if too_big:
            raise SpecError("spec.serving.dynamicBatching.preferredBatchSizes",
                            f"{too_big} exceed spec.serving.maxBatchSize ({max_batch})")
        dynamic = DynamicBatching(
            preferred_batch_sizes=sizes,
            max_queue_delay_microseconds=_int(dyn.get("maxQueueDelayMicroseconds", 100),
                                              "spec.serving.dynamicBatching.maxQueueDelayMicroseconds", 0),
        )
    backend = _str(serving.get("backend"), "spec.serving.backend")
    if backend is not None and backend not in BACKENDS:
        raise SpecError("spec.serving.backend", f"must be one of {', '.join(BACKENDS)}, got {_show(backend)}")
    serving_spec = ServingSpec(
        image=_str(serving.get("image"), "spec.serving.image", v.image),
        backend=backend,
        max_batch_size=max_batch,
        dynamic_batching=dynamic,
        instances_per_device=_int(serving.get("instancesPerDevice", 1), "spec.serving.instancesPerDevice", 1),
        warmup=_warmup(_list(serving.get("warmup"), "spec.serving.warmup"), max_batch),
    )

    resources = _obj(spec.get("resources"), "spec.resources")
    gpu = _obj(resources.get("gpu"), "spec.resources.gpu")
    gpu_spec = GpuSpec(
        count=_int(gpu.get("count", 1), "spec.resources.gpu.count", 0),
        product=_str(gpu.get("product"), "spec.resources.gpu.product",
                     lambda x: v.label_value(x) or (None if x else "must not be empty")),
        mig_profile=_str(gpu.get("migProfile"), "spec.resources.gpu.migProfile",
                         lambda x: None if _MIG_PROFILE.fullmatch(x) else "must be a MIG profile such as 1g.10gb"),
    )
    if gpu_spec.count == 0 and (gpu_spec.product or gpu_spec.mig_profile):
        raise SpecError("spec.resources.gpu.count", "is 0 but spec.resources.gpu.product/migProfile is set")
    resources_spec = ResourcesSpec(
        gpu=gpu_spec,
        cpu=_quantity(resources.get("cpu"), "spec.resources.cpu", v.cpu),
        memory=_quantity(resources.get("memory"), "spec.resources.memory", v.memory),
    )

    placement_spec = _placement(spec.get("placement"), "spec.placement")

    replicas = _int(spec.get("replicas", 1), "spec.replicas", 0, v.INT32_MAX)
    autoscaling = spec.get("autoscaling")
    if autoscaling is not None:
        autoscaling = autoscaling_api.parse_autoscaling(_obj(autoscaling, "spec.autoscaling"))

    rollout = _obj(spec.get("rollout"), "spec.rollout")
    strategy = _str(rollout.get("strategy"), "spec.rollout.strategy") or "Rolling"
    if strategy not in ROLLOUT_STRATEGIES:
        raise SpecError("spec.rollout.strategy", f"must be one of {', '.join(ROLLOUT_STRATEGIES)}, got {_show(strategy)}")
    canary = rollout.get("canary")
    compression = spec.get("compression")
    return Spec(
        model=model_spec,
        serving=serving_spec,
        resources=resources_spec,
        placement=placement_spec,
        replicas=replicas,
        autoscaling=autoscaling,
        compression=None if compression is None else _compression(compression),
        rollout_strategy=strategy,
        canary=canary_api.parse_canary(canary) if strategy == "Canary" else None,
    )


def _warmup(items: list, max_batch: int) -> tuple[WarmupSample, ...]:
    samples = []
    for i, item in enumerate(items):
        where = f"spec.serving.warmup[{i}]"
        item = _obj(item, where)
        name = item.get("name")
        if not name or not isinstance(name, str):
            raise SpecError(f"{where}.name", "is required")
        batch = _int(item.get("batchSize", 1), f"{where}.batchSize", 1)
        if batch > max(max_batch, 1):
            raise SpecError(f"{where}.batchSize", f"{batch} exceeds spec.serving.maxBatchSize ({max_batch}; "
                                                  "with batching off, warmup samples have batch size 1)")
        inputs = _obj(item.get("inputs"), f"{where}.inputs")
        if not inputs:
            raise SpecError(f"{where}.inputs", "needs at least one model input")
        tensors = []
        for input_name, tensor in sorted(inputs.items()):
            at = f"{where}.inputs.{input_name}"
            tensor = _obj(tensor, at)
            dtype = tensor.get("dataType")
            if not isinstance(dtype, str) or dtype not in WARMUP_DATA_TYPES:
                raise SpecError(f"{at}.dataType", f"must be one of {', '.join(WARMUP_DATA_TYPES)}, got {_show(dtype)}")
            dims = tuple(_int(d, f"{at}.dims[]", 1) for d in _list(tensor.get("dims"), f"{at}.dims"))
            if not dims:
                raise SpecError(f"{at}.dims", "is required (the shape without the batch dimension)")
            data = tensor.get("data", "zero")
            if not isinstance(data, str) or data not in ("zero", "random"):
                raise SpecError(f"{at}.data", f"must be zero or random, got {_show(data)}")
            tensors.append((input_name, WarmupInput(dtype, dims, random=data == "random")))
        samples.append(WarmupSample(name=name, inputs=tuple(tensors), batch_size=batch,
                                    count=_int(item.get("count", 1), f"{where}.count", 1)))
    return tuple(samples)


def _compression(data: Any) -> CompressionSpec:
    data = _obj(data, "spec.compression")
    store = _obj(data.get("modelStore"), "spec.compression.modelStore")
    claim = _str(store.get("claimName"), "spec.compression.modelStore.claimName", v.dns1123_subdomain)
    if not claim:
        raise SpecError("spec.compression.modelStore.claimName",
                        "is required: the PersistentVolumeClaim that holds compressed models")
    job = _obj(data.get("job"), "spec.compression.job")
    res = _obj(job.get("resources"), "spec.compression.job.resources")
    placement = None if job.get("placement") is None else _placement(job["placement"], "spec.compression.job.placement",
                                                                  with_affinity=False)
    job_spec = CompressionJobSpec(
        cpu=_quantity(res.get("cpu"), "spec.compression.job.resources.cpu", v.cpu),
        memory=_quantity(res.get("memory"), "spec.compression.job.resources.memory", v.memory),
        gpu=_int(res.get("gpu", 0), "spec.compression.job.resources.gpu", 0),
        backoff_limit=_int(job.get("backoffLimit", 1), "spec.compression.job.backoffLimit", 0),
        active_deadline_seconds=_int(job.get("activeDeadlineSeconds", 3600),
                                     "spec.compression.job.activeDeadlineSeconds", 1),
        node_selector=None if placement is None else placement.node_selector,
        tolerations=None if placement is None else placement.tolerations,
    )
    recipe = {k: v for k, v in data.items() if k not in COMPRESSION_JOB_KEYS}
    return CompressionSpec(recipe=recipe, claim_name=claim, job=job_spec)


def unimplemented_fields(spec: Spec) -> list[str]:
    """Fields this version accepts but does not act on yet; reported, never silently ignored."""
    return []
