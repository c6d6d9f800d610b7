"""Evaluation: accuracy and cosine on the real digits model, latency statistics with a fake clock."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from modeldeploy.compress import CompressError
from modeldeploy.compress.datasets import Dataset, load_dataset
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


def test_relative_numbers():
    base = {"size_bytes": 400, "weight_bytes": 300, "latency_ms": {"1": 0.02, "32": 0.1}}
    rec = add_relative({"size_bytes": 100, "weight_bytes": 75, "latency_ms": {"1": 0.04, "32": 0.05}}, base)
    assert (rec["size_ratio"], rec["weight_ratio"], rec["speedup"]) == (4.0, 4.0, {"1": 0.5, "32": 2.0})
