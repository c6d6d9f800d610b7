"""Benchmark: all-MiniLM-L6-v2 FP32 vs INT8 dynamic per-channel, as written (standard ops) and fused.

Rows: the FP32 model (``model.onnx``, standard ONNX ops), its INT8 dynamic per-channel quantization
(``modeldeploy.compress.quantize.int8_dynamic``, the code ``modeldeploy compress`` runs), and the same two
for ``model.fused.onnx`` (onnxruntime's BERT fusion: EmbedLayerNormalization, Attention, SkipLayerNorm,
BiasGelu; its INT8 has QAttention). ``--per-tensor`` adds per-tensor INT8 rows, for contrast.

Columns: file size (× smaller than FP32 of the same form), cosine of each sentence's embedding to the FP32
standard-op model's on the 320 ``builtin://minilm-sentences`` (mean and min), the largest difference to
sentence-transformers' published similarity matrix, and onnxruntime CPU latency (median ms of
``session.run``) at batch 1 and 32 on the first rows of that dataset (padded to 34 tokens; ``--pad-to 128``
pads to 128 instead), with ``--threads`` intra-op threads (default 1, as ``modeldeploy compress``).

Latency on a shared machine drifts, so the models are measured **interleaved**: each of ``--rounds``
rounds times ``--runs`` calls of every model in turn, and the speed-up column is the median over rounds of
(FP32 median / INT8 median) within the round. The load average before and after is printed with the table.

Usage: python tests/bench/bench_minilm.py [--rounds 5] [--runs 10] [--threads 1] [--pad-to N] [--md FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

import numpy as np  # noqa: E402

from modeldeploy.compress import evaluate, quantize  # noqa: E402
from modeldeploy.compress.datasets import stack_inputs  # noqa: E402
from modeldeploy.models import minilm  # noqa: E402


def feeds(pad_to: int | None, batch_sizes) -> dict[int, dict[str, np.ndarray]]:
    enc = minilm.encode(minilm.sentences(), pad_to=pad_to)
    return {b: {k: np.ascontiguousarray(v[np.arange(b) % len(v)]) for k, v in enc.items()} for b in batch_sizes}


def interleaved_latency(sessions: dict, inputs: dict, rounds: int, runs: int, warmup: int) -> dict:
    """``{model: {batch: [median ms per round]}}``, every model timed in turn within each round."""
    out = {name: {b: [] for b in inputs} for name in sessions}
    for name, sess in sessions.items():
        for feed in inputs.values():
            for _ in range(warmup):
                sess.run(None, feed)
    for _ in range(rounds):
        for name, sess in sessions.items():
            for b, feed in inputs.items():
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    sess.run(None, feed)
                    times.append(time.perf_counter() - t0)
                out[name][b].append(float(np.median(times)) * 1000)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model, batch size and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pad-to", type=int, help="pad every sentence to this many tokens (default: 34, the longest)")
    parser.add_argument("--per-tensor", action="store_true", help="add per-tensor INT8 rows")
    parser.add_argument("--md", type=Path, help="also write the markdown table here")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    batch_sizes = (1, 32)

    built = minilm.build()
    work = Path(tempfile.mkdtemp(prefix="bench-minilm-"))
    files = {"FP32": Path(built["model_path"]), "FP32 fused": Path(built["fused_path"])}
    base_of = {"FP32": "FP32", "FP32 fused": "FP32 fused"}
    schemes = [("INT8 dyn per-channel", True)] + ([("INT8 dyn per-tensor", False)] if args.per_tensor else [])
    for form, src in (("", files["FP32"]), (" fused", files["FP32 fused"])):
        for label, per_channel in schemes:
            dst = work / f"{label.replace(' ', '-')}{form.replace(' ', '-')}.onnx"
            quantize.int8_dynamic(src, dst, per_channel=per_channel)
            files[label + form] = dst
            base_of[label + form] = "FP32" + form
            print(f"bench: quantized {label + form}: {dst.stat().st_size:,} bytes", file=sys.stderr, flush=True)

    sessions = {name: evaluate.session(path, args.threads) for name, path in files.items()}
    x = stack_inputs(minilm.encode(minilm.sentences(), pad_to=args.pad_to))
    outputs = {name: evaluate.predict(sess, x, batch=32) for name, sess in sessions.items()}
    ref_err = {name: minilm.reference_error(sess) for name, sess in sessions.items()}
    inputs = feeds(args.pad_to, batch_sizes)
    seq = inputs[1]["input_ids"].shape[1]
    print(f"bench: timing {len(sessions)} models × batch {batch_sizes}, seq {seq}, {args.rounds} rounds × "
          f"{args.runs} runs, {args.threads} thread(s)", file=sys.stderr, flush=True)
    lat = interleaved_latency(sessions, inputs, args.rounds, args.runs, args.warmup)
    load_after = os.getloadavg()

    rows = []
    for name, path in files.items():
        base = base_of[name]
        cos = evaluate.cosine(outputs[name], outputs["FP32"])
        row = {"model": name, "size_bytes": path.stat().st_size,
               "size_ratio": files[base].stat().st_size / path.stat().st_size,
               "cosine": float(cos.mean()), "cosine_min": float(cos.min()), "reference_error": ref_err[name]}
        for b in batch_sizes:
            row[f"b{b}_ms"] = float(np.median(lat[name][b]))
            row[f"b{b}_speedup"] = float(np.median(np.array(lat[base][b]) / np.array(lat[name][b])))
        rows.append(row)

    env = {"cpu": evaluate.environment(evaluate.Settings(threads=args.threads))["cpu"], "cpu_count": os.cpu_count(),
           "threads": args.threads, "seq": seq, "rounds": args.rounds, "runs": args.runs,
           "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in load_after],
           "onnxruntime": __import__("onnxruntime").__version__}
    head = ("| model | file bytes (× smaller) | cosine to FP32 mean / min | max \\|Δ\\| to published matrix "
            "| b1 ms (× FP32) | b32 ms (× FP32) |\n|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['model']} | {r['size_bytes']:,} ({r['size_ratio']:.2f}) | {r['cosine']:.4f} / {r['cosine_min']:.4f} "
        f"| {r['reference_error']:.4f} | {r['b1_ms']:.2f} ({r['b1_speedup']:.2f}×) "
        f"| {r['b32_ms']:.1f} ({r['b32_speedup']:.2f}×) |\n" for r in rows)
    note = (f"\nCPU: {env['cpu']}, {env['cpu_count']} cores, onnxruntime {env['onnxruntime']} CPUExecutionProvider, "
            f"{args.threads} intra-op thread(s); sequence length {seq}; medians of {args.rounds} interleaved rounds × "
            f"{args.runs} runs; load average (1/5/15 min) before {env['load_before']}, after {env['load_after']}.\n")
    table = head + body + note
    print(table)
    if args.md:
        args.md.write_text(table)
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "rows": rows, "latency_rounds_ms": lat}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
