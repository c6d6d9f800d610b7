"""The digits example model: a tiny CNN trained on scikit-learn's bundled ``load_digits``, exported to ONNX.

Why this exists: the data-plane end-to-end tests and the demo need a real model with a real accuracy
(compression is gated on held-out accuracy), built offline on the test machine in seconds. The data set
ships inside scikit-learn (1797 8×8 grey images of handwritten digits), so nothing is downloaded; torch is
not available (PyPI's build is several gigabytes of CUDA), so the network is trained with the numpy layers
in :mod:`modeldeploy.models._nn` and the ONNX graph is written by hand with ``onnx.helper``.

The network (9,930 parameters with the default hyperparameters)::

    input [batch,1,8,8] -> Conv 3×3 (1->16, pad 1) -> Relu -> MaxPool 2×2 -> [batch,16,4,4]
                        -> Conv 3×3 (16->32, pad 1) -> Relu -> Flatten -> [batch,512]
                        -> Gemm (512->10) = logits -> Softmax = probs

A build is cached by a hash of (``CODE_VERSION``, seed, hyperparameters, opset, CPU and numpy version) in
``$MODELDEPLOY_CACHE/models/digits-<hash>/`` (default cache ``~/.cache/modeldeploy``), so repeated test runs
train once. Change ``CODE_VERSION`` whenever the training or export code changes what it produces.

Command line: ``python -m modeldeploy.models.digits --out DIR`` prints the build report as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from modeldeploy.models import _cache, _nn
from modeldeploy.models._cache import cache_root
from modeldeploy.models._cache import file_sha256 as _sha256

#: Bump when the code below would produce a different model for the same seed and hyperparameters.
CODE_VERSION = "digits-cnn-1"
MODEL_FILE = "model.onnx"
TEST_FILE = "digits_test.npz"
REPORT_FILE = "report.json"
INPUT, LOGITS, PROBS = "input", "logits", "probs"
CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    conv1: int = 16          #: channels of the first convolution
    conv2: int = 32          #: channels of the second convolution
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3         #: Adam learning rate at the start; cosine-decayed to 0 over the run
    weight_decay: float = 1e-4  #: L2 penalty on weights (not biases), added to the gradient
    test_fraction: float = 0.2


def load_split(seed: int = 0, test_fraction: float = 0.2):
    """Deterministic stratified split of ``sklearn.datasets.load_digits``.

    Returns ``(x_train, y_train, x_test, y_test)``: images float32 in [0, 1] shaped (N, 1, 8, 8) (the raw
    pixels are 0..16), labels int64. With the defaults: 1437 training and 360 held-out images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    return x_train, y_train, x_test, y_test


def init_params(hp: Hyperparameters = Hyperparameters(), seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal weights, zero biases, float32. Keys are the ONNX initializer names."""
    rng = np.random.default_rng(seed)

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    flat = hp.conv2 * 4 * 4
    return {
        "conv1.weight": he((hp.conv1, 1, 3, 3), 9), "conv1.bias": np.zeros(hp.conv1, np.float32),
        "conv2.weight": he((hp.conv2, hp.conv1, 3, 3), 9 * hp.conv1), "conv2.bias": np.zeros(hp.conv2, np.float32),
        "fc.weight": he((CLASSES, flat), flat), "fc.bias": np.zeros(CLASSES, np.float32),
    }


def forward(params: dict[str, np.ndarray], x: np.ndarray, *, train: bool = False):
    """Logits for a batch (N, 1, 8, 8); with ``train=True`` also the caches :func:`backward` needs."""
    h, c1 = _nn.conv_forward(x, params["conv1.weight"], params["conv1.bias"])
    h, r1 = _nn.relu_forward(h)
    h, p1 = _nn.maxpool_forward(h)
    h, c2 = _nn.conv_forward(h, params["conv2.weight"], params["conv2.bias"])
    h, r2 = _nn.relu_forward(h)
    shape = h.shape
    logits, fc = _nn.dense_forward(h.reshape(shape[0], -1), params["fc.weight"], params["fc.bias"])
    return (logits, (c1, r1, p1, c2, r2, shape, fc)) if train else logits


def backward(dlogits: np.ndarray, caches) -> dict[str, np.ndarray]:
    """Gradients of the loss with respect to every parameter, given d(loss)/d(logits)."""
    c1, r1, p1, c2, r2, shape, fc = caches
    g = {}
    d, g["fc.weight"], g["fc.bias"] = _nn.dense_backward(dlogits, fc)
    d = _nn.relu_backward(d.reshape(shape), r2)
    d, g["conv2.weight"], g["conv2.bias"] = _nn.conv_backward(d, c2)
    d = _nn.maxpool_backward(d, p1)
    d = _nn.relu_backward(d, r1)
    _, g["conv1.weight"], g["conv1.bias"] = _nn.conv_backward(d, c1)
    return g


def predict_proba(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return _nn.softmax(forward(params, x))


def accuracy(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float((forward(params, x).argmax(axis=1) == y).mean())


def train(hp: Hyperparameters = Hyperparameters(), seed: int = 0, *, split=None, log=sys.stderr):
    """Train from scratch; returns ``(params, history)``. Progress goes to ``log`` once per epoch.

    Minibatch Adam with a cosine learning-rate schedule and L2 weight decay. Everything random (weight
    init, shuffling) comes from one ``np.random.default_rng(seed)`` stream, so a run is reproducible.
    """
    x_train, y_train, x_test, y_test = split if split is not None else load_split(seed, hp.test_fraction)
    params = init_params(hp, seed)
    rng = np.random.default_rng([seed, 1])
    opt = _nn.Adam(params, hp.lr)
    n = len(x_train)
    steps_per_epoch = -(-n // hp.batch_size)
    total = hp.epochs * steps_per_epoch
    history = []
    start = time.perf_counter()
    for epoch in range(hp.epochs):
        order = rng.permutation(n)
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * hp.batch_size:(b + 1) * hp.batch_size]
            logits, caches = forward(params, x_train[idx], train=True)
            loss, dlogits = _nn.softmax_cross_entropy(logits, y_train[idx])
            grads = backward(dlogits, caches)
            for k in grads:
                if k.endswith(".weight"):
                    grads[k] += hp.weight_decay * params[k]
            step = epoch * steps_per_epoch + b
            opt.step(params, grads, lr=hp.lr * 0.5 * (1 + np.cos(np.pi * step / total)))
            loss_sum += float(loss) * len(idx)
        row = {"epoch": epoch + 1, "loss": loss_sum / n, "train_accuracy": accuracy(params, x_train, y_train),
               "test_accuracy": accuracy(params, x_test, y_test), "seconds": time.perf_counter() - start}
        history.append(row)
        if log is not None:
            print(f"digits: epoch {row['epoch']:2d}/{hp.epochs} loss {row['loss']:.4f} "
                  f"train {row['train_accuracy']:.2%} held-out {row['test_accuracy']:.2%} "
                  f"{row['seconds']:.1f}s", file=log, flush=True)
    return params, history


def export_onnx(params: dict[str, np.ndarray], path, opset: int = 17, *, doc: str = "") -> Path:
    """Write the network as ONNX: input ``input`` FP32 [batch,1,8,8], outputs ``probs`` and ``logits`` [batch,10].

    IR version 8 (the lowest that opset 17 allows), so onnxruntime 1.14 and later, and Triton's
    onnxruntime backend, load it. ``onnx.checker.check_model`` runs before the file is written.
    """
    from onnx import helper

    nodes = [
        helper.make_node("Conv", [INPUT, "conv1.weight", "conv1.bias"], ["conv1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool1", "conv2.weight", "conv2.bias"], ["conv2"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["conv2"], ["relu2"], name="relu2"),
        helper.make_node("Flatten", ["relu2"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], [LOGITS], name="fc", transB=1),
        helper.make_node("Softmax", [LOGITS], [PROBS], name="softmax", axis=1),
    ]
    return save_graph(nodes, params, path, name="digits", classes=CLASSES, opset=opset, doc=doc)


def save_graph(nodes: list, params: dict[str, np.ndarray], path, *, name: str, classes: int, opset: int = 17,
               doc: str = "") -> Path:
    """Wrap ``nodes`` in the digits signature (input ``input`` [batch,1,8,8]; outputs ``probs``, ``logits``
    [batch,classes]) with ``params`` as FP32 initializers, check it, and write it to ``path``.

    Shared by every network that must be served like the digits model (the CNN, pruned CNNs, students).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info(PROBS, TensorProto.FLOAT, ["batch", classes]),
         helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(v, dtype=np.float32), k)
                     for k, v in params.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="modeldeploy", producer_version=CODE_VERSION, doc_string=doc)
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def load_params(path) -> dict[str, np.ndarray]:
    """The weights of an exported model, read back from its ONNX initializers."""
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}



def platform_tag() -> str:
    """What the trained weights depend on besides the code: the CPU and numpy's version.

    numpy's BLAS picks its kernels (and so its rounding) by CPU, and a few thousand SGD steps turn that
    rounding into a different network: on two machines the same code and seed gave models that differ by
    an image or two after INT8. A cache folder copied from another machine is therefore not reused.
    """
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{platform.machine()}/{model}/numpy-{np.__version__}"


def cache_key(hp: Hyperparameters = Hyperparameters(), seed: int = 0, opset: int = 17) -> str:
    blob = json.dumps({"code": CODE_VERSION, "seed": seed, "opset": opset, "hp": dataclasses.asdict(hp),
                       "platform": platform_tag()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _train_into(directory: Path, hp: Hyperparameters, seed: int, opset: int, log) -> dict:
    split = load_split(seed, hp.test_fraction)
    start = time.perf_counter()
    params, history = train(hp, seed, split=split, log=log)
    seconds = time.perf_counter() - start
    x_test, y_test = split[2], split[3]
    acc = accuracy(params, x_test, y_test)
    model = export_onnx(params, directory / MODEL_FILE, opset,
                        doc=f"digits CNN ({CODE_VERSION}, seed {seed}); held-out accuracy {acc:.4f} "
                            f"on {len(y_test)} images of sklearn load_digits")
    np.savez(directory / TEST_FILE, x_test=x_test, y_test=y_test)
    report = {
        "model": "digits", "code_version": CODE_VERSION, "seed": seed, "opset": opset,
        "hyperparameters": dataclasses.asdict(hp),
        "accuracy": acc, "train_size": len(split[1]), "test_size": len(y_test),
        "train_seconds": round(seconds, 3), "params": int(sum(v.size for v in params.values())),
        "size_bytes": model.stat().st_size, "sha256": _sha256(model),
        "final_loss": history[-1]["loss"],
    }
    (directory / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def build(out_dir=None, *, seed: int = 0, hp: Hyperparameters = Hyperparameters(), opset: int = 17,
          cache_dir=None, force: bool = False, log=sys.stderr) -> dict:
    """Make sure the model is built (training it unless cached) and copy it into ``out_dir``.

    ``out_dir`` receives ``model.onnx``, ``digits_test.npz`` (``x_test``, ``y_test``) and ``report.json``;
    without it the files stay in the cache only. Returns the report: accuracy (held-out), train_seconds (of
    the run that trained it), params, size_bytes, sha256 of model.onnx, plus ``cached`` (whether this
    call reused a build), ``seconds`` (this call, wall) and ``model_path``/``test_path``.

    Concurrent builds of the same key are safe: each trains into a private temporary directory and the
    first to rename it into place wins.
    """
    start = time.perf_counter()
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    entry = root / "models" / f"digits-{cache_key(hp, seed, opset)}"
    report, cached, where = _cache.cached_build(entry, lambda tmp: _train_into(tmp, hp, seed, opset, log), (MODEL_FILE, TEST_FILE, REPORT_FILE),
                                                out_dir, force)
    report.update(cached=cached, seconds=round(time.perf_counter() - start, 3),
                  cache_path=str(entry), model_path=str(where / MODEL_FILE), test_path=str(where / TEST_FILE))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeldeploy.models.digits", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="directory to write model.onnx, digits_test.npz, report.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=Hyperparameters.epochs)
    parser.add_argument("--force", action="store_true", help="retrain even if a cached build exists")
    parser.add_argument("--cache", type=Path, help="cache root (default $MODELDEPLOY_CACHE or ~/.cache/modeldeploy)")
    args = parser.parse_args(argv)
    report = build(args.out, seed=args.seed, hp=Hyperparameters(epochs=args.epochs), cache_dir=args.cache,
                   force=args.force)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
