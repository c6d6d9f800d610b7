"""Structured pruning that removes channels physically, then fine-tunes the smaller network.

Why this exists: masking weights to zero leaves the ONNX file and every matrix product the same size, so
it buys nothing at serving time. Here the lowest-norm output channels of each convolution (and hidden
units of a dense layer) are cut out of the weight tensors, and every consumer is sliced to match: the next
convolution loses the same input channels, and the dense layer after ``Flatten`` loses the columns of the
removed channels. ``Flatten`` of an NCHW tensor orders features as C×H×W, so the columns of channel ``c``
are the contiguous block ``c*H*W .. (c+1)*H*W - 1``; the dense weight is reshaped to (out, C, H*W), sliced
on axis 1, and reshaped back. The result is an ordinary, smaller network that exports with the same code
(:func:`modeldeploy.models.digits.export_onnx` takes any channel counts) and quantizes like the original.

Method (Li et al., "Pruning Filters for Efficient ConvNets", 2017): each output channel is ranked by the L1
or L2 norm of its filter weights (bias not counted); ``floor(amount × channels)`` of the lowest are removed
per layer, at least one channel always kept, ties broken towards the lower index, the kept channels in
their original order. Layers are planned front to back, each on weights already sliced by the layer before
("greedy": a filter's norm counts only inputs that survive). The output layer is never pruned. Accuracy
lost by the cut is recovered by fine-tuning with the project's numpy trainer (Adam, cosine decay).

Supported networks (recognised by parameter names): the digits CNN (``conv1``, ``conv2``, ``fc``) and the
MLP students of :mod:`modeldeploy.compress.students` (``fc1``, ``fc2``).

What the compress command calls: ``run(src, dst, options, ctx)`` (the technique contract of
:mod:`modeldeploy.compress`; ``options`` are ``spec.compression.pruning``'s ``amount``, ``norm``,
``fineTuneEpochs``), which is::

    from modeldeploy.compress import prune
    report = prune.prune_onnx_digits("model.onnx", "out/model.onnx", data,      # data: see below
                                     amount=0.5, norm="l2", epochs=10, seed=0, log=sys.stderr)

``data`` is ``(x_train, y_train, x_test, y_test)`` (as ``digits.load_split`` returns), a
:class:`~modeldeploy.compress.datasets.Dataset`, or a mapping with those keys (an ``np.load``-ed ``.npz``).
Training images labelled ``-1`` are skipped; the test half is optional (only for the report's accuracies).
``log`` is a file or a ``line -> None`` callable (one line per epoch).
The report (a JSON-able dict) has ``channels`` (per layer ``[before, after]``), ``params_before/after``,
``size_bytes_before/after``, ``size_ratio``, ``accuracy_before``, ``accuracy_pruned`` (no fine-tune),
``accuracy_after`` (numpy, held-out; ``None`` without a test split), ``history`` and ``model_path``.
Lower level, pure and without training: ``prune(params, amount, norm)``; with fine-tuning:
``prune_and_finetune(params, data, amount, norm, epochs, seed)``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from modeldeploy.compress import _train, students
from modeldeploy.models import _nn, digits

NORMS = ("l1", "l2")

#: Layer chains of the supported networks, input to output. Every layer but the last is prunable; layer
#: ``i+1`` consumes layer ``i``'s channels (a conv's input channels, or a dense layer's input features).
CHAINS = (("conv1", "conv2", "fc"), ("fc1", "fc2"))


def _chain(params: dict[str, np.ndarray]) -> tuple[str, ...]:
    keys = set(params)
    for chain in CHAINS:
        if keys == {f"{layer}.{p}" for layer in chain for p in ("weight", "bias")}:
            return chain
    raise ValueError(f"prune: unsupported network with parameters {', '.join(sorted(keys))}; supported: the "
                     "digits CNN (conv1, conv2, fc) and MLP students (fc1, fc2)")


def channel_norms(weight: np.ndarray, norm: str = "l1") -> np.ndarray:
    """Per output channel (axis 0) L1 or L2 norm of a conv filter (F, C, kh, kw) or dense row (F, in).

    >>> channel_norms(np.array([[3.0, -4.0], [1.0, 0.0]]), "l2")
    array([5., 1.])
    """
    flat = np.abs(weight.reshape(weight.shape[0], -1).astype(np.float64))
    if norm == "l1":
        return flat.sum(axis=1)
    if norm == "l2":
        return np.sqrt((flat * flat).sum(axis=1))
    raise ValueError(f"prune: norm must be one of {', '.join(NORMS)}, got {norm!r}")


def kept_channels(scores: np.ndarray, amount: float) -> np.ndarray:
    """Indices (ascending) of the channels that survive removing ``floor(amount × n)`` lowest scores.

    >>> kept_channels(np.array([0.5, 0.1, 0.9, 0.3]), 0.5)
    array([0, 2])
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"prune: amount must be in [0, 1), got {amount}")
    n = len(scores)
    remove = min(n - 1, math.floor(amount * n + 1e-9))
    order = np.argsort(scores, kind="stable")  # lowest first; equal scores: lower index removed first
    return np.sort(order[remove:])


def _slice_consumer(weight: np.ndarray, keep: np.ndarray, channels: int) -> np.ndarray:
    """Keep input channels ``keep`` of a consumer of a layer with ``channels`` outputs."""
    if weight.ndim == 4:                       # next conv: (F, C, kh, kw)
        return weight[:, keep]
    per_channel, rest = divmod(weight.shape[1], channels)  # dense after Flatten of (C, H, W): C×H×W order
    if rest:
        raise ValueError(f"prune: {weight.shape[1]} input features are not a multiple of {channels} channels")
    return weight.reshape(weight.shape[0], channels, per_channel)[:, keep].reshape(weight.shape[0], -1)


def plan(params: dict[str, np.ndarray], amount: float, norm: str = "l2") -> dict[str, np.ndarray]:
    """Which output channels of each prunable layer survive: ``{layer: kept indices}`` (pure)."""
    channel_norms(np.zeros((1, 1)), norm)  # validate the norm even for a no-op amount
    chain = _chain(params)
    keep, weights = {}, {k: v for k, v in params.items()}
    for layer, consumer in zip(chain, chain[1:]):
        w = weights[f"{layer}.weight"]
        keep[layer] = kept_channels(channel_norms(w, norm), amount)
        weights[f"{consumer}.weight"] = _slice_consumer(weights[f"{consumer}.weight"], keep[layer], w.shape[0])
    return keep


def apply(params: dict[str, np.ndarray], keep: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A new parameter dict with only the ``keep`` channels of each layer and its consumer sliced to match."""
    chain = _chain(params)
    out = {k: np.array(v, copy=True) for k, v in params.items()}
    for layer, consumer in zip(chain, chain[1:]):
        if layer not in keep:
            continue
        idx = np.asarray(keep[layer])
        channels = out[f"{layer}.weight"].shape[0]
        out[f"{layer}.weight"] = np.ascontiguousarray(out[f"{layer}.weight"][idx])
        out[f"{layer}.bias"] = np.ascontiguousarray(out[f"{layer}.bias"][idx])
        out[f"{consumer}.weight"] = np.ascontiguousarray(_slice_consumer(out[f"{consumer}.weight"], idx, channels))
    return out


def prune(params: dict[str, np.ndarray], amount: float, norm: str = "l2") -> dict[str, np.ndarray]:
    """Physically remove the lowest-``norm`` ``amount`` fraction of channels per layer (pure, no training).

    With the digits CNN (16, 32 channels) and ``amount=0.5``: conv1 (8,1,3,3), conv2 (16,8,3,3),
    fc (10, 16·4·4 = 256) — 3,818 parameters instead of 9,930.
    """
    return apply(params, plan(params, amount, norm))


def fine_tune(params: dict[str, np.ndarray], data, epochs: int, seed: int = 0, *, lr: float = 3e-3,
              batch_size: int = 32, weight_decay: float = 1e-4, log=None) -> tuple[dict, list]:
    """Train ``params`` further on the training half of ``data`` (softmax cross-entropy); ``(params, history)``."""
    x_train, y_train, x_test, y_test = _train.as_split(data)
    if x_train is None or y_train is None:
        raise ValueError("prune: fine-tuning needs training data with labels (x_train, y_train)")
    labelled = np.flatnonzero(np.asarray(y_train) >= 0)  # -1 marks an unlabelled image (see distill)
    x_train, y_train = x_train[labelled], y_train[labelled]
    forward, backward, _ = students.network_of(params)

    def loss_and_grads(p, idx):
        logits, caches = forward(p, x_train[idx], train=True)
        loss, dlogits = _nn.softmax_cross_entropy(logits, y_train[idx])
        return loss, backward(dlogits, caches)

    evaluate = None
    if x_test is not None and y_test is not None:
        def evaluate(p):
            return {"held-out accuracy": float((forward(p, x_test).argmax(axis=1) == y_test).mean())}
    return _train.fit(params, loss_and_grads, len(x_train), epochs=epochs, seed=seed, lr=lr,
                      batch_size=batch_size, weight_decay=weight_decay, evaluate=evaluate, log=log,
                      tag="prune: fine-tune")


def prune_and_finetune(params: dict[str, np.ndarray], data, amount: float, norm: str = "l2", epochs: int = 10,
                       seed: int = 0, *, lr: float = 3e-3, log=None) -> dict[str, np.ndarray]:
    """:func:`prune`, then :func:`fine_tune` for ``epochs`` epochs (0: no fine-tuning)."""
    return fine_tune(prune(params, amount, norm), data, epochs, seed, lr=lr, log=log)[0]


def _accuracy(params, x, y):
    if x is None or y is None:
        return None
    forward = students.network_of(params)[0]
    return float((forward(params, x).argmax(axis=1) == y).mean())


def _load(model) -> tuple[dict[str, np.ndarray], Path | None]:
    if isinstance(model, dict):
        return model, None
    path = Path(model)
    if path.is_dir():
        path = path / digits.MODEL_FILE
    return digits.load_params(path), path


def prune_onnx_digits(model, out, data, *, amount: float = 0.5, norm: str = "l2", epochs: int = 10,
                      seed: int = 0, lr: float = 3e-3, log=sys.stderr) -> dict:
    """Prune a digits-style ONNX model (or parameter dict), fine-tune it, write ``out``; returns the report.

    ``model``: a ``model.onnx`` written by :func:`digits.export_onnx` or a student export, a directory
    holding one, or a parameter dict. ``out``: the ONNX file to write (parents created). See the module
    docstring for ``data`` and the report's keys.
    """
    start = time.perf_counter()
    params, source = _load(model)
    _, _, export = students.network_of(params)
    _, _, x_test, y_test = _train.as_split(data)
    keep = plan(params, amount, norm)
    pruned = apply(params, keep)
    chain = _chain(params)
    channels = {layer: [int(params[f"{layer}.weight"].shape[0]), len(keep[layer])] for layer in chain[:-1]}
    _train.emit(log, f"prune: {norm} amount {amount}: "
                     + ", ".join(f"{k} {a}->{b}" for k, (a, b) in channels.items()))
    acc_before, acc_pruned = _accuracy(params, x_test, y_test), _accuracy(pruned, x_test, y_test)
    tuned, history = fine_tune(pruned, data, epochs, seed, lr=lr, log=log) if epochs else (pruned, [])
    acc_after = _accuracy(tuned, x_test, y_test)
    out = export(tuned, out, doc=f"digits model pruned by modeldeploy: {norm} amount {amount}, "
                                 f"fine-tuned {epochs} epochs (seed {seed})")
    if source is not None:
        size_before = source.stat().st_size
    else:  # measure what the unpruned parameters would export to
        size_before = export(params, Path(out).with_suffix(".unpruned.onnx")).stat().st_size
        Path(out).with_suffix(".unpruned.onnx").unlink()
    size_after = Path(out).stat().st_size
    report = {
        "technique": "prune", "amount": amount, "norm": norm, "epochs": epochs, "seed": seed,
        "channels": channels,
        "params_before": int(sum(v.size for v in params.values())),
        "params_after": int(sum(v.size for v in tuned.values())),
        "size_bytes_before": size_before, "size_bytes_after": size_after,
        "size_ratio": round(size_before / size_after, 3),
        "accuracy_before": acc_before, "accuracy_pruned": acc_pruned, "accuracy_after": acc_after,
        "history": history, "seconds": round(time.perf_counter() - start, 3), "model_path": str(out),
    }
    acc = "" if acc_after is None else f", held-out {acc_before:.2%} -> {acc_after:.2%}"
    _train.emit(log, f"prune: wrote {out}: {size_before} -> {size_after} bytes ({report['size_ratio']}x){acc}")
    return report


#: Options of ``spec.compression.pruning`` that :func:`run` accepts, with their defaults.
OPTIONS = {"amount": 0.5, "norm": "l2", "fineTuneEpochs": 10}


def run(src: Path, dst: Path, options, ctx) -> dict:
    """The ``prune`` technique of the compress command (contract: :mod:`modeldeploy.compress`).

    Prunes the model at ``src`` by ``options`` (``amount``, ``norm``, ``fineTuneEpochs``; defaults in
    ``OPTIONS``), fine-tunes on ``ctx.dataset``'s training split with ``ctx.seed``, writes ``dst`` and returns
    the report without the per-epoch history (``final_loss`` instead). ValueError on unknown options, a
    model that is not digits-shaped, or fine-tuning without training data.
    """
    extra = sorted(set(options) - set(OPTIONS))
    if extra:
        raise ValueError(f"prune: unknown option(s) {', '.join(extra)} (known: {', '.join(OPTIONS)})")
    opts = {**OPTIONS, **options}
    report = prune_onnx_digits(src, dst, ctx.dataset, amount=float(opts["amount"]), norm=opts["norm"],
                               epochs=int(opts["fineTuneEpochs"]), seed=ctx.seed, log=ctx.log)
    history = report.pop("history")
    report["final_loss"] = history[-1]["loss"] if history else None
    report.pop("model_path")
    return report


def main(argv=None) -> int:
    """``python -m modeldeploy.compress.prune``: prune the digits model (built if needed) on its own split
    and print the report (without the per-epoch history) as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m modeldeploy.compress.prune", description=main.__doc__)
    parser.add_argument("--model", type=Path, help="model.onnx or its directory (default: digits.build())")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--amount", type=float, default=0.5)
    parser.add_argument("--norm", choices=NORMS, default="l2")
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = args.model or digits.build(log=None)["model_path"]
    report = prune_onnx_digits(model, args.out, digits.load_split(0), amount=args.amount, norm=args.norm,
                               epochs=args.epochs, seed=args.seed)
    report.pop("history")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
