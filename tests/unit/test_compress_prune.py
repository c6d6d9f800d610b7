"""Structured pruning: channels are removed physically (exact shapes), the smaller network computes exactly
what the original computes with those channels switched off (which proves every consumer, including the
dense layer after Flatten, is sliced in C×H×W order), fine-tuning recovers the accuracy, and a 90% cut
without fine-tuning does not (the case a failing accuracy gate is shown with).

Uses the digits model from ``digits.build`` (cached in ``$MODELDEPLOY_CACHE``; the first run trains it).
"""

import doctest

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modeldeploy.compress import prune, students
from modeldeploy.models import digits


@pytest.fixture(scope="module")
def split():
    return digits.load_split(0)


@pytest.fixture(scope="module")
def trained():
    return digits.load_params(digits.build(log=None)["model_path"])


def random_cnn(seed=0):
    """Digits CNN parameters with non-zero biases, so that bias slicing is exercised too."""
    rng = np.random.default_rng(seed)
    params = digits.init_params(seed=seed)
    for k in params:
        if k.endswith(".bias"):
            params[k] = rng.standard_normal(params[k].shape).astype(np.float32) * 0.1
    return params


def random_mlp(seed=0):
    params = students.mlp_init(32, seed)
    params["fc1.bias"] = np.random.default_rng(seed).standard_normal(32).astype(np.float32) * 0.1
    return params


def shapes(params):
    return {k: v.shape for k, v in params.items()}


# --- shapes ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("amount, c1, c2", [(0.5, 8, 16), (0.25, 12, 24), (0.9, 2, 4), (0.0, 16, 32)])
def test_cnn_shapes_shrink_exactly(amount, c1, c2, norm):
    pruned = prune.prune(random_cnn(), amount, norm)
    assert shapes(pruned) == {
        "conv1.weight": (c1, 1, 3, 3), "conv1.bias": (c1,),
        "conv2.weight": (c2, c1, 3, 3), "conv2.bias": (c2,),
        "fc.weight": (10, c2 * 4 * 4), "fc.bias": (10,),
    }
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in pruned.values())


def test_mlp_hidden_units_shrink_exactly():
    pruned = prune.prune(random_mlp(), 0.5)
    assert shapes(pruned) == {"fc1.weight": (16, 64), "fc1.bias": (16,), "fc2.weight": (10, 16), "fc2.bias": (10,)}


def test_prune_is_pure():
    params = random_cnn()
    before = {k: v.copy() for k, v in params.items()}
    prune.prune(params, 0.5)
    assert all(np.array_equal(params[k], before[k]) for k in params)


def test_lowest_norm_channels_go():
    params = random_cnn()
    w = params["conv1.weight"]
    w[:] = 1.0
    w[[3, 5, 7, 11]] *= 0.01              # the four smallest filters by either norm
    w[0] = 0.0                            # and one zero filter
    keep = prune.plan(params, 5 / 16, "l1")["conv1"]
    assert keep.tolist() == [1, 2, 4, 6, 8, 9, 10, 12, 13, 14, 15]


def test_l1_and_l2_rank_differently():
    w = np.array([[1.0, 1.0, 1.0, 1.0], [1.9, 0.0, 0.0, 0.0]])  # L1 4 vs 1.9; L2 2 vs 1.9
    assert prune.kept_channels(prune.channel_norms(w, "l1"), 0.5).tolist() == [0]
    w = np.array([[1.0, 1.0, 1.0, 1.0], [2.1, 0.0, 0.0, 0.0]])  # L1 4 vs 2.1; L2 2 vs 2.1
    assert prune.kept_channels(prune.channel_norms(w, "l2"), 0.5).tolist() == [1]
    assert prune.kept_channels(prune.channel_norms(w, "l1"), 0.5).tolist() == [0]


def test_docstring_examples():
    assert doctest.testmod(prune).failed == 0


@pytest.mark.parametrize("bad, message", [
    ({"amount": 1.0}, "amount"), ({"amount": -0.1}, "amount"), ({"norm": "l3"}, "norm")])
def test_bad_arguments_are_refused(bad, message):
    args = {"amount": 0.5, "norm": "l1", **bad}
    with pytest.raises(ValueError, match=message):
        prune.prune(random_cnn(), **args)


def test_unknown_network_is_refused():
    with pytest.raises(ValueError, match="unsupported network"):
        prune.prune({"w": np.zeros((2, 2))}, 0.5)


# --- the pruned network is the original with channels switched off --------------------------------------

def x_batch(n=16):
    return np.random.default_rng(1).random((n, 1, 8, 8), dtype=np.float32)


def test_amount_zero_gives_the_same_outputs(trained):
    pruned = prune.prune(trained, 0.0)
    x = x_batch()
    assert np.array_equal(digits.forward(pruned, x), digits.forward(trained, x))


def expand_cnn(pruned, keep, like):
    """Scatter the pruned tensors back into zero tensors of the original shapes (an independent inverse:
    Flatten's feature index of channel c, position s is c*16 + s)."""
    k1, k2 = keep["conv1"], keep["conv2"]
    full = {k: np.zeros_like(v) for k, v in like.items()}
    full["conv1.weight"][k1] = pruned["conv1.weight"]
    full["conv1.bias"][k1] = pruned["conv1.bias"]
    full["conv2.weight"][np.ix_(k2, k1)] = pruned["conv2.weight"]
    full["conv2.bias"][k2] = pruned["conv2.bias"]
    features = np.array([c * 16 + s for c in k2 for s in range(16)])
    full["fc.weight"][:, features] = pruned["fc.weight"]
    full["fc.bias"][:] = pruned["fc.bias"]
    return full, features


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.75])
def test_reexpanding_with_zeros_reproduces_the_pruned_network(amount):
    original = random_cnn(seed=4)
    keep = prune.plan(original, amount, "l2")
    pruned = prune.apply(original, keep)
    full, features = expand_cnn(pruned, keep, original)
    # the kept weights are exactly the original's, at the original positions (flatten order C×H×W)
    k1, k2 = keep["conv1"], keep["conv2"]
    assert np.array_equal(full["conv2.weight"][np.ix_(k2, k1)], original["conv2.weight"][np.ix_(k2, k1)])
    assert np.array_equal(full["fc.weight"][:, features], original["fc.weight"][:, features])
    x = x_batch()
    assert np.allclose(digits.forward(full, x), digits.forward(pruned, x), atol=1e-5, rtol=0)
    # and the original with the removed channels masked off computes the same function
    masked = {k: v.copy() for k, v in original.items()}
    for layer in ("conv1", "conv2"):
        gone = np.setdiff1d(np.arange(masked[f"{layer}.weight"].shape[0]), keep[layer])
        masked[f"{layer}.weight"][gone] = 0
        masked[f"{layer}.bias"][gone] = 0
    assert np.allclose(digits.forward(masked, x), digits.forward(pruned, x), atol=1e-5, rtol=0)


def test_the_check_above_would_catch_a_wrong_flatten_order():
    original = random_cnn(seed=4)
    keep = prune.plan(original, 0.5, "l2")
    pruned = prune.apply(original, keep)
    wrong = dict(pruned)  # slice the dense layer as if Flatten were H×W×C
    w = original["fc.weight"].reshape(10, 16, 32)[:, :, keep["conv2"]]
    wrong["fc.weight"] = np.ascontiguousarray(w.reshape(10, -1))
    x = x_batch()
    assert not np.allclose(digits.forward(wrong, x), digits.forward(pruned, x), atol=1e-3)


def test_mlp_pruned_equals_masked_original():
    original = random_mlp(seed=2)
    keep = prune.plan(original, 0.5, "l1")
    pruned = prune.apply(original, keep)
    masked = {k: v.copy() for k, v in original.items()}
    gone = np.setdiff1d(np.arange(32), keep["fc1"])
    masked["fc1.weight"][gone] = 0
    masked["fc1.bias"][gone] = 0
    x = x_batch()
    assert np.allclose(students.mlp_forward(masked, x), students.mlp_forward(pruned, x), atol=1e-5, rtol=0)


# --- accuracy: fine-tuning recovers 50%, nothing recovers 90% without it ------------------------------

def test_half_pruned_and_fine_tuned_keeps_accuracy_and_exports(trained, split, tmp_path):
    base = digits.accuracy(trained, split[2], split[3])
    src = digits.export_onnx(trained, tmp_path / "model.onnx")
    report = prune.prune_onnx_digits(src, tmp_path / "pruned" / "model.onnx", split,
                                     amount=0.5, norm="l2", epochs=10, seed=0, log=None)
    assert report["channels"] == {"conv1": [16, 8], "conv2": [32, 16]}
    assert report["params_before"] == 9930 and report["params_after"] == 3818
    assert report["accuracy_before"] == base
    assert base - report["accuracy_after"] <= 0.01          # the goal: ≤ 1 pt after fine-tuning
    assert report["size_ratio"] >= 2.4                       # FP32: 40,627 -> about 16,200 bytes
    assert len(report["history"]) == 10

    path = tmp_path / "pruned" / "model.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    assert dims["conv2.weight"] == [16, 8, 3, 3] and dims["fc.weight"] == [10, 256]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": split[2]})
    assert np.allclose(logits, digits.forward(digits.load_params(path), split[2]), atol=1e-4, rtol=0)
    assert float((logits.argmax(axis=1) == split[3]).mean()) == report["accuracy_after"]


def test_ninety_percent_without_fine_tuning_loses_a_lot(trained, split):
    base = digits.accuracy(trained, split[2], split[3])
    pruned = prune.prune(trained, 0.9)
    assert pruned["conv2.weight"].shape == (4, 2, 3, 3)
    assert base - digits.accuracy(pruned, split[2], split[3]) >= 0.3   # measured: 98.3% -> about 41%


def test_prune_and_finetune_accepts_an_npz_mapping(trained, split):
    data = dict(zip(("x_train", "y_train"), split[:2]))     # no test half: fine-tunes without evaluating
    tuned = prune.prune_and_finetune(trained, data, 0.5, "l1", epochs=1, seed=0)
    assert tuned["fc.weight"].shape == (10, 256)


# --- the compress command's technique contract ----------------------------------------------------------

def test_run_follows_the_technique_contract(trained, split, tmp_path):
    from modeldeploy.compress import Context
    from modeldeploy.compress.datasets import Dataset

    src = digits.export_onnx(trained, tmp_path / "model.onnx")
    dataset = Dataset(uri="builtin://digits", x_train=split[0], y_train=split[1], x_test=split[2], y_test=split[3])
    lines = []
    ctx = Context(dataset=dataset, work_dir=tmp_path, seed=0, log=lines.append)
    details = prune.run(src, tmp_path / "out.onnx", {"amount": 0.5, "norm": "l1", "fineTuneEpochs": 2}, ctx)
    assert details["channels"] == {"conv1": [16, 8], "conv2": [32, 16]} and details["epochs"] == 2
    assert "history" not in details and details["final_loss"] > 0
    assert (tmp_path / "out.onnx").stat().st_size == details["size_bytes_after"]
    assert len(lines) == 4 and "epoch   2/2" in lines[2]     # plan, two epochs, wrote
    with pytest.raises(ValueError, match="unknown option.*fineTuneEpoch"):
        prune.run(src, tmp_path / "x.onnx", {"fineTuneEpoch": 2}, ctx)
    no_train = Context(dataset=Dataset(uri="u", x_test=split[2], y_test=split[3]), work_dir=tmp_path)
    with pytest.raises(ValueError, match="training data"):
        prune.run(src, tmp_path / "x.onnx", {}, no_train)
    assert prune.run(src, tmp_path / "y.onnx", {"fineTuneEpochs": 0}, no_train)["accuracy_after"] is not None
