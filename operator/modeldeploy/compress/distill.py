"""Knowledge distillation: train a small student from the catalogue on a teacher's softened outputs.

Why this exists: a student a fraction of the teacher's size can be served in its place when it keeps the
teacher's accuracy, and the teacher's soft targets carry more information per image than a hard label
(which digit the image resembles, and how much) — so distillation also makes use of images without labels.
The trade-off: the student must be trained (seconds for the catalogue's networks on digits, in numpy), and
its quality depends on training to convergence, so results are reported as mean ± std over seeds.

Loss (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015), per batch::

    L = α·T²·mean_i KL(softmax(t_i/T) ‖ softmax(s_i/T)) + (1 − α)·mean_{i labelled} CE(y_i, softmax(s_i))

with student logits ``s``, teacher logits ``t``, temperature ``T``. Images whose label is ``-1`` (unlabelled)
count only in the KL term; a batch without labelled images has no CE term. The T² keeps the soft term's
gradient on the scale of the hard term's as T changes. Gradient with respect to the student logits, with
``p = softmax(s/T)``, ``q = softmax(t/T)``, ``r = softmax(s)``, ``N`` the batch and ``M`` its labelled
count::

    dL/ds_i = α · T · (p_i − q_i) / N  +  (1 − α) · (r_i − onehot(y_i)) / M   [second term if labelled]

(``d KL/d s = (p − q)/T``; times T² gives T·(p − q)). :func:`hinton_loss` returns both and the unit tests
check the gradient against finite differences.

What the compress command calls: ``run(src, dst, options, ctx)`` (the technique contract of
:mod:`modeldeploy.compress`; ``options`` are ``spec.compression.distillation``'s ``student``,
``temperature``, ``alpha``, ``epochs``; the teacher is the model at ``src``), which is::

    from modeldeploy.compress import distill
    report = distill.distill_onnx("model.onnx", "out/model.onnx", data, student="mlp-32",
                                  temperature=4.0, alpha=0.9, epochs=60, seed=0, log=sys.stderr)

``data`` as in :mod:`modeldeploy.compress.prune` (a 4-tuple, a ``Dataset`` or a mapping); ``x_train`` is
required, ``y_train`` optional (without it, or where a label is ``-1``, only the soft targets teach). The
report has ``student``, ``params_teacher/student``, ``size_bytes_teacher/student``, ``size_ratio``,
``accuracy_teacher``, ``accuracy_student``, ``agreement`` (held-out fraction where student and teacher pick
the same class), ``history`` and ``model_path``. Lower level: ``distill(teacher, student_name, data, T, alpha, epochs,
seed) -> params`` where ``teacher`` is digits parameters, a ``model.onnx`` path, or any ``x -> logits``
callable; ``train_alone`` is the baseline (the same student on the labelled images only).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from modeldeploy.compress import _train, students
from modeldeploy.models import _nn, digits

UNLABELLED = -1


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def hinton_loss(student_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray,
                temperature: float, alpha: float) -> tuple[float, np.ndarray]:
    """The distillation loss of a batch and its gradient with respect to ``student_logits`` (see module doc).

    ``labels``: int class per image, ``-1`` for unlabelled. Keeps the dtype of ``student_logits``.

    >>> s = np.array([[2.0, 0.0]]); loss, d = hinton_loss(s, s, np.array([-1]), 4.0, 1.0)
    >>> float(loss), d.tolist()   # identical logits, no labels: nothing to learn
    (0.0, [[0.0, 0.0]])
    """
    if temperature <= 0:
        raise ValueError(f"distill: temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distill: alpha must be in [0, 1], got {alpha}")
    n = student_logits.shape[0]
    log_p = _log_softmax(student_logits / temperature)
    log_q = _log_softmax(teacher_logits.astype(student_logits.dtype) / temperature)
    q = np.exp(log_q)
    kl = (q * (log_q - log_p)).sum(axis=1).mean()
    loss = alpha * temperature ** 2 * kl
    grad = alpha * temperature * (np.exp(log_p) - q) / n
    labelled = np.flatnonzero(labels != UNLABELLED)
    if len(labelled) and alpha < 1.0:
        ce, dce = _nn.softmax_cross_entropy(student_logits[labelled], labels[labelled])
        loss = loss + (1.0 - alpha) * ce
        grad[labelled] += (1.0 - alpha) * dce
    return float(loss), grad.astype(student_logits.dtype, copy=False)


def label_subset(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices (ascending) of a stratified ``fraction`` of ``y``: ``ceil(fraction × n_c)`` per class ``c``."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"distill: label fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng([seed, 2])
    picked = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        picked.append(rng.permutation(members)[:int(np.ceil(fraction * len(members)))])
    return np.sort(np.concatenate(picked))


def hide_labels(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A copy of ``y`` where all but a stratified ``fraction`` of the labels are ``-1`` (unlabelled)."""
    keep = label_subset(y, fraction, seed)
    out = np.full_like(y, UNLABELLED)
    out[keep] = y[keep]
    return out


def teacher_logits_fn(teacher) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> logits`` for a teacher given as digits-style parameters, a ``model.onnx`` path (or a directory
    holding one; its ``logits`` output is used), or already a callable."""
    if callable(teacher):
        return teacher
    if isinstance(teacher, dict):
        forward = students.network_of(teacher)[0]
        return lambda x: forward(teacher, x)
    path = Path(teacher)
    if path.is_dir():
        path = path / digits.MODEL_FILE
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    if digits.LOGITS in outputs:
        output = digits.LOGITS
    elif len(outputs) == 1:
        output = outputs[0]
    else:
        raise ValueError(f"distill: teacher {path} has no {digits.LOGITS!r} output (outputs: {', '.join(outputs)})")
    feed = session.get_inputs()[0].name

    def logits(x):
        return np.concatenate([session.run([output], {feed: x[i:i + 256]})[0] for i in range(0, len(x), 256)])
    return logits


def _fit_student(student_name, x, y, epochs, seed, *, teacher_logits=None, temperature=1.0, alpha=0.0,
                 lr=3e-3, batch_size=32, weight_decay=1e-4, test=None, log=None, tag="distill"):
    student = students.get(student_name)

    def loss_and_grads(p, idx):
        logits, caches = student.forward(p, x[idx], train=True)
        if teacher_logits is None:
            loss, dlogits = _nn.softmax_cross_entropy(logits, y[idx])
        else:
            loss, dlogits = hinton_loss(logits, teacher_logits[idx], y[idx], temperature, alpha)
        return loss, student.backward(dlogits, caches)

    evaluate = None
    if test is not None and test[0] is not None and test[1] is not None:
        x_test, y_test = test

        def evaluate(p):
            return {"held-out accuracy": float((student.forward(p, x_test).argmax(axis=1) == y_test).mean())}
    return _train.fit(student.init(seed), loss_and_grads, len(x), epochs=epochs, seed=seed, lr=lr,
                      batch_size=batch_size, weight_decay=weight_decay, evaluate=evaluate, log=log, tag=tag)


def distill(teacher, student_name: str, data, T: float = 4.0, alpha: float = 0.9, epochs: int = 60,
            seed: int = 0, *, label_fraction: float = 1.0, lr: float = 3e-3, batch_size: int = 32,
            log=None, history: list | None = None) -> dict[str, np.ndarray]:
    """Train catalogue student ``student_name`` on the teacher's soft targets for every training image
    plus the hard labels of a stratified ``label_fraction`` of them (labels already ``-1`` stay hidden).

    The teacher's logits are computed once, up front. Returns the student's parameters; the per-epoch
    history is appended to ``history`` if a list is given.
    """
    x_train, y_train, x_test, y_test = _train.as_split(data)
    if x_train is None:
        raise ValueError("distill: needs training images (x_train); labels (y_train) are optional")
    if y_train is None:
        y = np.full(len(x_train), UNLABELLED, dtype=np.int64)
    else:
        y = np.asarray(y_train) if label_fraction >= 1.0 else hide_labels(np.asarray(y_train), label_fraction, seed)
    t_logits = np.asarray(teacher_logits_fn(teacher)(x_train), dtype=np.float32)
    params, hist = _fit_student(student_name, x_train, y, epochs, seed, teacher_logits=t_logits,
                                temperature=T, alpha=alpha, lr=lr, batch_size=batch_size,
                                test=(x_test, y_test), log=log, tag=f"distill {student_name}")
    if history is not None:
        history.extend(hist)
    return params


def train_alone(student_name: str, data, epochs: int, seed: int = 0, *, label_fraction: float = 1.0,
                lr: float = 3e-3, batch_size: int = 32, log=None) -> dict[str, np.ndarray]:
    """The baseline: the same student trained with cross-entropy on the labelled images only (the same
    stratified ``label_fraction`` subset :func:`distill` would keep for that seed), no teacher."""
    x_train, y_train, x_test, y_test = _train.as_split(data)
    y = y_train if label_fraction >= 1.0 else hide_labels(y_train, label_fraction, seed)
    idx = np.flatnonzero(y != UNLABELLED)
    return _fit_student(student_name, x_train[idx], y[idx], epochs, seed, lr=lr, batch_size=batch_size,
                        test=(x_test, y_test), log=log, tag=f"alone {student_name}")[0]


def export_onnx(student_name: str, params: dict[str, np.ndarray], path, *, doc: str = "") -> Path:
    """Write a trained student as ONNX with the digits model's signature (``input`` -> ``probs``, ``logits``)."""
    return students.get(student_name).export(params, path, doc=doc)


def distill_onnx(teacher, out, data, *, student: str = "mlp-32", temperature: float = 4.0, alpha: float = 0.9,
                 epochs: int = 60, seed: int = 0, label_fraction: float = 1.0, log=sys.stderr) -> dict:
    """Distill ``teacher`` (a ``model.onnx``, a directory holding one, or digits parameters) into catalogue
    student ``student``, write it to ``out`` as ONNX, and return the report (module docstring)."""
    start = time.perf_counter()
    spec = students.get(student)
    _, _, x_test, y_test = _train.as_split(data)
    _train.emit(log, f"distill: {student} ({spec.description}), T {temperature}, alpha {alpha}, {epochs} epochs")
    history: list = []
    params = distill(teacher, student, data, temperature, alpha, epochs, seed, label_fraction=label_fraction,
                     log=log, history=history)
    out = export_onnx(student, params, out, doc=f"student {student} distilled by modeldeploy: T {temperature}, "
                                                f"alpha {alpha}, {epochs} epochs (seed {seed})")
    teacher_fn = teacher_logits_fn(teacher)
    size_teacher = params_teacher = None
    if isinstance(teacher, dict):
        params_teacher = int(sum(v.size for v in teacher.values()))
    elif not callable(teacher):
        path = Path(teacher)
        path = path / digits.MODEL_FILE if path.is_dir() else path
        size_teacher = path.stat().st_size
        params_teacher = int(sum(v.size for v in digits.load_params(path).values()))
    report = {
        "technique": "distill", "student": student, "temperature": temperature, "alpha": alpha,
        "epochs": epochs, "seed": seed, "label_fraction": label_fraction,
        "params_teacher": params_teacher,
        "params_student": int(sum(v.size for v in params.values())),
        "size_bytes_teacher": size_teacher, "size_bytes_student": Path(out).stat().st_size,
        "size_ratio": round(size_teacher / Path(out).stat().st_size, 3) if size_teacher else None,
        "accuracy_teacher": None, "accuracy_student": None, "agreement": None,
        "history": history, "seconds": None, "model_path": str(out),
    }
    if x_test is not None and y_test is not None:
        t_pred = teacher_fn(x_test).argmax(axis=1)
        s_pred = spec.forward(params, x_test).argmax(axis=1)
        report.update(accuracy_teacher=float((t_pred == y_test).mean()),
                      accuracy_student=float((s_pred == y_test).mean()),
                      agreement=float((t_pred == s_pred).mean()))
    report["seconds"] = round(time.perf_counter() - start, 3)
    acc = ("" if report["accuracy_student"] is None else
           f", held-out teacher {report['accuracy_teacher']:.2%} student {report['accuracy_student']:.2%}")
    _train.emit(log, f"distill: wrote {out}: {report['size_bytes_student']} bytes{acc}")
    return report


#: Options of ``spec.compression.distillation`` that :func:`run` accepts, with their defaults.
OPTIONS = {"student": "mlp-32", "temperature": 4.0, "alpha": 0.9, "epochs": 60}


def run(src: Path, dst: Path, options, ctx) -> dict:
    """The ``distill`` technique of the compress command (contract: :mod:`modeldeploy.compress`).

    The model at ``src`` is the teacher (its ``logits`` output, through onnxruntime); the student named by
    ``options`` (``student``, ``temperature``, ``alpha``, ``epochs``; defaults in ``OPTIONS``) is trained on
    ``ctx.dataset``'s training split (``y_train`` optional, ``-1`` = unlabelled) with ``ctx.seed`` and
    written to ``dst``. Returns the report without the per-epoch history (``final_loss`` instead).
    """
    extra = sorted(set(options) - set(OPTIONS))
    if extra:
        raise ValueError(f"distill: unknown option(s) {', '.join(extra)} (known: {', '.join(OPTIONS)})")
    opts = {**OPTIONS, **options}
    report = distill_onnx(src, dst, ctx.dataset, student=opts["student"], temperature=float(opts["temperature"]),
                          alpha=float(opts["alpha"]), epochs=int(opts["epochs"]), seed=ctx.seed, log=ctx.log)
    history = report.pop("history")
    report["final_loss"] = history[-1]["loss"] if history else None
    report.pop("model_path")
    return report
