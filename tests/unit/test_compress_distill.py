"""Distillation: Hinton's loss and its gradient (against finite differences), the student catalogue (MLP
gradients, ONNX export against numpy through onnxruntime), the stratified label subset, and a fast
end-to-end sanity run (a student distilled from the digits CNN with 10% of labels). The 5-seed comparison
against a student trained alone is ``tests/bench/bench_distill.py`` (results in docs/models.md).
"""

import doctest

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modeldeploy.compress import distill, students
from modeldeploy.models import _nn, digits

from .gradcheck import numeric_grad, rel_error




# --- the loss -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature, alpha, labels", [
    (4.0, 0.9, [3, -1, 0, -1, 9, -1]),   # mixed labelled / unlabelled
    (2.0, 0.5, [1, 2, 3, 4, 5, 6]),      # all labelled
    (1.0, 0.0, [1, -1, 3, 4, -1, 6]),    # hard labels only
    (8.0, 1.0, [1, 2, 3, 4, 5, 6]),      # soft targets only
    (3.0, 0.7, [-1] * 6),                # no labels: the CE term vanishes
])
def test_gradient_matches_finite_differences(temperature, alpha, labels):
    rng = np.random.default_rng(3)
    s = rng.standard_normal((6, 10)) * 3
    t = rng.standard_normal((6, 10)) * 3
    y = np.array(labels)
    _, grad = distill.hinton_loss(s, t, y, temperature, alpha)
    numeric = numeric_grad(lambda: distill.hinton_loss(s, t, y, temperature, alpha)[0], s)
    assert rel_error(grad, numeric) < 1e-6


def test_loss_is_the_weighted_sum_of_kl_and_cross_entropy():
    rng = np.random.default_rng(4)
    s, t = rng.standard_normal((5, 10)), rng.standard_normal((5, 10))
    y = np.array([2, -1, 7, 7, -1])
    T, alpha = 3.0, 0.6
    p, q = _nn.softmax(s / T), _nn.softmax(t / T)
    kl = (q * np.log(q / p)).sum(axis=1).mean()
    ce = -np.log(_nn.softmax(s)[[0, 2, 3], [2, 7, 7]]).mean()
    loss, _ = distill.hinton_loss(s, t, y, T, alpha)
    assert np.isclose(loss, alpha * T * T * kl + (1 - alpha) * ce, rtol=1e-12)


def test_alpha_zero_is_plain_cross_entropy():
    rng = np.random.default_rng(5)
    s, t, y = rng.standard_normal((4, 10)), rng.standard_normal((4, 10)), np.array([0, 1, 2, 3])
    loss, grad = distill.hinton_loss(s, t, y, 4.0, 0.0)
    ce, dce = _nn.softmax_cross_entropy(s, y)
    assert np.isclose(loss, ce) and np.allclose(grad, dce)


def test_loss_keeps_float32_and_rejects_bad_settings():
    s = np.zeros((2, 10), np.float32)
    assert distill.hinton_loss(s, s + 1, np.array([1, -1]), 4.0, 0.9)[1].dtype == np.float32
    with pytest.raises(ValueError, match="temperature"):
        distill.hinton_loss(s, s, np.array([1, 1]), 0.0, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        distill.hinton_loss(s, s, np.array([1, 1]), 1.0, 1.5)


def test_docstring_examples():
    assert doctest.testmod(distill).failed == 0


def test_label_subset_is_stratified_and_seeded():
    y = digits.load_split(0)[1]
    idx = distill.label_subset(y, 0.1, seed=0)
    counts = np.bincount(y[idx], minlength=10)
    assert counts.tolist() == [int(np.ceil(0.1 * n)) for n in np.bincount(y, minlength=10)]
    assert np.array_equal(idx, distill.label_subset(y, 0.1, seed=0))
    assert not np.array_equal(idx, distill.label_subset(y, 0.1, seed=1))
    hidden = distill.hide_labels(y, 0.1, seed=0)
    assert (hidden != -1).sum() == len(idx) and np.array_equal(hidden[idx], y[idx])


# --- the catalogue --------------------------------------------------------------------------------------

def test_mlp_gradients_match_finite_differences():
    rng = np.random.default_rng(6)
    params = {k: v.astype(np.float64) + 0.01 * rng.standard_normal(v.shape)
              for k, v in students.mlp_init(5, seed=1).items()}
    x, y = rng.random((3, 1, 8, 8)), np.array([1, 4, 9])

    def loss():
        return _nn.softmax_cross_entropy(students.mlp_forward(params, x), y)[0]

    logits, caches = students.mlp_forward(params, x, train=True)
    grads = students.mlp_backward(_nn.softmax_cross_entropy(logits, y)[1], caches)
    for name in params:
        assert rel_error(grads[name], numeric_grad(loss, params[name])) < 1e-6, name


def test_catalogue_sizes():
    assert {n: s.params_count() for n, s in students.CATALOGUE.items()} == {
        "mlp-16": 1210, "mlp-32": 2410, "mlp-64": 4810, "cnn-8-16": 3818}
    with pytest.raises(KeyError, match="mlp-32"):
        students.get("resnet-50")


@pytest.mark.parametrize("name", list(students.CATALOGUE))
def test_every_student_exports_onnx_matching_numpy(name, tmp_path):
    student = students.get(name)
    params = student.init(3)
    path = distill.export_onnx(name, params, tmp_path / "s.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8 and [o.name for o in model.graph.output] == ["probs", "logits"]
    assert model.graph.input[0].name == "input"
    x = np.random.default_rng(0).random((7, 1, 8, 8), dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, logits = session.run(["probs", "logits"], {"input": x})
    assert np.allclose(logits, student.forward(params, x), atol=1e-5, rtol=0)
    assert np.allclose(probs, _nn.softmax(student.forward(params, x)), atol=1e-6, rtol=0)
    assert session.run(["probs"], {"input": x[:1]})[0].shape == (1, 10)


# --- end to end -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    digits.build(out, log=None)
    return out


def test_teacher_from_onnx_matches_teacher_from_params(teacher_dir):
    x = digits.load_split(0)[2][:50]
    from_onnx = distill.teacher_logits_fn(teacher_dir)(x)
    from_params = distill.teacher_logits_fn(digits.load_params(teacher_dir / digits.MODEL_FILE))(x)
    assert np.allclose(from_onnx, from_params, atol=1e-4)


def test_distilled_student_learns_from_the_teacher_with_few_labels(teacher_dir, tmp_path):
    split = digits.load_split(0)
    report = distill.distill_onnx(teacher_dir / digits.MODEL_FILE, tmp_path / "student.onnx", split,
                                  student="mlp-32", temperature=4.0, alpha=0.9, epochs=20, seed=0,
                                  label_fraction=0.1, log=None)
    assert report["accuracy_student"] >= 0.9            # chance is 0.1; measured about 0.96
    assert report["agreement"] >= 0.9                   # picks the teacher's class on most images
    assert report["params_teacher"] == 9930 and report["params_student"] == 2410
    assert report["size_ratio"] > 3
    session = ort.InferenceSession(report["model_path"], providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probs"], {"input": split[2]})
    assert float((probs.argmax(axis=1) == split[3]).mean()) == pytest.approx(report["accuracy_student"], abs=1 / 360)


def test_run_follows_the_technique_contract(teacher_dir, tmp_path):
    from modeldeploy.compress import Context
    from modeldeploy.compress.datasets import Dataset

    x_train, y_train, x_test, y_test = digits.load_split(0)
    lines = []
    ctx = Context(dataset=Dataset(uri="builtin://digits", x_train=x_train, y_train=y_train, x_test=x_test,
                                  y_test=y_test), work_dir=tmp_path, seed=1, log=lines.append)
    details = distill.run(teacher_dir / digits.MODEL_FILE, tmp_path / "s.onnx",
                          {"student": "mlp-16", "temperature": 2, "alpha": 0.5, "epochs": 3}, ctx)
    assert details["student"] == "mlp-16" and details["seed"] == 1 and details["epochs"] == 3
    assert "history" not in details and details["accuracy_student"] > 0.5
    assert len(lines) == 5                                  # start, three epochs, wrote
    with pytest.raises(ValueError, match="unknown option.*temp"):
        distill.run(teacher_dir / digits.MODEL_FILE, tmp_path / "x.onnx", {"temp": 2}, ctx)
    with pytest.raises(KeyError, match="unknown student"):
        distill.run(teacher_dir / digits.MODEL_FILE, tmp_path / "x.onnx", {"student": "big"}, ctx)
    # without labels the soft targets alone teach
    unlabelled = Context(dataset=Dataset(uri="u", x_train=x_train, x_test=x_test, y_test=y_test), work_dir=tmp_path)
    assert distill.run(teacher_dir / digits.MODEL_FILE, tmp_path / "u.onnx", {"epochs": 20}, unlabelled)[
        "accuracy_student"] > 0.9
