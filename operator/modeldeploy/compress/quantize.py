"""Quantization of ONNX models: FP16, INT8 dynamic, INT8 static QDQ (onnxruntime.quantization).

Why these choices (measured on the digits CNN, 2 AMD EPYC cores, onnxruntime 1.32; docs/compression.md):

- **FP16** uses ``onnxruntime.transformers.float16.convert_float_to_float16`` with ``keep_io_types=True``:
  onnx itself has no graph converter (``onnx.numpy_helper`` converts arrays, not graphs), and the
  ``onnxconverter-common`` original of this function is one more dependency for the same code, while
  onnxruntime is already in the Job image. ``keep_io_types`` keeps FP32 inputs and outputs (casts are
  inserted inside), so clients and the Triton ``config.pbtxt`` do not change. Halves the weights; on a CPU
  it is not faster (onnxruntime's CPU provider has few FP16 kernels); it is meant for GPUs.
- **INT8 dynamic** quantizes weights ahead of time and activations at run time. For a graph with
  convolutions the default op list is ``MatMul``/``Gemm`` only: dynamic ``ConvInteger`` ran 4–8× slower
  than FP32 on this hardware (onnxruntime#12854; 7× at batch 32 on digits). Without convolutions
  (transformers) onnxruntime's own default op list is used (MatMul, Attention, …).
  ``DefaultTensorType=FLOAT`` is passed so tensors whose type inference gave up (fused attention graphs)
  still quantize.
- **INT8 static** inserts QuantizeLinear/DequantizeLinear pairs (QDQ, the format onnxruntime and
  TensorRT both fuse) with activation ranges from calibration data; per-channel weight scales and the
  calibration method (MinMax, Entropy, Percentile) are options. Signed INT8 activations and weights
  (S8S8), onnxruntime's recommended default for QDQ; ``activationType: QUInt8`` is accepted too.

``quant_pre_process`` (onnx shape inference and onnxruntime's basic graph optimizations) runs before both
INT8 modes, as onnxruntime recommends; its symbolic shape inference needs sympy (transformers need it;
convolutional nets do not) and is skipped when sympy is not installed.

Each function takes an input path and an output path and returns a small dict of what it did; the
``run_*`` wrappers adapt them to the technique contract of :mod:`modeldeploy.compress` (recipe options in
camelCase, as in ``spec.compression.quantization``).
"""

from __future__ import annotations

import collections
import importlib.util
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from modeldeploy.compress import CompressError, Context

#: Recipe options each technique understands (besides ``name``/``mode``/``technique``/``from``).
OPTIONS: Mapping[str, tuple[str, ...]] = {
    "fp16": ("keepIoTypes", "opBlockList"),
    "int8-dynamic": ("opTypes", "perChannel", "reduceRange", "weightType", "preprocess"),
    "int8-static": ("perChannel", "calibrationMethod", "calibrationSamples", "calibrationBatchSize", "opTypes",
                    "activationType", "weightType", "reduceRange", "preprocess"),
}
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")
QUANT_TYPES = ("QInt8", "QUInt8")
CNN_OPS = frozenset({"Conv", "ConvTranspose"})
#: Ops dynamic quantization is limited to in a convolutional graph (onnxruntime#12854).
CNN_DYNAMIC_OPS = ("MatMul", "Gemm")


def op_histogram(path) -> dict[str, int]:
    """How many nodes of each op type the model at ``path`` has (sorted by op type)."""
    import onnx

    counts = collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return dict(sorted(counts.items()))


def input_names(model) -> list[str]:
    """Graph inputs that are not initializers (what a caller feeds)."""
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def _pre_path(dst: Path) -> Path:
    return dst.with_name(dst.stem + ".preprocessed.onnx")


def preprocess(src, dst) -> dict:
    """``quant_pre_process``: shape inference and basic optimizations, the recommended first step of INT8."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    symbolic = importlib.util.find_spec("sympy") is not None
    quant_pre_process(str(src), str(dst), skip_symbolic_shape=not symbolic)
    return {"preprocessed": True, "symbolic_shape_inference": symbolic}


def _with_preprocess(src: Path, dst: Path, enabled: bool) -> tuple[Path, dict]:
    if not enabled:
        return src, {"preprocessed": False}
    pre = _pre_path(dst)
    return pre, preprocess(src, pre)


def _quant_type(name: str, what: str):
    from onnxruntime.quantization import QuantType

    if name not in QUANT_TYPES:
        raise ValueError(f"{what} {name!r} is not one of {', '.join(QUANT_TYPES)}")
    return QuantType[name]


def to_fp16(src, dst, *, keep_io_types: bool = True, op_block_list: Iterable[str] | None = None) -> dict:
    """Convert FP32 weights and compute to FP16 (inputs/outputs stay FP32 with ``keep_io_types``)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    start = time.perf_counter()
    model = onnx.load(str(src))
    kwargs = {} if op_block_list is None else {"op_block_list": list(op_block_list)}
    converted = convert_float_to_float16(model, keep_io_types=keep_io_types, **kwargs)
    # The converter appends the input casts at the end of the node list; onnx requires topological order
    # (onnxruntime does not care, onnx.checker and other runtimes do).
    OnnxModel(converted).topological_sort()
    onnx.checker.check_model(converted)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(converted, str(dst))
    return {"keep_io_types": keep_io_types, "converter": "onnxruntime.transformers.float16",
            "ops": op_histogram(dst), "seconds": round(time.perf_counter() - start, 3)}


def default_dynamic_ops(model) -> tuple[list[str] | None, str]:
    """(op types, why): MatMul/Gemm only when the graph has convolutions, else onnxruntime's default list."""
    if any(n.op_type in CNN_OPS for n in model.graph.node):
        return list(CNN_DYNAMIC_OPS), "convolutional graph: MatMul/Gemm only (dynamic ConvInteger is slow, onnxruntime#12854)"
    return None, "no convolutions: onnxruntime's default op types"


def int8_dynamic(src, dst, *, op_types: Iterable[str] | None = None, per_channel: bool = False,
                 reduce_range: bool = False, weight_type: str = "QInt8", preprocess: bool = True) -> dict:
    """INT8 weights, activations quantized at run time. ``op_types`` None: see :func:`default_dynamic_ops`."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if op_types is None:
        ops, why = default_dynamic_ops(onnx.load(str(src), load_external_data=False))
    else:
        ops, why = list(op_types), "recipe"
    qtype = _quant_type(weight_type, "weightType")
    model_in, pre = _with_preprocess(src, dst, preprocess)
    try:
        quantize_dynamic(str(model_in), str(dst), op_types_to_quantize=ops, per_channel=per_channel,
                         reduce_range=reduce_range, weight_type=qtype,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        if model_in != src:
            model_in.unlink(missing_ok=True)
    return {**pre, "op_types": ops or "onnxruntime default", "op_types_reason": why, "per_channel": per_channel,
            "reduce_range": reduce_range, "weight_type": weight_type, "ops": op_histogram(dst),
            "seconds": round(time.perf_counter() - start, 3)}


class ArrayReader:
    """onnxruntime CalibrationDataReader over an array of inputs for a single-input model, in batches."""

    def __init__(self, input_name: str, x: np.ndarray, batch_size: int = 32):
        self.input_name, self.x, self.batch_size = input_name, x, batch_size
        self._start = 0

    def get_next(self) -> dict | None:
        if self._start >= len(self.x):
            return None
        batch = self.x[self._start:self._start + self.batch_size]
        self._start += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._start = 0


def int8_static(src, dst, calibration: np.ndarray, *, per_channel: bool = False, calibrate_method: str = "MinMax",
                activation_type: str = "QInt8", weight_type: str = "QInt8", op_types: Iterable[str] | None = None,
                reduce_range: bool = False, batch_size: int = 32, preprocess: bool = True) -> dict:
    """QDQ INT8 with activation ranges calibrated on ``calibration`` (inputs of a single-input model)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, quantize_static

    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if calibrate_method not in CALIBRATION_METHODS:
        raise ValueError(f"calibrationMethod {calibrate_method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
    act, wt = _quant_type(activation_type, "activationType"), _quant_type(weight_type, "weightType")
    names = input_names(onnx.load(str(src), load_external_data=False))
    if len(names) != 1:
        raise CompressError(f"int8-static calibration feeds single-input models; this one has inputs {names}")
    if len(calibration) == 0:
        raise CompressError("int8-static: no calibration samples")

    class Reader(ArrayReader, CalibrationDataReader):
        pass

    model_in, pre = _with_preprocess(src, dst, preprocess)
    try:
        quantize_static(str(model_in), str(dst), Reader(names[0], calibration, batch_size),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
                        activation_type=act, weight_type=wt,
                        op_types_to_quantize=None if op_types is None else list(op_types),
                        calibrate_method=CalibrationMethod[calibrate_method],
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        if model_in != src:
            model_in.unlink(missing_ok=True)
    return {**pre, "format": "QDQ", "per_channel": per_channel, "calibration_method": calibrate_method,
            "calibration_samples": int(len(calibration)), "activation_type": activation_type,
            "weight_type": weight_type, "reduce_range": reduce_range,
            "op_types": list(op_types) if op_types is not None else "onnxruntime default",
            "ops": op_histogram(dst), "seconds": round(time.perf_counter() - start, 3)}


# --- technique contract (modeldeploy.compress.TECHNIQUES) ----------------------------------------------

def check_options(technique: str, options: Mapping[str, Any]) -> None:
    """ValueError naming unknown option keys (a typo must not silently fall back to a default)."""
    extra = sorted(set(options) - set(OPTIONS[technique]))
    if extra:
        raise ValueError(f"{technique}: unknown option(s) {', '.join(extra)} (known: {', '.join(OPTIONS[technique])})")


def run_fp16(src: Path, dst: Path, options: Mapping[str, Any], ctx: Context) -> dict:
    check_options("fp16", options)
    return to_fp16(src, dst, keep_io_types=options.get("keepIoTypes", True), op_block_list=options.get("opBlockList"))


def run_int8_dynamic(src: Path, dst: Path, options: Mapping[str, Any], ctx: Context) -> dict:
    check_options("int8-dynamic", options)
    return int8_dynamic(src, dst, op_types=options.get("opTypes"), per_channel=options.get("perChannel", False),
                        reduce_range=options.get("reduceRange", False),
                        weight_type=options.get("weightType", "QInt8"), preprocess=options.get("preprocess", True))


def run_int8_static(src: Path, dst: Path, options: Mapping[str, Any], ctx: Context) -> dict:
    check_options("int8-static", options)
    samples = options.get("calibrationSamples", 256)
    x, split = ctx.dataset.calibration(samples)
    if split == "x_test":
        ctx.log("warning: int8-static calibrates on the held-out split (the dataset has no x_calib or x_train): "
                "its accuracy is optimistic")
    result = int8_static(src, dst, x, per_channel=options.get("perChannel", False),
                         calibrate_method=options.get("calibrationMethod", "MinMax"),
                         activation_type=options.get("activationType", "QInt8"),
                         weight_type=options.get("weightType", "QInt8"), op_types=options.get("opTypes"),
                         reduce_range=options.get("reduceRange", False),
                         batch_size=options.get("calibrationBatchSize", 32), preprocess=options.get("preprocess", True))
    return {**result, "calibration_split": split}
