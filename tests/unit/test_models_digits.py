"""The digits example model: numpy layers against finite differences, the ONNX export against the numpy
forward pass through onnxruntime, held-out accuracy, the dynamic batch dimension, and the build cache.

The first run trains the model (about 10 s on two cores) into ``$MODELDEPLOY_CACHE`` (default
``~/.cache/modeldeploy``); later runs reuse it. numpy, scikit-learn, onnx and onnxruntime are required:
a missing one fails these tests rather than skipping them.
"""

import dataclasses
import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modeldeploy.models import _nn, digits

from .gradcheck import numeric_grad, rel_error


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    report = digits.build(out)
    return out, report


@pytest.fixture(scope="module")
def session(built):
    out, _ = built
    return ort.InferenceSession(str(out / digits.MODEL_FILE), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def test_set(built):
    with np.load(built[0] / digits.TEST_FILE) as data:
        return data["x_test"], data["y_test"]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- data ---------------------------------------------------------------------------------------------

def test_split_is_deterministic_stratified_and_scaled():
    x_train, y_train, x_test, y_test = digits.load_split(0)
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() == 1.0
    assert np.bincount(y_test, minlength=10).min() >= 35  # every class held out in proportion (~36 each)
    again = digits.load_split(0)
    assert np.array_equal(again[2], x_test) and np.array_equal(again[3], y_test)
    assert not np.array_equal(digits.load_split(1)[3], y_test)


# --- numpy layers: gradients against central finite differences ---------------------------------------



def test_network_gradients_match_finite_differences():
    rng = np.random.default_rng(7)
    hp = digits.Hyperparameters(conv1=2, conv2=3)
    params = {k: v.astype(np.float64) + 0.01 * rng.standard_normal(v.shape)
              for k, v in digits.init_params(hp, seed=3).items()}
    x = rng.random((4, 1, 8, 8))
    y = np.array([0, 3, 7, 9])

    def loss():
        return _nn.softmax_cross_entropy(digits.forward(params, x), y)[0]

    logits, caches = digits.forward(params, x, train=True)
    _, dlogits = _nn.softmax_cross_entropy(logits, y)
    grads = digits.backward(dlogits, caches)
    assert set(grads) == set(params)
    for name in params:
        assert rel_error(grads[name], numeric_grad(loss, params[name])) < 1e-6, name


def test_layer_input_gradients_match_finite_differences():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 4, 4))
    w = rng.standard_normal((5, 3, 3, 3))
    b = rng.standard_normal(5)
    upstream = rng.standard_normal((2, 5, 4, 4))

    out, cache = _nn.conv_forward(x, w, b)
    dx, _, _ = _nn.conv_backward(upstream, cache)
    assert rel_error(dx, numeric_grad(lambda: (_nn.conv_forward(x, w, b)[0] * upstream).sum(), x)) < 1e-6

    up_pool = rng.standard_normal((2, 3, 2, 2))
    _, cache = _nn.maxpool_forward(x)
    dx = _nn.maxpool_backward(up_pool, cache)
    assert rel_error(dx, numeric_grad(lambda: (_nn.maxpool_forward(x)[0] * up_pool).sum(), x)) < 1e-6


def test_conv_matches_a_direct_loop():
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.empty((2, 4, 5, 5))
    for n, f, i, j in np.ndindex(expected.shape):
        expected[n, f, i, j] = (xp[n, :, i:i + 3, j:j + 3] * w[f]).sum() + b[f]
    assert np.allclose(_nn.conv_forward(x, w, b)[0], expected)


# --- ONNX export ----------------------------------------------------------------------------------------

def test_export_is_valid_onnx_with_a_dynamic_batch(tmp_path):
    path = digits.export_onnx(digits.init_params(), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8 and [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "input" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 8, 8]
    assert [o.name for o in model.graph.output] == ["probs", "logits"]


def test_onnxruntime_matches_the_numpy_forward_pass(built, session, test_set):
    params = digits.load_params(built[0] / digits.MODEL_FILE)
    x = test_set[0][:64]
    probs, logits = session.run(["probs", "logits"], {"input": x})
    assert np.allclose(logits, digits.forward(params, x), atol=1e-5, rtol=0)
    assert np.allclose(probs, digits.predict_proba(params, x), atol=1e-5, rtol=0)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_batch_dimension_is_dynamic(session, test_set):
    x = test_set[0]
    (one,) = session.run(["probs"], {"input": x[:1]})
    (many,) = session.run(["probs"], {"input": x[:64]})
    assert one.shape == (1, 10) and many.shape == (64, 10)
    assert np.allclose(one[0], many[0], atol=1e-6)


def test_held_out_accuracy_through_onnxruntime(built, session, test_set):
    x, y = test_set
    (probs,) = session.run(["probs"], {"input": x})
    acc = float((probs.argmax(axis=1) == y).mean())
    assert len(y) == 360
    assert acc >= 0.97
    assert abs(acc - built[1]["accuracy"]) <= 1 / len(y)  # the report's numpy accuracy is what is served


# --- build and cache ------------------------------------------------------------------------------------

def test_report_describes_the_files(built):
    out, report = built
    assert report["params"] == 9930 and report["test_size"] == 360 and report["accuracy"] >= 0.97
    assert report["size_bytes"] == (out / digits.MODEL_FILE).stat().st_size
    assert report["sha256"] == sha256(out / digits.MODEL_FILE)


def test_second_build_reuses_the_cache(built, tmp_path, monkeypatch):
    first_out, first = built

    def no_training(*args, **kwargs):
        raise AssertionError("the second build trained again")
    monkeypatch.setattr(digits, "train", no_training)  # reuse means no training, however fast this CPU is
    again = digits.build(tmp_path)
    assert again["cached"] is True
    assert again["cache_path"] == first["cache_path"]
    assert sha256(tmp_path / digits.MODEL_FILE) == sha256(first_out / digits.MODEL_FILE) == first["sha256"]


def test_cache_key_covers_seed_hyperparameters_code_and_platform(monkeypatch):
    base = digits.cache_key()
    assert base == digits.cache_key(digits.Hyperparameters(), 0, 17)
    assert digits.cache_key(seed=1) != base
    assert digits.cache_key(dataclasses.replace(digits.Hyperparameters(), epochs=5)) != base
    assert digits.cache_key(opset=18) != base
    monkeypatch.setattr(digits, "CODE_VERSION", "something-else")
    assert digits.cache_key() != base
    monkeypatch.undo()
    monkeypatch.setattr(digits, "platform_tag", lambda: "another CPU")
    assert digits.cache_key() != base  # weights trained on another CPU are another model


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELDEPLOY_CACHE", str(tmp_path))
    assert digits.cache_root() == tmp_path
