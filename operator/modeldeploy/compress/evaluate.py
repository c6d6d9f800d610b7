"""Measuring a model variant: accuracy or cosine, size, and onnxruntime CPU latency.

Why this exists: the gate and the selection are only as good as the numbers they read, so every variant,
FP32 included, is measured the same way in the same process:

- **quality** on the held-out split: top-1 accuracy of the argmax of the evaluated output
  (classification), or the mean cosine similarity of each sample's output to the reference (embeddings:
  the dataset's ``reference`` array, else the FP32 model's outputs);
- **size**: the file's bytes, and the bytes of its initializers (weights), which is what quantization
  shrinks; on a model as small as the digits CNN (40 KB) the graph itself is a third of an INT8 file;
- **latency**: onnxruntime's CPU provider, ``intra_op_num_threads`` fixed (default 1) and
  ``inter_op_num_threads`` 1, sequential execution, all graph optimizations; per batch size, ``warmup``
  untimed runs then the **median** of ``runs`` timed ``session.run`` calls on the first rows of the
  held-out split (repeated when it has fewer rows than the batch). One thread keeps the numbers
  comparable between variants on a shared machine; it is not the serving configuration.

Inputs: a plain array feeds a single-input model; a structured array (a dataset with one array per model
input, :func:`modeldeploy.compress.datasets.stack_inputs`) feeds each field to the input of the same name,
and its fields must be exactly the model's inputs.

Latency on a GPU (the issue's "GPU when present") is not measured yet.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from modeldeploy.compress import CompressError
from modeldeploy.compress.datasets import Dataset
from modeldeploy.policy.compression import TASK_CLASSIFICATION

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
                "tensor(int8)": np.int8}


@dataclass(frozen=True)
class Settings:
    threads: int = 1
    runs: int = 50
    warmup: int = 10
    batch_sizes: Sequence[int] = (1, 32)
    output: str | None = None  #: the output evaluated; None = the model's first output
    eval_batch: int = 256  #: rows per session.run when computing accuracy/cosine


def session(path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: QDQ models warn about every unfused node
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise CompressError(f"onnxruntime cannot load {path}: {str(err).splitlines()[0][:300]}") from None


def _cast(x: np.ndarray, onnx_type: str) -> np.ndarray:
    want = _NUMPY_TYPES.get(onnx_type)
    return np.ascontiguousarray(x.astype(want) if want is not None and x.dtype != want else x)


def _feed(sess, x: np.ndarray) -> dict[str, np.ndarray]:
    """The ``session.run`` feed for rows ``x``: a plain array for a single-input model, or a structured array
    whose fields are named after the model's inputs (one array per input)."""
    inputs = sess.get_inputs()
    names = [i.name for i in inputs]
    if x.dtype.names is None:
        if len(inputs) != 1:
            raise CompressError(f"evaluation feeds single-input models from a plain x_test; this one has inputs "
                                f"{names}: give one array per input (x_test__<input name>, docs/compression.md)")
        return {inputs[0].name: _cast(x, inputs[0].type)}
    if set(x.dtype.names) != set(names):
        raise CompressError(f"the dataset has arrays for inputs {sorted(x.dtype.names)} but the model's inputs "
                            f"are {sorted(names)}")
    return {i.name: _cast(x[i.name], i.type) for i in inputs}


def _output_name(sess, output: str | None) -> str:
    names = [o.name for o in sess.get_outputs()]
    if output is None:
        return names[0]
    if output not in names:
        raise CompressError(f"the model has no output {output!r} (outputs: {', '.join(names)})")
    return output


def predict(sess, x: np.ndarray, output: str | None = None, batch: int = 256) -> np.ndarray:
    """The chosen output for all rows of ``x``, as float32, computed ``batch`` rows at a time."""
    feed = _feed(sess, x)
    out = _output_name(sess, output)
    parts = [sess.run([out], {k: v[i:i + batch] for k, v in feed.items()})[0] for i in range(0, len(x), batch)]
    return np.concatenate(parts).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity of two (N, …) arrays (rows flattened)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-300), 0.0)


def measure_latency(sess, x: np.ndarray, batch_sizes: Sequence[int], runs: int, warmup: int,
                    clock=time.perf_counter) -> dict[str, float]:
    """Median milliseconds of ``session.run`` per batch size (keys are strings, as in JSON)."""
    whole = _feed(sess, x)
    result = {}
    for b in batch_sizes:
        rows = np.arange(b) % len(x)
        feed = {k: np.ascontiguousarray(np.take(v, rows, axis=0)) for k, v in whole.items()}
        for _ in range(warmup):
            sess.run(None, feed)
        times = []
        for _ in range(runs):
            t0 = clock()
            sess.run(None, feed)
            times.append(clock() - t0)
        result[str(b)] = round(float(np.median(times)) * 1000.0, 5)
    return result


def weight_bytes(path) -> int:
    """Bytes of the model's initializers (weights, biases, quantization scales), as stored."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return int(sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer))


def evaluate(path, dataset: Dataset, settings: Settings = Settings(),
             reference: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Measure the model at ``path``; returns ``(record, outputs on x_test)``.

    ``reference`` (embeddings): the outputs cosine is measured against; defaults to ``dataset.reference``.
    Without either, no cosine is computed (that is the FP32 model's own measurement, whose outputs become
    the reference for the variants).
    """
    start = time.perf_counter()
    path = Path(path)
    sess = session(path, settings.threads)
    out = predict(sess, dataset.x_test, settings.output, settings.eval_batch)
    record: dict = {"file": str(path), "size_bytes": path.stat().st_size, "weight_bytes": weight_bytes(path),
                    "output": _output_name(sess, settings.output)}
    if dataset.task == TASK_CLASSIFICATION:
        if out.ndim != 2:
            raise CompressError(f"classification needs a (batch, classes) output; {record['output']} has shape "
                                f"{list(out.shape)}")
        correct = int((out.argmax(axis=1) == dataset.y_test).sum())
        record.update(accuracy=correct / len(out), correct=correct, samples=len(out))
    ref = reference if reference is not None else dataset.reference
    if ref is not None:
        if ref.shape[0] != out.shape[0] or ref[0].size != out[0].size:
            raise CompressError(f"reference outputs {list(ref.shape)} do not match {record['output']} "
                                f"{list(out.shape)}")
        cos = cosine(out, ref)
        record.update(cosine=round(float(cos.mean()), 6), cosine_min=round(float(cos.min()), 6))
    record["latency_ms"] = measure_latency(sess, dataset.x_test, settings.batch_sizes, settings.runs,
                                           settings.warmup)
    record["eval_seconds"] = round(time.perf_counter() - start, 3)
    return record, out


def add_relative(record: dict, baseline: dict) -> dict:
    """Add ``size_ratio``/``weight_ratio`` (× smaller than FP32) and ``speedup`` per batch (× faster)."""
    if record.get("size_bytes"):
        record["size_ratio"] = round(baseline["size_bytes"] / record["size_bytes"], 3)
    if record.get("weight_bytes"):
        record["weight_ratio"] = round(baseline["weight_bytes"] / record["weight_bytes"], 3)
    lat, base = record.get("latency_ms") or {}, baseline.get("latency_ms") or {}
    record["speedup"] = {b: round(base[b] / ms, 3) for b, ms in lat.items() if b in base and ms > 0}
    return record


def environment(settings: Settings) -> dict:
    """Where the latencies were measured, for the report."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"provider": "CPUExecutionProvider", "intra_op_num_threads": settings.threads,
            "inter_op_num_threads": 1, "runs": settings.runs, "warmup": settings.warmup,
            "batch_sizes": list(settings.batch_sizes), "statistic": "median", "cpu": cpu,
            "cpu_count": os.cpu_count(), "onnxruntime": ort.__version__}
