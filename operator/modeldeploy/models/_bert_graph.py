"""A BERT sentence encoder written as an ONNX graph with ``onnx.helper``, from a safetensors checkpoint.

Why this exists: exporting a Hugging Face BERT to ONNX normally means ``torch.onnx.export``, and torch is
not installed here (PyPI's build is gigabytes of CUDA). The encoder is small and regular enough to write
by hand, and the checkpoint format is simple enough to read without the ``safetensors`` package (an
8-byte little-endian header length, a JSON header, raw little-endian arrays), so the only dependencies are
numpy and onnx.

The graph deliberately keeps the shape torch's legacy exporter gives a Hugging Face ``BertModel``, because
``onnxruntime.transformers.optimizer`` (model_type ``bert``) recognises that shape and fuses it into
``EmbedLayerNormalization``/``Attention``/``SkipLayerNormalization``/``BiasGelu``:

- linear layers are ``MatMul`` with the transposed weight as an initializer, then ``Add`` of the bias;
- heads are split with ``Reshape [0,0,heads,head_size]`` + ``Transpose``, K transposed to (0,2,3,1),
  scores ``MatMul`` → ``Div √head_size`` → ``Add`` the mask → ``Softmax``;
- the mask is ``Unsqueeze``·``Unsqueeze``·``Cast``·``Sub(1, ·)``·``Mul(·, -10000)``, added to the scores;
- GELU is the exact erf form ``x·0.5·(1+erf(x/√2))`` as ``Div``/``Erf``/``Add``/``Mul``/``Mul``;
- ``LayerNormalization`` is the opset-17 op.

One cheap departure: there is no ``token_type_ids`` input (sentence encoders are fed one segment, all
zeros), so the token-type-0 row is added to every row of the position table ahead of time. The embedding
then has DistilBERT's shape (word ``Gather`` + position ``Gather`` of ``Range``/``Expand``), which the
optimizer also fuses.

Mean pooling over the attention mask and L2 normalisation (sentence-transformers' ``Pooling`` and
``Normalize`` modules) are part of the graph, so a server returns finished sentence embeddings.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT_IDS, ATTENTION_MASK, EMBEDDING = "input_ids", "attention_mask", "embedding"
_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
           "I8": np.int8, "U8": np.uint8, "BF16": None}


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face ``config.json`` the graph needs."""

    hidden_size: int = 384
    num_attention_heads: int = 12
    num_hidden_layers: int = 6
    intermediate_size: int = 1536
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 512

    @classmethod
    def from_json(cls, path) -> "BertConfig":
        data = json.loads(Path(path).read_text())
        if data.get("hidden_act", "gelu") != "gelu" or data.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only BERT with exact GELU and absolute positions is supported")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as a numpy array (copies, so the file can be closed).

    The format: ``u64`` little-endian N, N bytes of JSON ``{name: {dtype, shape, data_offsets: [b, e]}}``
    (plus an optional ``__metadata__``), then the data; offsets are relative to the end of the header.
    """
    path = Path(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(dtype).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"]).astype(dtype, copy=True)
    return out


class _Builder:
    """Collects nodes and initializers; names follow the checkpoint so the graph is readable."""

    def __init__(self):
        self.nodes, self.inits = [], {}

    def const(self, name: str, value) -> str:
        self.inits[name] = np.asarray(value)
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        from onnx import helper

        out = f"{name}_output"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    def linear(self, x: str, weights: dict, prefix: str) -> str:
        """``x @ W.T + b`` as MatMul (transposed weight initializer) + Add, the exporter's form."""
        w = self.const(f"{prefix}.weight_T", np.ascontiguousarray(weights[f"{prefix}.weight"].T))
        b = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("Add", [self.op("MatMul", [x, w], f"{prefix}/MatMul"), b], f"{prefix}/Add")

    def layer_norm(self, x: str, weights: dict, prefix: str, eps: float) -> str:
        return self.op("LayerNormalization", [x, self.const(f"{prefix}.weight", weights[f"{prefix}.weight"]),
                                              self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])],
                       f"{prefix}/LayerNormalization", axis=-1, epsilon=eps)


def _attention(b: _Builder, x: str, mask_bias: str, weights: dict, prefix: str, cfg: BertConfig) -> str:
    def heads(name: str, perm: list[int]) -> str:
        h = b.linear(x, weights, f"{prefix}.self.{name}")
        h = b.op("Reshape", [h, "shape_heads"], f"{prefix}.self.{name}/Reshape")
        return b.op("Transpose", [h], f"{prefix}.self.{name}/Transpose", perm=perm)

    q, k, v = heads("query", [0, 2, 1, 3]), heads("key", [0, 2, 3, 1]), heads("value", [0, 2, 1, 3])
    scores = b.op("MatMul", [q, k], f"{prefix}.self/MatMul_qk")
    scores = b.op("Div", [scores, "sqrt_head_size"], f"{prefix}.self/Div")
    scores = b.op("Add", [scores, mask_bias], f"{prefix}.self/Add_mask")
    probs = b.op("Softmax", [scores], f"{prefix}.self/Softmax", axis=-1)
    ctx = b.op("MatMul", [probs, v], f"{prefix}.self/MatMul_qkv")
    ctx = b.op("Transpose", [ctx], f"{prefix}.self/Transpose_ctx", perm=[0, 2, 1, 3])
    ctx = b.op("Reshape", [ctx, "shape_hidden"], f"{prefix}.self/Reshape_ctx")
    out = b.linear(ctx, weights, f"{prefix}.output.dense")
    out = b.op("Add", [out, x], f"{prefix}.output/Add_residual")
    return b.layer_norm(out, weights, f"{prefix}.output.LayerNorm", cfg.layer_norm_eps)


def _gelu(b: _Builder, x: str, prefix: str) -> str:
    """Exact GELU, ``x · 0.5 · (1 + erf(x / √2))``, in the node order torch's exporter writes."""
    e = b.op("Erf", [b.op("Div", [x, "sqrt_2"], f"{prefix}/Div")], f"{prefix}/Erf")
    e = b.op("Add", [e, "one"], f"{prefix}/Add")
    return b.op("Mul", [b.op("Mul", [x, e], f"{prefix}/Mul"), "half"], f"{prefix}/Mul_half")


def _layer(b: _Builder, x: str, mask_bias: str, weights: dict, i: int, cfg: BertConfig) -> str:
    prefix = f"encoder.layer.{i}"
    x = _attention(b, x, mask_bias, weights, f"{prefix}.attention", cfg)
    h = _gelu(b, b.linear(x, weights, f"{prefix}.intermediate.dense"), f"{prefix}.intermediate.gelu")
    h = b.op("Add", [b.linear(h, weights, f"{prefix}.output.dense"), x], f"{prefix}.output/Add_residual")
    return b.layer_norm(h, weights, f"{prefix}.output.LayerNorm", cfg.layer_norm_eps)


def build_graph(weights: dict[str, np.ndarray], cfg: BertConfig = BertConfig(), *, opset: int = 17,
                name: str = "bert-sentence-encoder", producer_version: str = "", doc: str = ""):
    """The ONNX ``ModelProto`` of encoder + mean pooling + L2 normalisation.

    Inputs ``input_ids`` and ``attention_mask``: int64 ``[batch, seq]`` (both axes symbolic; seq at most
    ``max_position_embeddings``). Output ``embedding``: float32 ``[batch, hidden]``, unit L2 norm. Weight
    names are the checkpoint's (``bert.`` prefix stripped), linear weights transposed (``…weight_T``).
    """
    from onnx import TensorProto, helper, numpy_helper

    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    f32 = np.float32
    b = _Builder()
    b.const("shape_heads", np.array([0, 0, cfg.num_attention_heads, cfg.head_size], np.int64))
    b.const("shape_hidden", np.array([0, 0, cfg.hidden_size], np.int64))
    b.const("sqrt_head_size", np.array(np.sqrt(cfg.head_size), f32))
    b.const("sqrt_2", np.array(np.sqrt(2.0), f32))
    for n, v in (("one", 1.0), ("half", 0.5), ("mask_filter", -10000.0), ("min_count", 1e-9), ("min_norm", 1e-12)):
        b.const(n, np.array(v, f32))
    for n, v in (("int_zero", 0), ("int_one", 1)):
        b.const(n, np.array(v, np.int64))
    b.const("axes_0", np.array([0], np.int64))
    b.const("axes_1", np.array([1], np.int64))
    b.const("axes_2", np.array([2], np.int64))
    b.const("axes_last", np.array([-1], np.int64))

    # Embeddings: word Gather + position Gather (token type 0 folded into the position table), LayerNorm.
    word = b.const("embeddings.word_embeddings.weight", weights["embeddings.word_embeddings.weight"].astype(f32))
    pos_table = (weights["embeddings.position_embeddings.weight"]
                 + weights["embeddings.token_type_embeddings.weight"][0]).astype(f32)
    pos = b.const("embeddings.position_embeddings_plus_token_type_0", pos_table)
    shape = b.op("Shape", [INPUT_IDS], "embeddings/Shape")
    seq = b.op("Gather", [shape, "int_one"], "embeddings/Gather_seq", axis=0)
    ids = b.op("Range", ["int_zero", seq, "int_one"], "embeddings/Range")
    ids = b.op("Expand", [b.op("Unsqueeze", [ids, "axes_0"], "embeddings/Unsqueeze"), shape], "embeddings/Expand")
    x = b.op("Add", [b.op("Gather", [word, INPUT_IDS], "embeddings.word_embeddings/Gather", axis=0),
                     b.op("Gather", [pos, ids], "embeddings.position_embeddings/Gather", axis=0)],
             "embeddings/Add")
    x = b.layer_norm(x, weights, "embeddings.LayerNorm", cfg.layer_norm_eps)

    # Additive attention mask [batch, 1, 1, seq]: 0 where attended, -10000 on padding.
    m = b.op("Unsqueeze", [ATTENTION_MASK, "axes_1"], "mask/Unsqueeze_1")
    m = b.op("Cast", [b.op("Unsqueeze", [m, "axes_2"], "mask/Unsqueeze_2")], "mask/Cast", to=TensorProto.FLOAT)
    mask_bias = b.op("Mul", [b.op("Sub", ["one", m], "mask/Sub"), "mask_filter"], "mask/Mul")

    for i in range(cfg.num_hidden_layers):
        x = _layer(b, x, mask_bias, weights, i, cfg)

    # Mean pooling over attended tokens, then L2 normalisation (sentence-transformers Pooling + Normalize).
    pm = b.op("Cast", [b.op("Unsqueeze", [ATTENTION_MASK, "axes_last"], "pooling/Unsqueeze")], "pooling/Cast",
              to=TensorProto.FLOAT)
    summed = b.op("ReduceSum", [b.op("Mul", [x, pm], "pooling/Mul"), "axes_1"], "pooling/ReduceSum", keepdims=0)
    count = b.op("Max", [b.op("ReduceSum", [pm, "axes_1"], "pooling/ReduceSum_mask", keepdims=0), "min_count"],
                 "pooling/Max")
    mean = b.op("Div", [summed, count], "pooling/Div")
    norm = b.op("Max", [b.op("ReduceL2", [mean], "normalize/ReduceL2", axes=[1], keepdims=1), "min_norm"],
                "normalize/Max")
    b.nodes.append(helper.make_node("Div", [mean, norm], [EMBEDDING], name="normalize/Div"))

    graph = helper.make_graph(
        b.nodes, name,
        [helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["batch", cfg.hidden_size])],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in b.inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="modeldeploy",
                              producer_version=producer_version, doc_string=doc)
    model.ir_version = 8  # the lowest opset 17 allows: onnxruntime 1.14+ and Triton's backend load it
    return model
