"""config.pbtxt is parsed by Triton's own ModelConfig protobuf (tritonclient[grpc]'s model_config_pb2).

``render_config_pbtxt`` writes protobuf text by hand; these tests make Triton's schema the judge: every
golden input and a table of specs across formats, batching, CPU/GPU and instance counts must parse, and
the parsed message must say what the spec asked for.
"""

from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format  # from tritonclient[grpc], in the test extra
from tritonclient.grpc import model_config_pb2

from modeldeploy.api.spec import BACKEND_BY_FORMAT, MODEL_FORMATS, parse_spec
from modeldeploy.render.config_pbtxt import render_config_pbtxt

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
GOLDEN_INPUTS = sorted(GOLDEN.glob("*.input.yaml"))

ModelConfig = model_config_pb2.ModelConfig
KIND_GPU = model_config_pb2.ModelInstanceGroup.KIND_GPU
KIND_CPU = model_config_pb2.ModelInstanceGroup.KIND_CPU


def parsed(spec) -> "ModelConfig":
    return text_format.Parse(render_config_pbtxt(spec), ModelConfig())


def check(config, spec) -> None:
    """The parsed ModelConfig says exactly what the parsed spec asked for."""
    assert config.name == spec.model.name
    assert config.backend == spec.backend
    assert config.platform == ""
    assert config.max_batch_size == spec.serving.max_batch_size
    # no version policy: Triton serves the latest (only) version folder; the agent swaps versions
    assert config.version_policy.WhichOneof("policy_choice") is None
    dyn = spec.serving.dynamic_batching
    if dyn is None:
        assert not config.HasField("dynamic_batching")
    else:
        assert config.HasField("dynamic_batching")
        assert list(config.dynamic_batching.preferred_batch_size) == list(dyn.preferred_batch_sizes)
        assert config.dynamic_batching.max_queue_delay_microseconds == dyn.max_queue_delay_microseconds
    assert len(config.instance_group) == 1
    group = config.instance_group[0]
    assert group.kind == (KIND_GPU if spec.resources.gpu.count > 0 else KIND_CPU)
    assert group.count == spec.serving.instances_per_device
    assert list(group.gpus) == []  # Triton uses every GPU the container sees
    assert len(config.input) == 0 and len(config.output) == 0  # left to Triton's auto-complete
    assert len(config.model_warmup) == len(spec.serving.warmup)
    for got, want in zip(config.model_warmup, spec.serving.warmup):
        assert (got.name, got.batch_size, got.count) == (want.name, want.batch_size, want.count)
        assert sorted(got.inputs) == [name for name, _ in want.inputs]
        for name, tensor in want.inputs:
            value = got.inputs[name]
            assert model_config_pb2.DataType.Name(value.data_type) == f"TYPE_{tensor.data_type}"
            assert tuple(value.dims) == tensor.dims
            assert value.WhichOneof("input_data_type") == ("random_data" if tensor.random else "zero_data")


def test_there_are_golden_inputs():
    assert len(GOLDEN_INPUTS) >= 3


@pytest.mark.parametrize("path", GOLDEN_INPUTS, ids=lambda p: p.name.removesuffix(".input.yaml"))
def test_golden_inputs_parse_as_model_config(path):
    md = yaml.safe_load(path.read_text())
    spec = parse_spec(md["metadata"]["name"], md["spec"])
    check(parsed(spec), spec)


@pytest.mark.parametrize("path", GOLDEN_INPUTS, ids=lambda p: p.name.removesuffix(".input.yaml"))
def test_golden_config_maps_parse_as_model_config(path):
    """The config.pbtxt checked in inside the expected ConfigMap, not only what the renderer gives now."""
    expected = GOLDEN / path.name.replace(".input.yaml", ".expected.yaml")
    (config_map,) = [o for o in yaml.safe_load_all(expected.read_text())
                     if o["kind"] == "ConfigMap" and "config.pbtxt" in o["data"]]
    md = yaml.safe_load(path.read_text())
    check(text_format.Parse(config_map["data"]["config.pbtxt"], ModelConfig()),
          parse_spec(md["metadata"]["name"], md["spec"]))


BATCHING = {
    "off": {},
    "batch-only": {"maxBatchSize": 8},
    "dynamic-default": {"maxBatchSize": 64, "dynamicBatching": {}},
    "dynamic-full": {"maxBatchSize": 32,
                     "dynamicBatching": {"preferredBatchSizes": [8, 16, 32], "maxQueueDelayMicroseconds": 250}},
    "dynamic-zero-delay": {"maxBatchSize": 4, "dynamicBatching": {"preferredBatchSizes": [4],
                                                                   "maxQueueDelayMicroseconds": 0}},
}
DEVICES = {
    "cpu": {"gpu": {"count": 0}},
    "gpu": {"gpu": {"count": 1}},
    "gpu-h100": {"gpu": {"count": 2, "product": "NVIDIA-H100-80GB-HBM3"}},
    "mig": {"gpu": {"count": 1, "migProfile": "3g.20gb"}},
}


@pytest.mark.parametrize("fmt", MODEL_FORMATS)
@pytest.mark.parametrize("batching", BATCHING)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("instances", [1, 3])
def test_spec_table(fmt, batching, device, instances):
    spec = parse_spec("m", {
        "model": {"uri": "s3://b/m", "format": fmt, "version": 7},
        "serving": {**BATCHING[batching], "instancesPerDevice": instances},
        "resources": DEVICES[device],
    })
    config = parsed(spec)
    check(config, spec)
    assert config.backend == BACKEND_BY_FORMAT[fmt]
    assert "7" not in str(config.version_policy)  # the version is not in the per-revision config


@pytest.mark.parametrize("name", ["digits", "a.b-c_d", 'quo"te', "back\\slash", "Résumé-模型"])
def test_names_round_trip(name):
    """parse_spec accepts only the first two (api/validation.py); the renderer escapes any name anyway."""
    from dataclasses import replace

    spec = parse_spec("md", {"model": {"uri": "s3://b/m", "format": "onnx"}})
    assert parsed(replace(spec, model=replace(spec.model, name=name))).name == name


def test_backend_override_round_trips():
    from dataclasses import replace

    spec = parse_spec("md", {"model": {"uri": "s3://b/m", "format": "python"}, "serving": {"backend": "python"}})
    assert parsed(spec).backend == "python"
    spec = replace(spec, serving=replace(spec.serving, backend="vllm"))  # not in the CRD's enum yet; still escaped
    assert parsed(spec).backend == "vllm"


def test_parse_rejects_what_triton_would_reject():
    """The check has teeth: a misspelt field fails to parse."""
    with pytest.raises(text_format.ParseError):
        text_format.Parse('name: "m"\nmax_batch: 4\n', ModelConfig())


WARMUP = [{"name": "images", "batchSize": 8, "count": 3,
           "inputs": {"input": {"dataType": "FP32", "dims": [1, 8, 8], "data": "random"}}},
          {"name": "tokens", "inputs": {"input_ids": {"dataType": "INT64", "dims": [128]},
                                        "attention_mask": {"dataType": "INT64", "dims": [128]}}}]


@pytest.mark.parametrize("dtype", ["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16"])
def test_warmup_samples_parse_as_model_warmup(dtype):
    warmup = [*WARMUP, {"name": "dtype", "inputs": {"x": {"dataType": dtype, "dims": [2, 3]}}}]
    spec = parse_spec("m", {"model": {"uri": "s3://b/m.onnx", "format": "onnx"},
                            "serving": {"maxBatchSize": 8, "warmup": warmup}})
    check(parsed(spec), spec)


HOSTILE = ["line\nbreak", 'quo"te', "back\\slash", "tab\there", "cr\rx", "nul\x00x", "bell\x07", "del\x7f",
           "Résumé-模型", "'single'", 'end"\nname: "injected', "\\n literal", "é\x01"]


@pytest.mark.parametrize("text", HOSTILE)
def test_warmup_names_and_input_names_round_trip_whatever_they_hold(text):
    """A newline (or any control character) in a warmup name or input name must not break config.pbtxt or
    inject a field: escaped per the protobuf text format, it parses back to the same string."""
    spec = parse_spec("m", {"model": {"uri": "s3://b/m.onnx", "format": "onnx"},
                            "serving": {"maxBatchSize": 4, "warmup": [
                                {"name": text, "inputs": {text: {"dataType": "FP32", "dims": [2]}}}]}})
    config = parsed(spec)
    check(config, spec)
    assert config.model_warmup[0].name == text
    assert list(config.model_warmup[0].inputs) == [text]
    assert config.name == "m"  # nothing injected
    assert all("\n" not in line[line.find('"'):] for line in render_config_pbtxt(spec).splitlines() if '"' in line)
