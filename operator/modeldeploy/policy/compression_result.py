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

Nothing read back is trusted as it comes (a termination message, a cache record someone may have
written): :func:`validate_summary` keeps only the known fields, each checked and bounded (numbers
finite and in range, strings one line and cut, at most 64 variants), and the served file is always
``selected/model.onnx`` under the content key, never a path from the document. The operator serves
``pvc://<claim>/<key>/selected/model.onnx`` whatever the document says (render/compression_job.py).

Shape (camelCase: it is copied into the Kubernetes status as is)::

    {"v": 1, "status": "chosen" | "gate-failed", "selected": "prune+int8-static" | null,
     "file": "selected/model.onnx" | null, "sha256": "<selected file>" | null, "message": "<decision>",
     "baseline": {"sizeBytes", "accuracy" | "cosine", "latencyMs": {"1": ms, "32": ms}},
     "variants": [{"name", "technique", "sizeBytes", "sizeRatio", "accuracy", "accuracyDropPt", "cosine",
                   "latencyMs", "passed", "reason", "error"}], "truncated": n}
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from modeldeploy.api.redact import redact_text

SUMMARY_VERSION = 1
MAX_MESSAGE = 4096  # what the kubelet keeps of a termination message
STATUS_CHOSEN = "chosen"
STATUS_GATE_FAILED = "gate-failed"
#: The only file a chosen result may name: ``<store>/<key>/selected/model.onnx`` (compress/command.py).
SELECTED_FILE = "selected/model.onnx"
MAX_VARIANTS = 64
MAX_LATENCIES = 16
MAX_DECISION = 1000
_VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$")  # as policy/compression.py: also a folder name
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BATCH = re.compile(r"^[0-9]{1,6}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


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


class ResultError(ValueError):
    """A result document that cannot be trusted; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


def _text(value: Any, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ResultError(field, f"must be a string, got {type(value).__name__}")
    line = _CONTROL.sub(" ", redact_text(value)).strip()
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _number(value: Any, field: str, lo: float, hi: float, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ResultError(field, f"must be {'an integer' if integer else 'a number'}, got {value!r}"[:120])
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ResultError(field, f"must be between {lo:g} and {hi:g}, got {value!r}")
    return value


def _latencies(value: Any, field: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ResultError(field, "must be an object {batch size: milliseconds}")
    out: dict[str, float] = {}
    for batch in sorted(value, key=lambda b: (len(str(b)), str(b)))[:MAX_LATENCIES]:
        if not isinstance(batch, str) or not _BATCH.match(batch):
            raise ResultError(field, f"batch size {batch!r} is not a number")
        out[batch] = _number(value[batch], f"{field}.{batch}", 0, 1e9)
    return out


_QUALITY = {"sizeBytes": (0, 2**62, True), "sizeRatio": (1e-9, 1e9, False), "accuracy": (0, 1, False),
            "accuracyDropPt": (-100, 100, False), "cosine": (-1, 1, False)}


def _measures(data: Mapping[str, Any], field: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (lo, hi, integer) in _QUALITY.items():
        if data.get(key) is not None:
            out[key] = _number(data[key], f"{field}.{key}", lo, hi, integer)
        elif key in data:
            out[key] = None
    if data.get("latencyMs") is not None:
        out["latencyMs"] = _latencies(data["latencyMs"], f"{field}.latencyMs")
    return out


def _checked_variant(data: Any, field: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ResultError(field, "must be an object")
    name = data.get("name")
    if not isinstance(name, str) or not _VARIANT_NAME.match(name):
        raise ResultError(f"{field}.name", f"must be a variant name (letters, digits, _.+-), got {name!r}"[:120])
    out: dict[str, Any] = {"name": name}
    if data.get("technique") is not None:
        out["technique"] = _text(data["technique"], f"{field}.technique", 64)
    out.update(_measures(data, field))
    passed = data.get("passed", False)
    if not isinstance(passed, bool):
        raise ResultError(f"{field}.passed", f"must be true or false, got {passed!r}"[:120])
    out["passed"] = passed
    for key, limit in (("reason", 300), ("error", 200)):
        if data.get(key) is not None:
            out[key] = _text(data[key], f"{field}.{key}", limit)
    return out


def validate_summary(data: Any) -> dict[str, Any]:
    """A result document (termination message or cache record) as far as it can be trusted: only the
    known fields, each checked and bounded; ResultError naming the first field that is wrong. A chosen
    result must name exactly :data:`SELECTED_FILE`, a gate failure no file at all.

    >>> validate_summary({"v": 1, "status": "chosen", "selected": "fp16", "file": "../x", "sha256": "ab" * 32})
    Traceback (most recent call last):
    ...
    modeldeploy.policy.compression_result.ResultError: file: must be selected/model.onnx for a chosen variant, got '../x'
    """
    if not isinstance(data, Mapping):
        raise ResultError("summary", "must be a JSON object")
    if data.get("v") != SUMMARY_VERSION or isinstance(data.get("v"), bool):
        raise ResultError("v", f"must be {SUMMARY_VERSION}, got {data.get('v')!r}"[:120])
    status = data.get("status")
    if status not in (STATUS_CHOSEN, STATUS_GATE_FAILED):
        raise ResultError("status", f"must be {STATUS_CHOSEN} or {STATUS_GATE_FAILED}, got {status!r}"[:120])
    chosen = status == STATUS_CHOSEN
    selected, file, sha = data.get("selected"), data.get("file"), data.get("sha256")
    if chosen:
        if not isinstance(selected, str) or not _VARIANT_NAME.match(selected):
            raise ResultError("selected", f"must name the chosen variant, got {selected!r}"[:120])
        if file != SELECTED_FILE:
            raise ResultError("file", f"must be {SELECTED_FILE} for a chosen variant, got {file!r}"[:120])
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise ResultError("sha256", f"must be the 64 hex digits of the chosen file, got {sha!r}"[:120])
    else:
        for key, value in (("selected", selected), ("file", file), ("sha256", sha)):
            if value is not None:
                raise ResultError(key, "must be null when no variant passed")
    baseline = data.get("baseline") or {}
    if not isinstance(baseline, Mapping):
        raise ResultError("baseline", "must be an object")
    variants = data.get("variants") or []
    if not isinstance(variants, list):
        raise ResultError("variants", "must be a list")
    truncated = data.get("truncated", 0)
    truncated = _number(truncated, "truncated", 0, 10**6, integer=True) if truncated is not None else 0
    out: dict[str, Any] = {
        "v": SUMMARY_VERSION, "status": status, "selected": selected, "file": file, "sha256": sha,
        "message": _text(data.get("message") or "", "message", MAX_DECISION),
        "baseline": _measures(baseline, "baseline"),
        "variants": [_checked_variant(v, f"variants[{i}]") for i, v in enumerate(variants[:MAX_VARIANTS])],
    }
    truncated += max(0, len(variants) - MAX_VARIANTS)
    if truncated or "truncated" in data:
        out["truncated"] = truncated
    return out


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

    >>> parse_message('{"v": 1, "status": "chosen", "selected": "fp16", "file": "selected/model.onnx", '
    ...               '"sha256": "' + "ab" * 32 + '"}').chosen
    True
    >>> parse_message('{"v": 1, "status": "chosen", "selected": "fp16", "file": "../x"}').error.split(" (")[-1]
    "file: must be selected/model.onnx for a chosen variant, got '../x')"
    >>> parse_message("CompressError: model /work/x.onnx: no such file").error
    'CompressError: model /work/x.onnx: no such file'
    >>> parse_message("").error
    'the compression container left no message (killed, or out of memory?)'
    """
    text = redact_text((message or "").strip())
    if text.startswith("{"):
        try:
            return JobResult(summary=validate_summary(json.loads(text)))
        except ValueError as err:  # not JSON, or a ResultError
            why = f" ({err})" if isinstance(err, ResultError) else ""
            return JobResult(error=f"the compression container's message is not a result: {text[:300]}{why}")
    if not text:
        return JobResult(error="the compression container left no message (killed, or out of memory?)")
    return JobResult(error=text[-1000:])


# --- whose result to trust ------------------------------------------------------------------------------
# The cache record's name and the Job's name are computable from public inputs (the content key), so
# anyone who may create ConfigMaps in the namespace could write a "result". A result is trusted only when
# the Job this operator created for the key vouches for it: the record is owned by that Job (its uid),
# and the Job carries the key and a ModelDeployment as its controller. Creating a Job takes more rights
# than writing a ConfigMap, and whoever may run pods next to the store could change the files anyway.

def _controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((ref for ref in (obj.get("metadata") or {}).get("ownerReferences") or () if ref.get("controller")),
                None)


def job_problem(job: Mapping[str, Any], key: str, job_name: str, owner_kind: str, annotation: str) -> str | None:
    """Why ``job`` is not one this operator created for ``key`` (None when it is): its name, the key
    annotation, a ModelDeployment (``owner_kind``) as its controller, and a uid.

    >>> job_problem({"metadata": {"name": "j", "uid": "1", "annotations": {"k": "K"},
    ...              "ownerReferences": [{"kind": "ModelDeployment", "controller": True}]}}, "K", "j", "ModelDeployment", "k")
    >>> job_problem({"metadata": {"name": "j", "uid": "1"}}, "K", "j", "ModelDeployment", "k")
    'Job j was not created by modeldeploy for this content key (no matching key annotation)'
    """
    meta = job.get("metadata") or {}
    name = meta.get("name", job_name)
    if name != job_name or (meta.get("annotations") or {}).get(annotation) != key:
        return f"Job {name} was not created by modeldeploy for this content key (no matching key annotation)"
    controller = _controller(job)
    if not controller or controller.get("kind") != owner_kind:
        return f"Job {name} was not created by modeldeploy for this content key (not controlled by a {owner_kind})"
    if not meta.get("uid"):
        return f"Job {name} has no uid"
    return None


def record_vouched(record: Mapping[str, Any], job: Mapping[str, Any] | None) -> bool:
    """True when the cache ``record`` is owned by ``job`` (same name and uid): the Job that produced it.

    >>> job = {"metadata": {"name": "j", "uid": "1"}}
    >>> record_vouched({"metadata": {"ownerReferences": [{"kind": "Job", "name": "j", "uid": "1"}]}}, job)
    True
    >>> record_vouched({"metadata": {"ownerReferences": [{"kind": "Job", "name": "j", "uid": "2"}]}}, job)
    False
    """
    if job is None:
        return False
    meta = job.get("metadata") or {}
    return any(ref.get("kind") == "Job" and ref.get("name") == meta.get("name") and ref.get("uid") == meta.get("uid")
               for ref in (record.get("metadata") or {}).get("ownerReferences") or ())


def own_pods(job: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods the Job controller made for ``job`` (controller reference to its uid); a pod that only
    carries the job-name label is not one of them."""
    uid = (job.get("metadata") or {}).get("uid")
    return [p for p in pods if uid and (_controller(p) or {}).get("uid") == uid]
