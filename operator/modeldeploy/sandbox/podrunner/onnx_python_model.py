"""Triton python-backend ``model.py`` that serves the ``model.onnx`` lying next to it with onnxruntime.

Why it exists: the only Triton we can run without a GPU and a container registry is the one inside
PyPI's ``nvidia-pytriton`` wheel, and that build ships the python backend only (no onnxruntime
backend). The pod runner copies this file as ``<repo>/<model>/<version>/model.py`` next to the fetched
``model.onnx`` and switches the model's ``config.pbtxt`` to ``backend: "python"``; Triton then serves
the ONNX model through onnxruntime in the python-backend stub process. It is a stand-in for Triton's
onnxruntime backend in the sandbox, not something the operator ships to real clusters.

What it does like the onnxruntime backend:
- inputs and outputs come from the ONNX graph (``auto_complete_config``), so ``config.pbtxt`` may
  leave them out (the operator's renderer does);
- when ``max_batch_size > 0`` the first ONNX dimension is the batch dimension: requests that Triton's
  dynamic batcher hands over together are concatenated, run in one ``session.run``, and split back.

Only the standard library is imported at module level (``onnxruntime``, ``numpy`` and Triton's
``triton_python_backend_utils`` are imported where needed), so the pure helpers below are unit-tested
without Triton.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

#: onnxruntime's type strings -> Triton data types.
ORT_TO_TRITON = {
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(double)": "TYPE_FP64",
    "tensor(bfloat16)": "TYPE_BF16",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(bool)": "TYPE_BOOL",
    "tensor(string)": "TYPE_STRING",
}

MODEL_FILE = "model.onnx"


def triton_dims(shape: Sequence[Any], batching: bool) -> list[int]:
    """Triton ``dims`` for an ONNX shape: symbolic or unknown sizes become -1; with batching the first
    (batch) dimension is dropped, and it must be dynamic.

    >>> triton_dims(["N", 8, 8], batching=True)
    [8, 8]
    >>> triton_dims([None, "seq"], batching=False)
    [-1, -1]
    >>> triton_dims([4, 3], batching=True)
    Traceback (most recent call last):
    ...
    ValueError: first dimension is 4, not dynamic: the model cannot batch (set max_batch_size 0)
    """
    dims = [d if isinstance(d, int) and d >= 0 else -1 for d in shape]
    if not batching:
        return dims
    if not dims or dims[0] != -1:
        first = dims[0] if dims else "missing"
        raise ValueError(f"first dimension is {first}, not dynamic: the model cannot batch (set max_batch_size 0)")
    return dims[1:]


def tensor_config(name: str, ort_type: str, shape: Sequence[Any], batching: bool) -> dict[str, Any]:
    """One ``input``/``output`` entry for Triton's auto-complete."""
    if ort_type not in ORT_TO_TRITON:
        raise ValueError(f"tensor {name!r}: ONNX type {ort_type} has no Triton equivalent")
    return {"name": name, "data_type": ORT_TO_TRITON[ort_type], "dims": triton_dims(shape, batching)}


def batch_slices(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Where each request's rows are in the concatenated batch.

    >>> batch_slices([2, 1, 3])
    [(0, 2), (2, 3), (3, 6)]
    """
    out, start = [], 0
    for size in sizes:
        out.append((start, start + size))
        start += size
    return out


def can_concatenate(shapes_per_request: Sequence[Sequence[tuple[int, ...]]]) -> bool:
    """True when, input by input, all requests agree on every dimension but the first.

    >>> can_concatenate([[(2, 8)], [(1, 8)]])
    True
    >>> can_concatenate([[(2, 8)], [(1, 9)]])
    False
    """
    first = shapes_per_request[0]
    return all(len(shapes) == len(first) and all(s[1:] == f[1:] for s, f in zip(shapes, first))
               for shapes in shapes_per_request[1:])


def model_path(model_py: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(model_py)), MODEL_FILE)


def _session(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One Triton model instance per process already; keep onnxruntime from spawning a thread per core
    # in each instance (the sandbox has few cores). MODELDEPLOY_ORT_THREADS overrides.
    threads = int(os.environ.get("MODELDEPLOY_ORT_THREADS", "1"))
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


class TritonPythonModel:
    """The python backend's entry point (names fixed by Triton)."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        config = auto_complete_model_config.as_dict()
        batching = int(config.get("max_batch_size", 0)) > 0
        session = _session(model_path(__file__))
        declared_in = {t["name"] for t in config.get("input", [])}
        declared_out = {t["name"] for t in config.get("output", [])}
        for arg in session.get_inputs():
            if arg.name not in declared_in:
                auto_complete_model_config.add_input(tensor_config(arg.name, arg.type, arg.shape, batching))
        for arg in session.get_outputs():
            if arg.name not in declared_out:
                auto_complete_model_config.add_output(tensor_config(arg.name, arg.type, arg.shape, batching))
        return auto_complete_model_config

    def initialize(self, args: dict[str, str]) -> None:
        import json

        config = json.loads(args["model_config"])
        self.batching = int(config.get("max_batch_size", 0)) > 0
        self.session = _session(model_path(__file__))
        self.input_names = [a.name for a in self.session.get_inputs()]
        self.output_names = [a.name for a in self.session.get_outputs()]

    def execute(self, requests):
        import numpy as np
        import triton_python_backend_utils as pb_utils

        try:
            inputs = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names]
                      for r in requests]
        except AttributeError:  # get_input_tensor_by_name returned None
            missing = pb_utils.TritonError(f"every request must carry the inputs {self.input_names}")
            return [pb_utils.InferenceResponse(error=missing) for _ in requests]
        per_request: list = []
        if self.batching and len(requests) > 1 and can_concatenate([[a.shape for a in arrs] for arrs in inputs]):
            feed = {n: np.concatenate([arrs[i] for arrs in inputs]) for i, n in enumerate(self.input_names)}
            try:
                outputs = self.session.run(self.output_names, feed)
                per_request = [[o[a:b] for o in outputs]
                               for a, b in batch_slices([arrs[0].shape[0] for arrs in inputs])]
            except Exception:  # run them one by one below, so only the bad request fails
                per_request = []
        if not per_request:
            for arrs in inputs:
                try:
                    per_request.append(self.session.run(self.output_names, dict(zip(self.input_names, arrs))))
                except Exception as exc:  # a bad request fails alone, not its batch neighbours
                    per_request.append(pb_utils.TritonError(f"onnxruntime: {exc}"))
        return [
            pb_utils.InferenceResponse(error=outs) if isinstance(outs, pb_utils.TritonError)
            else pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(n, np.ascontiguousarray(o)) for n, o in zip(self.output_names, outs)
            ])
            for outs in per_request
        ]

    def finalize(self) -> None:
        self.session = None
