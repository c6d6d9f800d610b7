"""The student catalogue for distillation: small numpy networks with the digits model's input and outputs.

Why this exists: ``spec.compression.distillation.student`` names an architecture, and the Job must be able
to initialise, train and export it without torch. Every student takes the teacher's input (``input`` FP32
``[batch,1,8,8]``) and produces the same outputs (``probs`` and ``logits``, FP32 ``[batch,10]``), so the
Triton model configuration of the served model does not change when a student replaces the teacher. The
trade-off: the catalogue is closed (a few MLPs and a narrower copy of the digits CNN); a user-supplied
architecture would need its own forward/backward and is not supported yet.

Catalogue (``CATALOGUE``; parameters for 10 classes and 8×8 inputs)::

    mlp-16     Flatten -> Gemm 64->16  -> Relu -> Gemm 16->10      1,210 parameters
    mlp-32     Flatten -> Gemm 64->32  -> Relu -> Gemm 32->10      2,410
    mlp-64     Flatten -> Gemm 64->64  -> Relu -> Gemm 64->10      4,810
    cnn-8-16   the digits CNN with 8 and 16 channels              3,818

MLP parameter names are ``fc1.weight`` (hidden, 64), ``fc1.bias``, ``fc2.weight`` (10, hidden),
``fc2.bias``; the forward and backward passes below work for any hidden width, so a student whose hidden
units were pruned (:mod:`modeldeploy.compress.prune`) still trains and exports.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from modeldeploy.models import _nn, digits

INPUTS = 64  #: 1×8×8 pixels, flattened


def mlp_init(hidden: int, seed: int = 0, classes: int = digits.CLASSES) -> dict[str, np.ndarray]:
    """He-normal weights, zero biases, float32."""
    rng = np.random.default_rng(seed)
    return {
        "fc1.weight": (rng.standard_normal((hidden, INPUTS)) * np.sqrt(2.0 / INPUTS)).astype(np.float32),
        "fc1.bias": np.zeros(hidden, np.float32),
        "fc2.weight": (rng.standard_normal((classes, hidden)) * np.sqrt(2.0 / hidden)).astype(np.float32),
        "fc2.bias": np.zeros(classes, np.float32),
    }


def mlp_forward(params: dict[str, np.ndarray], x: np.ndarray, *, train: bool = False):
    """Logits for a batch (N, 1, 8, 8); with ``train=True`` also the caches :func:`mlp_backward` needs."""
    h, c1 = _nn.dense_forward(x.reshape(x.shape[0], -1), params["fc1.weight"], params["fc1.bias"])
    h, r1 = _nn.relu_forward(h)
    logits, c2 = _nn.dense_forward(h, params["fc2.weight"], params["fc2.bias"])
    return (logits, (c1, r1, c2)) if train else logits


def mlp_backward(dlogits: np.ndarray, caches) -> dict[str, np.ndarray]:
    c1, r1, c2 = caches
    g = {}
    d, g["fc2.weight"], g["fc2.bias"] = _nn.dense_backward(dlogits, c2)
    d = _nn.relu_backward(d, r1)
    _, g["fc1.weight"], g["fc1.bias"] = _nn.dense_backward(d, c1)
    return g


def mlp_export_onnx(params: dict[str, np.ndarray], path, opset: int = 17, *, doc: str = "") -> Path:
    """Write an MLP student as ONNX with the digits model's signature (see :func:`digits.export_onnx`)."""
    from onnx import helper

    classes = params["fc2.weight"].shape[0]
    nodes = [
        helper.make_node("Flatten", [digits.INPUT], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["fc1"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1"], ["relu1"], name="relu1"),
        helper.make_node("Gemm", ["relu1", "fc2.weight", "fc2.bias"], [digits.LOGITS], name="fc2", transB=1),
        helper.make_node("Softmax", [digits.LOGITS], [digits.PROBS], name="softmax", axis=1),
    ]
    weights = {k: params[k] for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")}
    return digits.save_graph(nodes, weights, path, name="digits-student", classes=classes, opset=opset, doc=doc)


@dataclasses.dataclass(frozen=True)
class Student:
    """One catalogue entry: how to initialise, run, differentiate and export the architecture."""
    name: str
    description: str
    init: Callable[[int], dict]                  #: seed -> float32 parameters
    forward: Callable = dataclasses.field(repr=False)   #: (params, x, *, train=False) -> logits [, caches]
    backward: Callable = dataclasses.field(repr=False)  #: (dlogits, caches) -> gradients
    export: Callable = dataclasses.field(repr=False)    #: (params, path, opset=17, *, doc="") -> Path

    def params_count(self) -> int:
        return int(sum(v.size for v in self.init(0).values()))


def _mlp(hidden: int) -> Student:
    return Student(f"mlp-{hidden}", f"Flatten -> Gemm 64->{hidden} -> Relu -> Gemm {hidden}->10",
                   lambda seed: mlp_init(hidden, seed), mlp_forward, mlp_backward, mlp_export_onnx)


def _cnn(conv1: int, conv2: int) -> Student:
    hp = digits.Hyperparameters(conv1=conv1, conv2=conv2)
    return Student(f"cnn-{conv1}-{conv2}", f"the digits CNN with {conv1} and {conv2} channels",
                   lambda seed: digits.init_params(hp, seed), digits.forward, digits.backward, digits.export_onnx)


CATALOGUE: dict[str, Student] = {s.name: s for s in (_mlp(16), _mlp(32), _mlp(64), _cnn(8, 16))}


def get(name: str) -> Student:
    """The catalogue entry ``name``; a ``KeyError`` that lists the known names otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown student {name!r}: the catalogue has {', '.join(CATALOGUE)}") from None


def network_of(params: dict[str, np.ndarray]) -> tuple[Callable, Callable, Callable]:
    """``(forward, backward, export)`` for parameters of any catalogue architecture or of the digits CNN,
    recognised by their names (widths may differ from the catalogue's, e.g. after pruning)."""
    keys = set(params)
    if keys == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}:
        return mlp_forward, mlp_backward, mlp_export_onnx
    if keys == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"}:
        return digits.forward, digits.backward, digits.export_onnx
    raise ValueError(f"unrecognised network: parameters {', '.join(sorted(keys))} are neither the digits CNN "
                     "(conv1, conv2, fc) nor an MLP student (fc1, fc2)")
