"""parse_spec: defaults, and the cross-field rules the CRD schema cannot express."""

import pytest

from modeldeploy.api.spec import SpecError, parse_spec, replicas_note, unimplemented_fields
from tests.bad_specs import BAD_SPECS, bad_spec

BASE = {"model": {"uri": "s3://bucket/m.onnx", "format": "onnx"}}


def spec_with(**overrides):
    spec = {**BASE, **overrides}
    return spec


def test_defaults():
    spec = parse_spec("digits", BASE)
    assert spec.model.name == "digits"
    assert spec.model.version == 1
    assert spec.backend == "onnxruntime"
    assert spec.serving.max_batch_size == 0
    assert spec.resources.gpu.count == 1
    assert spec.desired_replicas == 1
    assert spec.rollout_strategy == "Rolling"
    assert unimplemented_fields(spec) == []


@pytest.mark.parametrize("fmt,backend", [
    ("onnx", "onnxruntime"), ("tensorrt", "tensorrt"), ("torchscript", "pytorch"),
    ("python", "python"), ("savedmodel", "tensorflow"),
])
def test_backend_follows_format(fmt, backend):
    assert parse_spec("m", {"model": {"uri": "gs://b/m", "format": fmt}}).backend == backend


def test_backend_override_wins():
    spec = parse_spec("m", spec_with(serving={"backend": "python"}))
    assert spec.backend == "python"


@pytest.mark.parametrize("spec,field", [
    ({"model": {"uri": "ftp://x/m", "format": "onnx"}}, "spec.model.uri"),
    ({"model": {"uri": "no-scheme", "format": "onnx"}}, "spec.model.uri"),
    ({"model": {"format": "onnx"}}, "spec.model.uri"),
    ({"model": {"uri": "pvc://claim-only", "format": "onnx"}}, "spec.model.uri"),
    ({"model": {"uri": "pvc://Bad_Claim/m.onnx", "format": "onnx"}}, "spec.model.uri"),
    ({"model": {"uri": "s3://b/m", "format": "pickle"}}, "spec.model.format"),
    (spec_with(resources={"gpu": {"count": -1}}), "spec.resources.gpu.count"),
    (spec_with(resources={"gpu": {"count": 0, "product": "NVIDIA-H100-80GB-HBM3"}}), "spec.resources.gpu.count"),
    (spec_with(replicas=-1), "spec.replicas"),
    (spec_with(autoscaling={"minReplicas": 5, "maxReplicas": 3}), "spec.autoscaling.minReplicas"),
    (spec_with(serving={"dynamicBatching": {}}), "spec.serving.dynamicBatching"),
    (spec_with(serving={"maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [4, 16]}}),
     "spec.serving.dynamicBatching.preferredBatchSizes"),
    (spec_with(model={"uri": "s3://b/m", "format": "onnx", "version": 0}), "spec.model.version"),
])
def test_invalid_specs_name_the_field(spec, field):
    with pytest.raises(SpecError) as err:
        parse_spec("m", spec)
    assert err.value.field == field
    assert str(err.value).startswith(field)


def test_autoscaling_starts_at_min_replicas_and_is_implemented():
    spec = parse_spec("m", spec_with(autoscaling={"minReplicas": 2, "maxReplicas": 5, "targetPendingRequestsPerReplica": 4}))
    assert spec.desired_replicas == 2  # until the autoscaler decides (status.autoscaling)
    assert unimplemented_fields(spec) == []


@pytest.mark.parametrize("replicas,autoscaling,desired,note", [
    (None, None, 1, None),           # spec.replicas defaults to 1
    (3, None, 3, None),
    (0, None, 0, None),
    (None, {"minReplicas": 2, "maxReplicas": 5, "targetPendingRequestsPerReplica": 4}, 2, "spec.replicas (1) is ignored: spec.autoscaling sets the replica count (2 to 5)"),
    (7, {"maxReplicas": 5, "targetPendingRequestsPerReplica": 4}, 1, "spec.replicas (7) is ignored: spec.autoscaling sets the replica count (1 to 5)"),
])
def test_the_replicas_rule(replicas, autoscaling, desired, note):
    """THE RULE (CRD spec.replicas): default 1; spec.autoscaling, when set, wins and status says spec.replicas is
    ignored. Both together are no error any more (an HPA may set spec.replicas through the scale subresource)."""
    changes = {k: v for k, v in (("replicas", replicas), ("autoscaling", autoscaling)) if v is not None}
    spec = parse_spec("m", spec_with(**changes))
    assert spec.replicas == (1 if replicas is None else replicas)
    assert (spec.desired_replicas, replicas_note(spec)) == (desired, note)


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_held_out_bad_specs_name_the_same_field_as_the_api_server(case):
    """The same table tests/integration/test_validation.py sends to the real API server."""
    name, spec, field = bad_spec(case)
    with pytest.raises(SpecError) as err:
        parse_spec(name, spec)
    assert err.value.field == field, err.value
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("spec,field", [
    ([], "spec"),
    ({"model": "s3://b/m"}, "spec.model"),
    ({"model": {"uri": 5, "format": "onnx"}}, "spec.model.uri"),
    ({"model": {"uri": "s3://b/m", "format": ["onnx"]}}, "spec.model.format"),
    (spec_with(serving={"warmup": {"name": "w"}}), "spec.serving.warmup"),
    (spec_with(serving={"warmup": ["w"]}), "spec.serving.warmup[0]"),
    (spec_with(serving={"maxBatchSize": 4, "dynamicBatching": {"preferredBatchSizes": 4}}),
     "spec.serving.dynamicBatching.preferredBatchSizes"),
    (spec_with(placement={"tolerations": {"key": "k"}}), "spec.placement.tolerations"),
    (spec_with(placement={"nodeSelector": ["pool"]}), "spec.placement.nodeSelector"),
    (spec_with(placement={"nodeSelector": {"pool": 1}}), "spec.placement.nodeSelector"),
    (spec_with(autoscaling={"minReplicas": "2", "maxReplicas": 3}), "spec.autoscaling.minReplicas"),
    (spec_with(rollout={"strategy": ["Canary"]}), "spec.rollout.strategy"),
    (spec_with(compression=[]), "spec.compression"),
    (spec_with(compression={"modelStore": {"claimName": 7}}), "spec.compression.modelStore.claimName"),
])
def test_wrong_json_types_are_spec_errors(spec, field):
    """The fuzzer's crash classes: wrong JSON types raised AttributeError/TypeError instead of SpecError."""
    with pytest.raises(SpecError) as err:
        parse_spec("m", spec)
    assert err.value.field == field


@pytest.mark.parametrize("quantity", ["4", "500m", "0.5", "1.5", "2e3", 4, "+1"])
def test_cpu_quantities_that_kubernetes_accepts(quantity):
    assert parse_spec("m", spec_with(resources={"cpu": quantity})).resources.cpu == str(quantity)


@pytest.mark.parametrize("quantity", ["16Gi", "512Mi", "1G", "1e9", 1024, "1.5Gi"])
def test_memory_quantities_that_kubernetes_accepts(quantity):
    assert parse_spec("m", spec_with(resources={"memory": quantity})).resources.memory == str(quantity)


def test_unimplemented_fields_are_listed():
    spec = parse_spec("m", spec_with(
        compression={"quantization": {"mode": "fp16"}, "modelStore": {"claimName": "store"}},
        rollout={"strategy": "Canary", "canary": {"steps": [{"setWeight": 10}]}},
    ))
    assert unimplemented_fields(spec) == []  # canary rollouts are implemented
    assert unimplemented_fields(parse_spec("m", spec_with(autoscaling={"maxReplicas": 3, "targetPendingRequestsPerReplica": 4}))) == []


def test_compression_splits_the_recipe_from_the_job_settings():
    spec = parse_spec("m", spec_with(compression={
        "quantization": {"mode": "int8-static"}, "evaluation": {"maxAccuracyDrop": 1},
        "modelStore": {"claimName": "store"},
        "job": {"resources": {"cpu": 2, "memory": "4Gi"}, "backoffLimit": 0,
                "placement": {"nodeSelector": {"pool": "cpu"}}},
    }))
    comp = spec.compression
    assert comp.recipe == {"quantization": {"mode": "int8-static"}, "evaluation": {"maxAccuracyDrop": 1}}
    assert comp.claim_name == "store"
    assert (comp.job.cpu, comp.job.memory, comp.job.gpu, comp.job.backoff_limit) == ("2", "4Gi", 0, 0)
    assert comp.job.active_deadline_seconds == 3600
    assert comp.job.node_selector == {"pool": "cpu"} and comp.job.tolerations == ()


def test_compression_without_job_placement_follows_spec_placement():
    comp = parse_spec("m", spec_with(compression={"pruning": {"amount": 0.5},
                                                  "modelStore": {"claimName": "s"}})).compression
    assert comp.job.node_selector is None and comp.job.tolerations is None


@pytest.mark.parametrize("compression,field", [
    ({"quantization": {"mode": "fp16"}}, "spec.compression.modelStore.claimName"),
    ({"quantization": {"mode": "fp16"}, "modelStore": {"claimName": "s"}, "job": {"backoffLimit": -1}},
     "spec.compression.job.backoffLimit"),
    ({"quantization": {"mode": "fp16"}, "modelStore": {"claimName": "s"}, "job": {"resources": {"gpu": "1"}}},
     "spec.compression.job.resources.gpu"),
])
def test_compression_errors_name_the_field(compression, field):
    with pytest.raises(SpecError) as err:
        parse_spec("m", spec_with(compression=compression))
    assert err.value.field == field


def test_zero_replicas_allowed():
    assert parse_spec("m", spec_with(replicas=0)).desired_replicas == 0


def test_warmup_is_parsed_and_defaulted():
    spec = parse_spec("m", spec_with(serving={"maxBatchSize": 8, "warmup": [
        {"name": "w", "inputs": {"b": {"dataType": "INT64", "dims": [4]}, "a": {"dataType": "FP32", "dims": [2, 2],
                                                                                 "data": "random"}}}]}))
    (sample,) = spec.serving.warmup
    assert (sample.name, sample.batch_size, sample.count) == ("w", 1, 1)
    assert [(n, t.data_type, t.dims, t.random) for n, t in sample.inputs] == [
        ("a", "FP32", (2, 2), True), ("b", "INT64", (4,), False)]


@pytest.mark.parametrize("serving,field", [
    ({"maxBatchSize": 4, "warmup": [{"name": "w", "batchSize": 8, "inputs": {"x": {"dataType": "FP32", "dims": [1]}}}]},
     "spec.serving.warmup[0].batchSize"),
    ({"warmup": [{"name": "w", "batchSize": 2, "inputs": {"x": {"dataType": "FP32", "dims": [1]}}}]},
     "spec.serving.warmup[0].batchSize"),
    ({"warmup": [{"name": "w", "inputs": {}}]}, "spec.serving.warmup[0].inputs"),
    ({"warmup": [{"name": "w", "inputs": {"x": {"dataType": "FLOAT", "dims": [1]}}}]},
     "spec.serving.warmup[0].inputs.x.dataType"),
    ({"warmup": [{"name": "w", "inputs": {"x": {"dataType": "FP32", "dims": [0]}}}]},
     "spec.serving.warmup[0].inputs.x.dims[]"),
])
def test_warmup_errors_name_the_field(serving, field):
    with pytest.raises(SpecError) as err:
        parse_spec("m", spec_with(serving=serving))
    assert err.value.field == field


@pytest.mark.parametrize("value, expected", [
    (None, 64 * 2**30), (1, 1), (5_000_000, 5_000_000), ("20Gi", 20 * 2**30), ("500M", 500_000_000),
    ("1.5Gi", 3 * 2**29), ("2k", 2000), ("7", 7),
])
def test_max_bytes_is_parsed_with_a_default(value, expected):
    model = {"uri": "s3://b/m", "format": "onnx", **({} if value is None else {"maxBytes": value})}
    assert parse_spec("m", {"model": model}).model.max_bytes == expected


@pytest.mark.parametrize("value", ["lots", "10 Gi", "-1", 0, True, "1.5X", [1]])
def test_bad_max_bytes_names_the_field(value):
    with pytest.raises(SpecError) as err:
        parse_spec("m", {"model": {"uri": "s3://b/m", "format": "onnx", "maxBytes": value}})
    assert err.value.field == "spec.model.maxBytes"


def test_topology_spread_absent_empty_or_given():
    base = {"model": {"uri": "s3://b/m", "format": "onnx"}}
    assert parse_spec("m", base).placement.topology_spread is None
    assert parse_spec("m", {**base, "placement": {"topologySpreadConstraints": []}}).placement.topology_spread == ()
    zone = {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
    spread = parse_spec("m", {**base, "placement": {"topologySpreadConstraints": [zone]}}).placement.topology_spread
    assert spread == (zone,)


def test_docstring_examples():
    import doctest

    from modeldeploy.api import spec as spec_module

    assert doctest.testmod(spec_module).failed == 0


@pytest.mark.parametrize("uri", ["https://alice:PW@h/m.onnx", "http://alice@h/m.onnx", "s3://AK:SK@bucket/m.onnx"])
def test_credentials_in_the_uri_are_refused_without_repeating_them(uri):
    with pytest.raises(SpecError) as err:
        parse_spec("m", {"model": {"uri": uri, "format": "onnx"}})
    assert err.value.field == "spec.model.uri" and "spec.model.credentialsSecret" in str(err.value)
    assert "PW" not in str(err.value) and "alice" not in str(err.value) and "SK" not in str(err.value)


@pytest.mark.parametrize("uri", ["https://h/m.onnx?X-Amz-Signature=abc", "gs://b/a@b/m.onnx", "https://h/p@x/m"])
def test_an_at_sign_after_the_host_is_not_credentials(uri):
    assert parse_spec("m", {"model": {"uri": uri, "format": "onnx"}}).model.uri == uri
