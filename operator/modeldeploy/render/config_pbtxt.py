"""Render Triton's ``config.pbtxt`` (protobuf text format of inference.ModelConfig) from the spec.

Inputs and outputs are left out: Triton's auto-complete fills them from the model for ONNX, TensorRT
and SavedModel, which avoids a second source of truth. Only what the user declared, plus the instance
group derived from the GPU request, and warmup samples when asked for (``model_warmup``), are written. No ``version_policy``: Triton's default (the latest
version) is the one version folder the repository holds; a fixed version here would tie this
per-revision ConfigMap to one model version, and the model agent swaps versions without a new revision.
"""

from __future__ import annotations

from modeldeploy.api.spec import Spec


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "'": "\\'", "\\": "\\\\"}


def _quote(value: str) -> str:
    r"""A string literal of the protobuf text format: quotes, backslashes and every control character
    escaped (C escapes, else 3-digit octal), other characters as UTF-8, as protobuf's own ``CEscape``
    writes them. A name holding a newline can therefore neither break the file nor add a field.

    >>> print(_quote('a"b\\c\nd\x00é'))
    "a\"b\\c\nd\000é"
    """
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_config_pbtxt(spec: Spec) -> str:
    lines = [
        f"name: {_quote(spec.model.name)}",
        f"backend: {_quote(spec.backend)}",
        f"max_batch_size: {spec.serving.max_batch_size}",
    ]
    dyn = spec.serving.dynamic_batching
    if dyn is not None:
        lines.append("dynamic_batching {")
        if dyn.preferred_batch_sizes:
            sizes = ", ".join(str(s) for s in dyn.preferred_batch_sizes)
            lines.append(f"  preferred_batch_size: [ {sizes} ]")
        lines.append(f"  max_queue_delay_microseconds: {dyn.max_queue_delay_microseconds}")
        lines.append("}")
    kind = "KIND_GPU" if spec.resources.gpu.count > 0 else "KIND_CPU"
    lines += [
        "instance_group [",
        "  {",
        f"    count: {spec.serving.instances_per_device}",
        f"    kind: {kind}",
        "  }",
        "]",
    ]
    if spec.serving.warmup:
        lines.append("model_warmup [")
        for i, sample in enumerate(spec.serving.warmup):
            lines += ["  {", f"    name: {_quote(sample.name)}", f"    batch_size: {sample.batch_size}",
                      f"    count: {sample.count}"]
            for input_name, tensor in sample.inputs:
                dims = ", ".join(str(d) for d in tensor.dims)
                data = "random_data: true" if tensor.random else "zero_data: true"
                lines += ["    inputs {", f"      key: {_quote(input_name)}", "      value {",
                          f"        data_type: TYPE_{tensor.data_type}", f"        dims: [ {dims} ]",
                          f"        {data}", "      }", "    }"]
            lines.append("  }," if i < len(spec.serving.warmup) - 1 else "  }")
        lines.append("]")
    return "\n".join(lines) + "\n"
