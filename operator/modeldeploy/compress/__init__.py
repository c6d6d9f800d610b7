"""The code that runs inside compression Jobs: ``modeldeploy compress`` builds, measures and gates variants.

Modules:

- ``datasets``: held-out / calibration / training data by URI (``builtin://digits``, ``file://…npz``, and
  every scheme ``modeldeploy fetch`` reads);
- ``quantize``: FP16, INT8 dynamic, INT8 static QDQ (onnx, onnxruntime.quantization);
- ``prune`` / ``distill``: structured pruning and distillation (written separately; plugged in below);
- ``evaluate``: accuracy or cosine, file size, onnxruntime CPU latency of every variant;
- ``report`` and ``command``: the report.json and the CLI.

The decision (gate, selection, recipe parsing, content hash) is pure and lives in
:mod:`modeldeploy.policy.compression`.

**Plugging in a technique.** ``TECHNIQUES`` maps a technique name (what recipes write, and what
``select`` may name) to ``"module:function"``, imported only when a recipe uses it. The function is::

    def run(src: Path, dst: Path, options: Mapping[str, Any], ctx: Context) -> dict

It reads the ONNX model at ``src`` (the original, or the output of the step named in ``from``), writes the
compressed ONNX model to ``dst``, and returns a small JSON-able dict of what it did (it lands in the
report under the variant's ``details``). ``options`` are the recipe's keys for the step (for
``spec.compression.pruning``: ``norm``, ``amount``, ``fineTuneEpochs``); unknown keys should raise
``ValueError`` naming them. ``ctx.dataset`` has the training, calibration and held-out splits,
``ctx.log(line)`` prints a progress line (per epoch, say), ``ctx.seed`` seeds anything random and
``ctx.work_dir`` is a scratch folder for the step. An exception fails that variant only: the report
records it and it can never be served; the other variants are still measured.

This ``__init__`` imports neither numpy nor onnx, so listing techniques costs nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from modeldeploy.compress.datasets import Dataset

#: technique name -> "module:function" (see the module docstring for the contract).
TECHNIQUES: dict[str, str] = {
    "fp16": "modeldeploy.compress.quantize:run_fp16",
    "int8-dynamic": "modeldeploy.compress.quantize:run_int8_dynamic",
    "int8-static": "modeldeploy.compress.quantize:run_int8_static",
    "prune": "modeldeploy.compress.prune:run",
    "distill": "modeldeploy.compress.distill:run",
}


class CompressError(Exception):
    """The compression cannot run as asked (bad recipe, unreadable model or dataset). One line, no secrets."""


@dataclass
class Context:
    """What a technique may use besides its input model and options."""

    dataset: "Dataset"
    work_dir: Path
    seed: int = 0
    log: Callable[[str], None] = print


Technique = Callable[[Path, Path, Mapping[str, Any], Context], dict]


def technique(name: str) -> Technique:
    """The function registered for ``name``; CompressError when unknown or its module is not there."""
    try:
        target = TECHNIQUES[name]
    except KeyError:
        raise CompressError(f"unknown technique {name!r} (known: {', '.join(TECHNIQUES)})") from None
    module_name, _, func = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise CompressError(f"technique {name} is not available in this build ({module_name} is missing)") from None
        raise
    return getattr(module, func)
