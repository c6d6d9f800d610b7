"""Quantization on the real digits CNN: every mode gives a valid, smaller model within the accuracy goals.

Numbers behind the thresholds (2 CPU cores, onnxruntime 1.32, held-out 360 images, FP32 98.33 %, file
40,627 bytes of which 39,720 are weights): FP16 21,373 bytes, 98.33 %; INT8 dynamic (MatMul/Gemm) 26,501
bytes, 98.33 %; INT8 static QDQ per-tensor MinMax 14,996 bytes (2.7× the file, 3.9× the weights), 98.33 %;
per-channel 97.78 %. One image is 0.28 pt. docs/compression.md has the full table.

Those accuracies are not portable: the CNN is trained on each machine, and on another CPU the same code
gave a network on which per-channel INT8 lost no image instead of two. So the accuracy checks here use
the product's default gate (``DEFAULT_MAX_ACCURACY_DROP``, 1 pt, three images): what a served variant
must meet. A quantizer that breaks the model loses tens of points and still fails them.
"""

import numpy as np
import onnx
import pytest

from modeldeploy.compress import Context, quantize
from modeldeploy.compress.datasets import load_dataset
from modeldeploy.compress.evaluate import Settings, evaluate, session
from modeldeploy.models import digits
from modeldeploy.policy.compression import DEFAULT_MAX_ACCURACY_DROP as GATE

FAST = Settings(runs=3, warmup=1)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return digits.build(tmp_path_factory.mktemp("digits"))["model_path"]


@pytest.fixture(scope="module")
def data():
    return load_dataset("builtin://digits")


@pytest.fixture(scope="module")
def fp32(model, data):
    return evaluate(model, data, FAST)[0]


def measured(path, data, fp32):
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    record = evaluate(path, data, FAST)[0]
    return record, 100 * (fp32["accuracy"] - record["accuracy"])


def test_fp16_halves_the_model_and_keeps_fp32_io(model, data, fp32, tmp_path):
    out = tmp_path / "fp16.onnx"
    info = quantize.to_fp16(model, out)
    record, drop = measured(out, data, fp32)
    assert drop <= GATE
    assert record["size_bytes"] < 0.55 * fp32["size_bytes"]
    assert record["weight_bytes"] == fp32["weight_bytes"] // 2
    sess = session(out)
    assert [i.type for i in sess.get_inputs()] == ["tensor(float)"]
    assert {o.type for o in sess.get_outputs()} == {"tensor(float)"}
    assert info["keep_io_types"] and info["ops"]["Cast"] >= 1


def test_int8_dynamic_on_a_cnn_quantizes_only_matmul_and_gemm(model, data, fp32, tmp_path):
    out = tmp_path / "dyn.onnx"
    info = quantize.int8_dynamic(model, out)
    record, drop = measured(out, data, fp32)
    assert info["op_types"] == ["MatMul", "Gemm"] and "onnxruntime#12854" in info["op_types_reason"]
    assert "ConvInteger" not in info["ops"] and info["ops"]["Conv"] == 2
    assert info["ops"].get("MatMulInteger", 0) + info["ops"].get("DynamicQuantizeLinear", 0) >= 1
    assert drop <= GATE
    assert record["size_bytes"] < fp32["size_bytes"]
    assert not (tmp_path / "dyn.preprocessed.onnx").exists()


def test_int8_dynamic_without_convolutions_uses_the_default_op_list():
    from onnx import TensorProto, helper

    w = onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[w])
    assert quantize.default_dynamic_ops(helper.make_model(graph))[0] is None


def test_int8_static_qdq_is_smaller_and_keeps_accuracy(model, data, fp32, tmp_path):
    out = tmp_path / "static.onnx"
    x, split = data.calibration(256)
    info = quantize.int8_static(model, out, x)
    record, drop = measured(out, data, fp32)
    assert split == "x_train" and info["calibration_samples"] == 256
    assert info["ops"]["QuantizeLinear"] >= 3 and info["ops"]["DequantizeLinear"] >= 6
    assert drop <= GATE  # measured here: 0 pt (the goal is 0.3 pt)
    # The 3.8× holds for the weights; the file also carries the graph (26 nodes, ~4 KB), a third
    # of an INT8 file this small: measured 2.7×.
    assert fp32["weight_bytes"] / record["weight_bytes"] >= 3.8
    assert fp32["size_bytes"] / record["size_bytes"] >= 2.5


@pytest.mark.parametrize("per_channel,method", [
    (False, "Entropy"),
    (False, "Percentile"),
    (True, "MinMax"),   # measured 0.56 pt on one CPU, 0 on another
])
def test_int8_static_options(model, data, fp32, tmp_path, per_channel, method):
    out = tmp_path / "static.onnx"
    info = quantize.int8_static(model, out, data.calibration(128)[0], per_channel=per_channel,
                                calibrate_method=method)
    record, drop = measured(out, data, fp32)
    assert (info["per_channel"], info["calibration_method"]) == (per_channel, method)
    assert drop <= GATE
    assert fp32["weight_bytes"] / record["weight_bytes"] >= 3.5


def test_technique_wrappers_read_recipe_options(model, data, tmp_path):
    ctx = Context(dataset=data, work_dir=tmp_path, log=lambda line: None)
    info = quantize.run_int8_static(model, tmp_path / "s.onnx",
                                    {"perChannel": True, "calibrationMethod": "MinMax", "calibrationSamples": 64}, ctx)
    assert (info["per_channel"], info["calibration_samples"], info["calibration_split"]) == (True, 64, "x_train")
    info = quantize.run_int8_dynamic(model, tmp_path / "d.onnx", {"opTypes": ["Gemm"], "preprocess": False}, ctx)
    assert (info["op_types"], info["preprocessed"]) == (["Gemm"], False)
    with pytest.raises(ValueError, match="unknown option.*perchannel"):
        quantize.run_int8_static(model, tmp_path / "x.onnx", {"perchannel": True}, ctx)
    with pytest.raises(ValueError, match="calibrationMethod 'KL'"):
        quantize.run_int8_static(model, tmp_path / "x.onnx", {"calibrationMethod": "KL"}, ctx)
