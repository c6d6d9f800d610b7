"""``report.json``: everything a compression run measured and decided, machine-readable.

Why this exists: the operator copies the decision into the ModelDeployment's status, users compare
variants, and the content-addressed cache stores it next to the models; one JSON document serves all
three. It is written atomically (temporary file, then rename), so a reader never sees half a report,
also when the Job is killed.

Shape (``schema: modeldeploy.io/compress-report/v1``; sizes in bytes, latencies in milliseconds, accuracy as
a fraction, ratios as "× smaller" / "× faster" than FP32)::

    {"schema", "status": "chosen" | "gate-failed", "exit_code": 0 | 3,
     "model": {"path", "sha256", "size_bytes"},
     "dataset": {"uri", "task", "test_size", ...},
     "recipe": {... normalized ...}, "recipe_hash", "tools": {"onnx": ..., ...},
     "environment": {"provider", "intra_op_num_threads", "runs", "warmup", "statistic": "median", "cpu", ...},
     "baseline": {"name": "fp32", "size_bytes", "weight_bytes", "accuracy" | "cosine", "latency_ms": {"1", "32"}},
     "variants": [{"name", "technique", "from", "options", "details", "file", "size_bytes", "weight_bytes",
                   "accuracy", "accuracy_drop_pt", "cosine", "latency_ms", "size_ratio", "weight_ratio",
                   "speedup", "gate": {"passed", "reasons"}, "error"?, "build_seconds"}],
     "gate": {"maxAccuracyDrop", "minCosine", "source"}, "select",
     "decision": {"chosen", "passed", "message", "checks"},
     "selected": "selected/model.onnx" | null, "seconds"}

``python -m modeldeploy.compress.report report.json`` prints the variants as a Markdown table.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

SCHEMA = "modeldeploy.io/compress-report/v1"
REPORT_FILE = "report.json"
TOOLS = ("modeldeploy", "onnx", "onnxruntime", "numpy", "scikit-learn")


def tool_versions() -> dict[str, str]:
    """Versions of what shapes the output (part of the content hash); missing packages are left out."""
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name == "modeldeploy":
                from modeldeploy import __version__

                versions[name] = __version__
    return versions


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fmt_bytes(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def markdown_table(report: Mapping[str, Any]) -> str:
    """FP32 and every variant: size, weights, quality, latency per batch size, gate, chosen."""
    batches = report.get("environment", {}).get("batch_sizes") or [1, 32]
    quality = "accuracy" if report.get("dataset", {}).get("task") == "classification" else "cosine"
    head = (["variant", "size (bytes)", "× smaller", "weights (bytes)", "× smaller (weights)", quality]
            + [f"b{b} ms (× FP32 speed)" for b in batches] + ["gate"])
    rows = []
    for record in [report["baseline"], *report["variants"]]:
        is_base = record is report["baseline"]
        if record.get("error"):
            rows.append([record["name"], "–", "–", "–", "–", "–", *["–"] * len(batches), f"error: {record['error']}"])
            continue
        if quality == "accuracy":
            q = f"{100 * record['accuracy']:.2f}%" if record.get("accuracy") is not None else "–"
            if not is_base and record.get("accuracy_drop_pt") is not None:
                q += f" ({0.0 - record['accuracy_drop_pt']:+.2f} pt)"
        else:
            q = f"{record['cosine']:.4f}" if record.get("cosine") is not None else "1 (reference)"
        lat = [f"{record['latency_ms'][str(b)]:.3f}" + ("" if is_base else f" ({record['speedup'][str(b)]:.2f}×)")
               for b in batches]
        gate = "baseline" if is_base else ("pass" if record["gate"]["passed"] else "fail")
        if not is_base and record["name"] == report["decision"]["chosen"]:
            gate += ", **chosen**"
        rows.append([record["name"], _fmt_bytes(record["size_bytes"]),
                     "1.00" if is_base else f"{record['size_ratio']:.2f}", _fmt_bytes(record["weight_bytes"]),
                     "1.00" if is_base else f"{record['weight_ratio']:.2f}", q, *lat, gate])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m modeldeploy.compress.report DIR/report.json", file=sys.stderr)
        return 2
    report = json.loads(Path(args[0]).read_text())
    print(markdown_table(report))
    print(f"\n{report['decision']['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
