"""``modeldeploy compress``: the CLI a compression Job runs.

    modeldeploy compress --model model.onnx --dataset builtin://digits --recipe recipe.json --out DIR

Steps (one progress line each on stdout, so ``kubectl logs`` of the Job shows where it is): read the recipe
and check every technique it names before any work; load the dataset; measure the FP32 model; build each
variant (``DIR/variants/<name>/model.onnx``) and measure it; apply the gate and the selection
(:mod:`modeldeploy.policy.compression`); write ``DIR/report.json``; copy the chosen variant to
``DIR/selected/model.onnx``.

Exit status: **0** a variant was chosen; **3** none passed the gate (the report is still written, and a
``selected/`` left by an earlier run is removed so it cannot be served by mistake); **1** an error (bad
recipe, unreadable model or dataset, a bug: traceback on stderr). On 1 and 3 the one-line cause, with the
numbers for 3, goes to stderr and to the termination log (``--termination-log``, env
``MODELDEPLOY_TERMINATION_LOG``, default ``/dev/termination-log``), which Kubernetes copies into the pod's
``state.terminated.message``, as ``modeldeploy fetch`` does. A variant whose technique raises is recorded
with its error and never served; the others are still measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

GATE_FAILED = 3
from modeldeploy.termination import add_argument as add_termination_log_argument
from modeldeploy.termination import write_termination_log
SELECTED = Path("selected") / "model.onnx"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compress", help="compress a model (quantization, pruning, distillation), measure, gate, select",
        description="Build the variants a recipe asks for, measure FP32 and each one on a held-out dataset "
                    "(accuracy or cosine, size, onnxruntime CPU latency), gate and select; write DIR/report.json "
                    "and DIR/selected/model.onnx. Exit 0: chosen; 3: no variant passed the gate; 1: error. "
                    "Recipe and report format: docs/compression.md.")
    p.add_argument("--model", required=True, type=Path, help="the FP32 ONNX model")
    p.add_argument("--dataset", help="dataset URI (builtin://digits, file:///x.npz, https://, s3://, gs://, "
                                     "pvc://); default: the recipe's evaluation.dataset")
    recipe = p.add_mutually_exclusive_group(required=True)
    recipe.add_argument("--recipe", type=Path, help="recipe file, JSON or YAML")
    recipe.add_argument("--recipe-json", help="the recipe itself, as JSON (what the operator's Jobs pass)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_termination_log_argument(p)
    p.set_defaults(func=run)



def load_recipe(path: Path | None, dataset: str | None = None, text: str | None = None):
    """Read and check a recipe file (JSON or YAML), or the recipe ``text`` itself; ``dataset`` overrides
    ``evaluation.dataset``."""
    import yaml

    from modeldeploy.compress import TECHNIQUES, CompressError, technique
    from modeldeploy.compress.quantize import OPTIONS, check_options
    from modeldeploy.policy.compression import RecipeError, parse_recipe

    try:
        data = yaml.safe_load(text if text is not None else Path(path).read_text())  # JSON is YAML
    except OSError as err:
        raise CompressError(f"recipe {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise CompressError(f"recipe {path or '(--recipe-json)'}: not JSON or YAML: {str(err).splitlines()[0]}") from None
    if dataset and (data is None or isinstance(data, dict)):
        data = data or {}
        evaluation = data.get("evaluation") if isinstance(data.get("evaluation"), dict) else {}
        data = {**data, "evaluation": {**evaluation, "dataset": dataset}}
    try:
        recipe = parse_recipe(data if data is not None else {}, techniques=TECHNIQUES)
        for step in recipe.steps:
            technique(step.technique)  # fail now, not after an hour of other variants
            if step.technique in OPTIONS:
                check_options(step.technique, step.options)
    except (RecipeError, ValueError) as err:
        raise CompressError(str(err) if str(err).startswith("recipe") else f"recipe: {err}") from None
    if not recipe.dataset:
        raise CompressError("no dataset: pass --dataset or set evaluation.dataset in the recipe")
    return recipe


def _error_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:400] if text else ''}".rstrip(": ")


def compress(model: Path, recipe, out: Path, *, log: Callable[[str], None] = print) -> tuple[dict, int]:
    """Run a parsed recipe on ``model`` into ``out``; returns (report, exit status 0 or 3).

    Raises CompressError when the model or dataset cannot be read.
    """
    from modeldeploy.compress import CompressError, Context, technique
    from modeldeploy.compress.datasets import load_dataset
    from modeldeploy.compress.evaluate import Settings, add_relative, environment, evaluate
    from modeldeploy.compress.report import REPORT_FILE, SCHEMA, file_sha256, tool_versions, write_json_atomic
    from modeldeploy.policy.compression import decide, effective_gate, recipe_hash

    start = time.perf_counter()
    model, out = Path(model), Path(out)
    if not model.is_file():
        raise CompressError(f"model {model}: no such file")
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("variants", "work"):
        shutil.rmtree(out / stale, ignore_errors=True)
    steps = len(recipe.steps)
    tools = tool_versions()
    digest = file_sha256(model)
    key = recipe_hash(f"sha256:{digest}", recipe.to_dict(), tools)
    log(f"compress: model {model} ({model.stat().st_size:,} bytes, sha256 {digest[:12]}), "
        f"{steps} variant(s): {', '.join(s.name for s in recipe.steps)}; recipe hash {key[:12]}")

    dataset = load_dataset(recipe.dataset)
    log(f"compress: dataset {dataset.uri}: {dataset.describe()}")
    settings = Settings(threads=recipe.threads, runs=recipe.runs, warmup=recipe.warmup,
                        batch_sizes=recipe.batch_sizes, output=recipe.output)

    def describe(r: Mapping[str, Any]) -> str:
        q = (f"accuracy {100 * r['accuracy']:.2f}%" if r.get("accuracy") is not None
             else f"cosine {r['cosine']:.4f}" if r.get("cosine") is not None else "")
        lat = ", ".join(f"b{b} {ms:.3f} ms" for b, ms in r["latency_ms"].items())
        return f"{r['size_bytes']:,} bytes, {q}, {lat} (median of {settings.runs}, {settings.threads} thread(s))"

    log("compress: [0] measure fp32")
    try:
        baseline, fp32_out = evaluate(model, dataset, settings)
    except CompressError as err:
        raise CompressError(f"measure {model}: {err}") from None
    except Exception as err:  # noqa: BLE001 - onnxruntime's errors: usually the dataset does not fit the model
        raise CompressError(f"measure {model} on {dataset.uri}: {_error_line(err)}") from None
    baseline = {"name": "fp32", "technique": None, **baseline, "file": str(model)}
    log(f"compress: [0] fp32: {describe(baseline)}")
    reference = dataset.reference if dataset.reference is not None else (
        fp32_out if dataset.task != "classification" else None)

    variants: list[dict] = []
    files: dict[str, Path] = {}
    for i, step in enumerate(recipe.steps, 1):
        tag = f"compress: [{i}/{steps}] {step.name}"
        record: dict[str, Any] = {"name": step.name, "technique": step.technique, "from": step.source,
                                  "options": dict(step.options)}
        variants.append(record)
        src = model if step.source is None else files.get(step.source)
        if src is None:
            record["error"] = f"its input variant {step.source} was not built"
            log(f"{tag}: skipped: {record['error']}")
            continue
        dst = out / "variants" / step.name / "model.onnx"
        dst.parent.mkdir(parents=True, exist_ok=True)
        work = out / "work" / step.name
        work.mkdir(parents=True, exist_ok=True)
        ctx = Context(dataset=dataset, work_dir=work, seed=recipe.seed,
                      log=lambda line, tag=tag: log(f"{tag}: {line}"))
        log(f"{tag}: build ({step.technique}{' from ' + step.source if step.source else ''}"
            f"{', ' + json.dumps(dict(step.options), sort_keys=True) if step.options else ''})")
        t0 = time.perf_counter()
        try:
            record["details"] = technique(step.technique)(src, dst, step.options, ctx)
            record["build_seconds"] = round(time.perf_counter() - t0, 3)
            measured, _ = evaluate(dst, dataset, settings, reference=reference)
        except Exception as err:  # noqa: BLE001 - one variant failing must not hide the others
            record["error"] = _error_line(err)
            log(f"{tag}: failed: {record['error']}")
            continue
        files[step.name] = dst
        record.update(measured, file=str(dst.relative_to(out)))
        add_relative(record, baseline)
        if record.get("accuracy") is not None:
            record["accuracy_drop_pt"] = round(100 * (baseline["accuracy"] - record["accuracy"]), 4)
        log(f"{tag}: {describe(record)}; {record['size_ratio']:.2f}× smaller, "
            + ", ".join(f"b{b} {x:.2f}× FP32 speed" for b, x in record["speedup"].items()))

    gate = effective_gate(recipe.gate, dataset.task)
    decision = decide(variants, baseline, gate, recipe.select, latency_batch=recipe.batch_sizes[0])
    for record, check in zip(variants, decision.checks):
        record["gate"] = {"passed": check.passed, "reasons": list(check.reasons)}
    selected = out / SELECTED
    if decision.chosen is not None:
        selected.parent.mkdir(parents=True, exist_ok=True)
        tmp = selected.with_name(".model.onnx.tmp")
        shutil.copyfile(files[decision.chosen], tmp)
        os.replace(tmp, selected)
    else:
        shutil.rmtree(selected.parent, ignore_errors=True)
    shutil.rmtree(out / "work", ignore_errors=True)
    code = 0 if decision.chosen is not None else GATE_FAILED
    report = {
        "schema": SCHEMA, "status": "chosen" if code == 0 else "gate-failed", "exit_code": code,
        "model": {"path": str(model), "sha256": digest, "size_bytes": model.stat().st_size},
        "dataset": {"uri": dataset.uri, "task": dataset.task, "test_size": int(len(dataset.x_test)),
                    "train_size": None if dataset.x_train is None else int(len(dataset.x_train)),
                    "reference": "dataset" if dataset.reference is not None else
                    ("fp32 outputs" if reference is not None else None)},
        "recipe": recipe.to_dict(), "recipe_hash": key, "tools": tools, "environment": environment(settings),
        "baseline": baseline, "variants": variants, "gate": gate.to_dict(), "select": recipe.select,
        "decision": decision.to_dict(), "selected": str(SELECTED) if code == 0 else None,
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json_atomic(out / REPORT_FILE, report)
    log(f"compress: decision (select {recipe.select}): {decision.message}")
    log(f"compress: report {out / REPORT_FILE}" + (f", served model {selected}" if code == 0 else
                                                   ", nothing selected"))
    return report, code


def run(args: argparse.Namespace) -> int:
    from modeldeploy.compress import CompressError

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        recipe = load_recipe(args.recipe, args.dataset, text=args.recipe_json)
        report, code = compress(args.model, recipe, args.out, log=log)
    except CompressError as err:
        message, code = f"CompressError: {err}", 1
    except Exception as err:  # noqa: BLE001 - a bug; still leave a cause in the pod status
        traceback.print_exc()
        message, code = f"CompressError: unexpected {_error_line(err)}", 1
    else:
        # The result itself (chosen or gate-failed) is the termination message: the operator reads it
        # from the pod instead of the volume (policy/compression_result.py).
        from modeldeploy.compress.report import file_sha256
        from modeldeploy.policy.compression_result import dump, summarize

        selected = Path(args.out) / SELECTED
        sha = file_sha256(selected) if code == 0 else None
        write_termination_log(args.termination_log, dump(summarize(report, sha)), prog="compress")
        if code == 0:
            return 0
        print(f"GateFailed: {report['decision']['message']}", file=sys.stderr, flush=True)
        return code
    print(message, file=sys.stderr, flush=True)
    write_termination_log(args.termination_log, message, prog="compress")
    return code
