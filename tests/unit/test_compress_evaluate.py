"""Evaluation: accuracy and cosine on the real digits model, latency statistics with a fake clock."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from modeldeploy.compress import CompressError
from modeldeploy.compress.datasets import Dataset, load_dataset, stack_inputs
from modeldeploy.compress.evaluate import Settings, add_relative, cosine, evaluate, measure_latency
from modeldeploy.compress.quantize import to_fp16
from modeldeploy.models import digits

FAST = Settings(runs=3, warmup=1)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return digits.build(tmp_path_factory.mktemp("digits"))


def test_fp32_accuracy_size_and_latency(built):
    data = load_dataset("builtin://digits")
    record, out = evaluate(built["model_path"], data, FAST)
    assert record["accuracy"] == pytest.approx(built["accuracy"]) and record["samples"] == 360
    assert record["correct"] == round(built["accuracy"] * 360)
    assert record["size_bytes"] == built["size_bytes"]
    assert record["weight_bytes"] == 4 * built["params"]
    assert record["output"] == "probs" and out.shape == (360, 10)
    assert set(record["latency_ms"]) == {"1", "32"} and all(ms > 0 for ms in record["latency_ms"].values())
    assert "cosine" not in record


def test_other_output_and_unknown_output(built):
    data = load_dataset("builtin://digits")
    record, out = evaluate(built["model_path"], data, Settings(runs=1, warmup=0, batch_sizes=(2,), output="logits"))
    assert record["output"] == "logits" and record["accuracy"] == pytest.approx(built["accuracy"])
    assert out.min() < 0  # logits, not probabilities
    with pytest.raises(CompressError, match="no output 'embedding' \\(outputs: probs, logits\\)"):
        evaluate(built["model_path"], data, Settings(runs=1, output="embedding"))


def test_embedding_task_measures_cosine_to_the_reference(built, tmp_path):
    x = load_dataset("builtin://digits").x_test[:50]
    data = Dataset(uri="test://embeddings", x_test=x)
    fp32, ref = evaluate(built["model_path"], data, Settings(runs=1, warmup=0, output="logits"))
    assert "accuracy" not in fp32 and "cosine" not in fp32
    to_fp16(built["model_path"], tmp_path / "fp16.onnx")
    half, _ = evaluate(tmp_path / "fp16.onnx", data, Settings(runs=1, warmup=0, output="logits"), reference=ref)
    assert 0.9999 < half["cosine"] <= 1.0 + 1e-9 and half["cosine_min"] <= half["cosine"]
    with pytest.raises(CompressError, match="reference outputs \\[50, 3\\] do not match logits \\[50, 10\\]"):
        evaluate(built["model_path"], data, Settings(runs=1, output="logits"), reference=np.ones((50, 3)))


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory):
    """``out = a + float(b)``: a float32 [n, 3], b int64 [n, 3], the shape of a transformer's inputs."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT), helper.make_node("Add", ["a", "bf"], ["out"])],
        "two-inputs",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("b", TensorProto.INT64, ["n", 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("two") / "model.onnx"
    onnx.save(model, str(path))
    return path


def test_each_field_of_a_structured_x_feeds_the_input_of_that_name(two_inputs):
    a = np.arange(15, dtype=np.float64).reshape(5, 3)  # float64: cast to the model's float32
    b = np.full((5, 3), 10, np.int64)
    data = Dataset(uri="test://two", x_test=stack_inputs({"b": b, "a": a}))  # field order is not input order
    record, out = evaluate(two_inputs, data, Settings(runs=1, warmup=0, batch_sizes=(1, 7), eval_batch=2))
    np.testing.assert_array_equal(out, a + 10)
    assert set(record["latency_ms"]) == {"1", "7"} and "cosine" not in record
    shifted, _ = evaluate(two_inputs, Dataset(uri="test://two", x_test=stack_inputs({"a": -a, "b": b})),
                          Settings(runs=1, warmup=0, batch_sizes=(1,)), reference=out)
    assert shifted["cosine"] < 0.99  # a different input really reaches the model


@pytest.mark.parametrize("x,message", [
    (stack_inputs({"a": np.zeros((2, 3), np.float32)}),
     r"the dataset has arrays for inputs \['a'\] but the model's inputs are \['a', 'b'\]"),
    (stack_inputs({"a": np.zeros((2, 3)), "b": np.zeros((2, 3)), "c": np.zeros(2)}),
     r"arrays for inputs \['a', 'b', 'c'\]"),
    (np.zeros((2, 3), np.float32), r"single-input models from a plain x_test; this one has inputs \['a', 'b'\]: "
                                   r"give one array per input \(x_test__<input name>"),
])
def test_inputs_that_do_not_fit_the_model(two_inputs, x, message):
    with pytest.raises(CompressError, match=message):
        evaluate(two_inputs, Dataset(uri="test://two", x_test=x), Settings(runs=1, warmup=0))


def test_cosine():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    b = np.array([[0.0, 1.0], [2.0, 2.0], [1.0, 0.0], [-1.0, 0.0]])
    assert cosine(a, b) == pytest.approx([0.0, 1.0, 0.0, -1.0])


class FakeSession:
    def __init__(self):
        self.shapes = []

    def get_inputs(self):
        return [SimpleNamespace(name="input", type="tensor(float)")]

    def run(self, outputs, feed):
        self.shapes.append(feed["input"].shape)


def test_latency_is_the_median_of_timed_runs_after_warmup():
    sess = FakeSession()
    ticks = itertools.chain([0, 1, 1, 4, 4, 6],            # batch 1: 1 s, 3 s, 2 s -> median 2 s
                            [10, 10.5, 11, 11.1, 12, 12.2])  # batch 5: 0.5, 0.1, 0.2 -> 0.2 s
    result = measure_latency(sess, np.zeros((2, 3), np.float32), (1, 5), runs=3, warmup=2, clock=lambda: next(ticks))
    assert result == {"1": 2000.0, "5": 200.0}
    assert sess.shapes == [(1, 3)] * 5 + [(5, 3)] * 5  # 2 warmup + 3 timed; 2 rows repeated up to batch 5


def test_latency_feeds_every_input_the_same_repeated_rows():
    feeds = []

    class TwoInputs:
        def get_inputs(self):
            return [SimpleNamespace(name=n, type="tensor(int64)") for n in ("ids", "mask")]

        def run(self, outputs, feed):
            feeds.append(feed)

    x = stack_inputs({"ids": np.array([[1, 2], [3, 4]]), "mask": np.array([[1, 1], [1, 0]])})
    measure_latency(TwoInputs(), x, (3,), runs=1, warmup=0, clock=itertools.count().__next__)
    assert feeds[0]["ids"].tolist() == [[1, 2], [3, 4], [1, 2]]
    assert feeds[0]["mask"].tolist() == [[1, 1], [1, 0], [1, 1]]
    assert all(v.flags.c_contiguous and v.dtype == np.int64 for v in feeds[0].values())


def test_relative_numbers():
    base = {"size_bytes": 400, "weight_bytes": 300, "latency_ms": {"1": 0.02, "32": 0.1}}
    rec = add_relative({"size_bytes": 100, "weight_bytes": 75, "latency_ms": {"1": 0.04, "32": 0.05}}, base)
    assert (rec["size_ratio"], rec["weight_ratio"], rec["speedup"]) == (4.0, 4.0, {"1": 0.5, "32": 2.0})
