"""One minibatch training loop for the numpy networks the compression Jobs train (fine-tuning a pruned
network, distilling a student).

Why this exists: :func:`modeldeploy.models.digits.train` starts from freshly initialised weights and owns
its loss; pruning must continue from trained weights and distillation needs a different loss. Rather than
widen that function, the loop here takes the parameters and a ``loss_and_grads(params, idx)`` callback,
and reuses the same pieces (:class:`modeldeploy.models._nn.Adam`, cosine learning-rate decay to 0, L2 decay
on ``*.weight`` only) so every network in the project is trained the same way.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from modeldeploy.models import _nn

LossAndGrads = Callable[[dict, np.ndarray], "tuple[float, dict[str, np.ndarray]]"]


def fit(params: dict[str, np.ndarray], loss_and_grads: LossAndGrads, n: int, *, epochs: int, seed: int,
        lr: float = 3e-3, batch_size: int = 32, weight_decay: float = 1e-4,
        evaluate: Callable[[dict], dict] | None = None, log=None, tag: str = "train") -> tuple[dict, list]:
    """Minibatch Adam over ``n`` examples for ``epochs`` epochs; returns ``(new params, history)``.

    ``params`` is not modified (a copy is trained). ``loss_and_grads(params, idx)`` returns the mean loss of
    the examples ``idx`` and its gradient for every parameter. Shuffling comes from
    ``np.random.default_rng([seed, 1])``. After each epoch ``evaluate(params)`` (if given) adds its keys to
    the history row, and one line per epoch goes to ``log`` (see :func:`emit`) so a Job's log shows progress.
    """
    params = {k: np.array(v, copy=True) for k, v in params.items()}
    rng = np.random.default_rng([seed, 1])
    opt = _nn.Adam(params, lr)
    steps_per_epoch = -(-n // batch_size)
    total = max(1, epochs * steps_per_epoch)
    history, start = [], time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(n)
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            loss, grads = loss_and_grads(params, idx)
            for k in grads:
                if k.endswith(".weight"):
                    grads[k] = grads[k] + weight_decay * params[k]
            step = epoch * steps_per_epoch + b
            opt.step(params, grads, lr=lr * 0.5 * (1 + np.cos(np.pi * step / total)))
            loss_sum += float(loss) * len(idx)
        row = {"epoch": epoch + 1, "loss": loss_sum / n}
        if evaluate is not None:
            row.update(evaluate(params))
        row["seconds"] = round(time.perf_counter() - start, 3)
        history.append(row)
        extra = " ".join(f"{k} {v:.2%}" if isinstance(v, float) and "accuracy" in k else f"{k} {v}"
                         for k, v in row.items() if k not in ("epoch", "loss", "seconds"))
        emit(log, f"{tag}: epoch {epoch + 1:3d}/{epochs} loss {row['loss']:.4f} {extra} {row['seconds']:.1f}s")
    return params, history


def emit(log, line: str) -> None:
    """Write one progress line to ``log``: a file-like object (``sys.stderr``), a ``line -> None`` callable
    (the compress command's ``ctx.log``), or ``None`` (quiet)."""
    if log is None:
        return
    if hasattr(log, "write"):
        print(line, file=log, flush=True)
    else:
        log(line)


SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def as_split(data) -> tuple:
    """``(x_train, y_train, x_test, y_test)`` from a 4-tuple (what ``digits.load_split`` returns), an object
    with those attributes (:class:`modeldeploy.compress.datasets.Dataset`), or a mapping with those keys (an
    ``np.load``-ed ``.npz``). Missing parts are ``None``: each caller says what it needs."""
    if isinstance(data, (tuple, list)):
        if len(data) != 4:
            raise ValueError(f"data: expected (x_train, y_train, x_test, y_test), got a sequence of {len(data)}")
        return tuple(data)
    if not hasattr(data, "keys"):
        return tuple(getattr(data, k, None) for k in SPLIT_KEYS)
    return tuple(np.asarray(data[k]) if k in data else None for k in SPLIT_KEYS)
