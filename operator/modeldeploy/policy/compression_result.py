"""The compression Job's result as the operator sees it: one compact JSON document, both ends of the wire.

Why this exists: the operator cannot read the Job's volume (the model store is a PVC mounted only in
pods), and a Job should need no API rights of its own. Kubernetes already carries a small message from
a finished container to whoever can read the pod: the termination message (4096 bytes). So
``modeldeploy compress`` writes :func:`summarize` of its report there, on success and on a gate
failure alike, and the operator parses it with :func:`parse_message` into ``status.compression``.
The operator then keeps the same document in a cache ConfigMap, so the result outlives the Job and
its pod (``ttlSecondsAfterFinished``) and is found by every ModelDeployment with the same key.

A message that is not a summary (``CompressError: ...``, a traceback tail, an empty message of a
killed pod) is an error: the Job failed without a result.

Shape (camelCase: it is copied into the Kubernetes status as is)::

    {"v": 1, "status": "chosen" | "gate-failed", "selected": "prune+int8-static" | null,
     "file": "selected/model.onnx" | null, "sha256": "<selected file>" | null, "message": "<decision>",
     "baseline": {"sizeBytes", "accuracy" | "cosine", "latencyMs": {"1": ms, "32": ms}},
     "variants": [{"name", "technique", "sizeBytes", "sizeRatio", "accuracy", "accuracyDropPt", "cosine",
                   "latencyMs", "passed", "reason", "error"}], "truncated": n}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

SUMMARY_VERSION = 1
MAX_MESSAGE = 4096  # what the kubelet keeps of a termination message
STATUS_CHOSEN = "chosen"
STATUS_GATE_FAILED = "gate-failed"


def _round(value: Any, digits: int) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _latency(record: Mapping[str, Any]) -> dict[str, float]:
    return {str(b): round(float(ms), 3) for b, ms in (record.get("latency_ms") or {}).items()}


def _quality(record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if record.get("accuracy") is not None:
        out["accuracy"] = round(float(record["accuracy"]), 5)
    if record.get("accuracy_drop_pt") is not None:
        out["accuracyDropPt"] = round(float(record["accuracy_drop_pt"]), 3)
    if record.get("cosine") is not None:
        out["cosine"] = round(float(record["cosine"]), 5)
    return out


def _variant(record: Mapping[str, Any], with_latency: bool) -> dict[str, Any]:
    gate = record.get("gate") or {}
    out: dict[str, Any] = {"name": record["name"], "technique": record.get("technique")}
    if record.get("error"):
        out.update(passed=False, error=str(record["error"])[:200])
        return out
    out["sizeBytes"] = record.get("size_bytes")
    if record.get("size_ratio") is not None:
        out["sizeRatio"] = round(float(record["size_ratio"]), 2)
    out.update(_quality(record))
    if with_latency:
        out["latencyMs"] = _latency(record)
    out["passed"] = bool(gate.get("passed"))
    reasons = [r for r in gate.get("reasons") or () if r]
    if reasons:
        out["reason"] = "; ".join(reasons)[:300]
    return out


def summarize(report: Mapping[str, Any], selected_sha256: str | None = None,
              limit: int = MAX_MESSAGE) -> dict[str, Any]:
    """The summary of a ``report.json`` (see compress/report.py) that fits in ``limit`` bytes of JSON.

    When all variants with latencies do not fit, latencies of variants go first, then variants from the
    end (``truncated`` says how many); the decision message is cut last.

    >>> r = {"status": "chosen", "selected": "selected/model.onnx", "decision": {"chosen": "fp16", "message": "m"},
    ...      "baseline": {"size_bytes": 100, "accuracy": 0.98, "latency_ms": {1: 0.5}},
    ...      "variants": [{"name": "fp16", "technique": "fp16", "size_bytes": 50, "size_ratio": 2.0,
    ...                    "accuracy": 0.98, "accuracy_drop_pt": 0.0, "latency_ms": {1: 0.4}, "gate": {"passed": True}}]}
    >>> s = summarize(r, "ab" * 32); s["selected"], s["variants"][0]["sizeRatio"], s["baseline"]["latencyMs"]
    ('fp16', 2.0, {'1': 0.5})
    """
    decision = report.get("decision") or {}
    base = report.get("baseline") or {}
    chosen = report.get("status") == STATUS_CHOSEN
    summary: dict[str, Any] = {
        "v": SUMMARY_VERSION,
        "status": STATUS_CHOSEN if chosen else STATUS_GATE_FAILED,
        "selected": decision.get("chosen") if chosen else None,
        "file": report.get("selected") if chosen else None,
        "sha256": selected_sha256 if chosen else None,
        "message": str(decision.get("message", "")),
        "baseline": {"sizeBytes": base.get("size_bytes"), **_quality(base), "latencyMs": _latency(base)},
    }
    records = list(report.get("variants") or ())
    for with_latency in (True, False):
        for keep in range(len(records), -1, -1):
            candidate = {**summary, "variants": [_variant(r, with_latency) for r in records[:keep]]}
            if keep < len(records):
                candidate["truncated"] = len(records) - keep
            if len(_dump(candidate)) <= limit:
                return candidate
    summary["variants"] = []
    summary["truncated"] = len(records)
    overflow = len(_dump(summary)) - limit
    summary["message"] = summary["message"][: max(0, len(summary["message"]) - overflow - 3)] + "..."
    return summary


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def dump(summary: Mapping[str, Any]) -> str:
    """The termination-message text of a summary (compact JSON, one line)."""
    return _dump(summary)


@dataclass(frozen=True)
class JobResult:
    """What a finished compression Job said: a summary (chosen or gate-failed) or an error text."""

    summary: Mapping[str, Any] | None = None
    error: str | None = None

    @property
    def chosen(self) -> bool:
        return self.summary is not None and self.summary.get("status") == STATUS_CHOSEN


def parse_message(message: str | None) -> JobResult:
    """A container's termination message -> JobResult. Anything but a well-formed summary is an error.

    >>> parse_message('{"v": 1, "status": "chosen", "selected": "fp16", "file": "selected/model.onnx"}').chosen
    True
    >>> parse_message("CompressError: model /work/x.onnx: no such file").error
    'CompressError: model /work/x.onnx: no such file'
    >>> parse_message("").error
    'the compression container left no message (killed, or out of memory?)'
    """
    text = (message or "").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if (isinstance(data, dict) and data.get("v") == SUMMARY_VERSION
                and data.get("status") in (STATUS_CHOSEN, STATUS_GATE_FAILED)
                and (data["status"] != STATUS_CHOSEN or (data.get("selected") and data.get("file")))):
            return JobResult(summary=data)
        return JobResult(error=f"the compression container's message is not a result: {text[:300]}")
    if not text:
        return JobResult(error="the compression container left no message (killed, or out of memory?)")
    return JobResult(error=text[-1000:])
