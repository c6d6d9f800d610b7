"""Compression policy: which compressed variant may be served, and which one is.

Why this exists: the compression Job measures every variant (size, accuracy or cosine, latency); what
happens next is a decision, and the decision is the part users argue with ("why was my INT8 model not
served?"). Keeping it a pure function of (variant records, FP32 baseline, gate, select) makes it
table-testable and lets the same text go into the report, the Job's termination message and, later, the
``Compressed`` status condition. Nothing here imports onnx or touches a file.

Also here, because they are pure too: parsing a recipe (``spec.compression``, or a recipe file with the
same shape plus a few Job-only keys) into an ordered list of steps, and :func:`recipe_hash`, the content
address of a compression output.

Records are plain dicts as written to ``report.json``. Keys read here: ``name``, ``technique``,
``size_bytes``, ``accuracy`` (fraction 0..1, classification) or ``cosine`` (mean cosine similarity to the
original model's outputs, embeddings), ``latency_ms`` (``{"1": ms, "32": ms}``; int keys accepted) and
``error`` (set when the variant could not be built).

The gate: a variant passes when ``100 × (FP32 accuracy − its accuracy) ≤ maxAccuracyDrop`` (percentage
points) and its cosine ``≥ minCosine``, for whichever of the two is set. When the recipe sets neither, a
default applies by task (``DEFAULT_MAX_ACCURACY_DROP`` for classification, ``DEFAULT_MIN_COSINE`` for
embeddings) and the gate says so: a compressed model is never served unmeasured.

Selection among the variants that passed: ``smallest`` (file size; ties by latency, then name),
``fastest`` (median latency at the first measured batch size, batch 1 by default; ties by size, then
name), or a variant name / technique name (that variant, or the smallest passing variant of that
technique; if it failed the gate nothing is served, even when others passed: the user asked for it).

Worked example (FP32 accuracy 98.33 %, maxAccuracyDrop 0.3, select smallest; the first test case)::

    fp16         21,373 B  98.33 %   drop 0.00 pt  pass
    int8-dynamic 26,501 B  98.06 %   drop 0.28 pt  pass
    int8-static  15,823 B  97.78 %   drop 0.56 pt  fail: accuracy 97.78% is 0.56 pt below FP32 98.33% (> 0.3 pt allowed)
    -> fp16 chosen (smallest of the 2 variants that passed)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

#: Gate used when the recipe sets neither maxAccuracyDrop nor minCosine (percentage points / cosine).
DEFAULT_MAX_ACCURACY_DROP = 1.0
DEFAULT_MIN_COSINE = 0.99

SELECT_SMALLEST = "smallest"
SELECT_FASTEST = "fastest"

TASK_CLASSIFICATION = "classification"
TASK_EMBEDDING = "embedding"

#: ``spec.compression.quantization.mode`` values; each is also the technique name.
QUANTIZATION_MODES = ("fp16", "int8-dynamic", "int8-static")
#: ``spec.compression.<key>`` -> technique name, for the techniques that are not quantization.
SECTION_TECHNIQUES = {"pruning": "prune", "distillation": "distill"}

EVALUATION_DEFAULTS: Mapping[str, Any] = {"threads": 1, "runs": 50, "warmup": 10, "batchSizes": (1, 32)}
_TOP_KEYS = ("quantization", "pruning", "distillation", "variants", "evaluation", "select", "seed")
_EVALUATION_KEYS = ("dataset", "maxAccuracyDrop", "minCosine", "output", *EVALUATION_DEFAULTS)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$")  # a variant name is also a folder name
_EPS = 1e-9  # accuracies are ratios of integers: compare thresholds without float noise


class RecipeError(ValueError):
    """The recipe cannot be run as written; the message names the field."""


# --- recipe --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gate:
    max_accuracy_drop: float | None = None  #: percentage points
    min_cosine: float | None = None
    source: str = "recipe"  #: "recipe" or "default"

    def describe(self) -> str:
        parts = []
        if self.max_accuracy_drop is not None:
            parts.append(f"maxAccuracyDrop {self.max_accuracy_drop:g} pt")
        if self.min_cosine is not None:
            parts.append(f"minCosine {self.min_cosine:g}")
        text = " and ".join(parts) or "none"
        return text + (" (default)" if self.source == "default" else "")

    def to_dict(self) -> dict:
        return {"maxAccuracyDrop": self.max_accuracy_drop, "minCosine": self.min_cosine, "source": self.source}


@dataclass(frozen=True)
class Step:
    """One variant to build: ``technique`` applied with ``options`` to the original model or to ``source``."""

    name: str
    technique: str
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None  #: an earlier step's name; None = the original (FP32) model

    def to_dict(self) -> dict:
        return {"name": self.name, "technique": self.technique, "from": self.source, "options": dict(self.options)}


@dataclass(frozen=True)
class Recipe:
    steps: tuple[Step, ...]
    gate: Gate = Gate()
    select: str = SELECT_SMALLEST
    dataset: str | None = None
    threads: int = 1
    runs: int = 50
    warmup: int = 10
    batch_sizes: tuple[int, ...] = (1, 32)
    output: str | None = None  #: model output evaluated; None = the first
    seed: int = 0

    def to_dict(self) -> dict:
        """Normalized, JSON-able: defaults filled in, CRD sections expanded to steps. What gets hashed."""
        return {
            "steps": [s.to_dict() for s in self.steps],
            "evaluation": {"dataset": self.dataset, "maxAccuracyDrop": self.gate.max_accuracy_drop,
                           "minCosine": self.gate.min_cosine, "output": self.output, "threads": self.threads,
                           "runs": self.runs, "warmup": self.warmup, "batchSizes": list(self.batch_sizes)},
            "select": self.select, "seed": self.seed,
        }


def _number(value: Any, where: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecipeError(f"recipe: {where}: expected a number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise RecipeError(f"recipe: {where}: {value!r} is outside [{lo if lo is not None else '-inf'}, "
                          f"{hi if hi is not None else 'inf'}]")
    return float(value)


def _integer(value: Any, where: str, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise RecipeError(f"recipe: {where}: expected an integer >= {lo}, got {value!r}")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RecipeError(f"recipe: {where}: expected an object, got {type(value).__name__}")
    return value


def _unknown(keys: Iterable[Any], allowed: Sequence[str], where: str) -> None:
    extra = sorted(str(k) if isinstance(k, str) and k.isprintable() else repr(k) for k in keys if k not in allowed)
    if extra:
        raise RecipeError(f"recipe: {where}: unknown key(s) {', '.join(extra)} (known: {', '.join(allowed)})")


def _steps(data: Mapping[str, Any]) -> list[Step]:
    """CRD sections first (quantization of the original, then pruning/distillation and each quantization
    applied to their output), then the explicit ``variants`` list, in order."""
    steps: list[Step] = []
    quant = data.get("quantization")
    quant_items = [] if quant is None else list(quant) if isinstance(quant, list) else [quant]
    quant_steps = []
    for i, item in enumerate(quant_items):
        where = f"quantization[{i}]" if isinstance(quant, list) else "quantization"
        item = dict(_mapping(item, where))
        mode = item.pop("mode", None)
        if mode not in QUANTIZATION_MODES:
            raise RecipeError(f"recipe: {where}.mode: {mode!r} is not one of {', '.join(QUANTIZATION_MODES)}")
        name = item.pop("name", mode)
        quant_steps.append(Step(name, mode, item))
    steps += quant_steps
    for section, technique in SECTION_TECHNIQUES.items():
        if data.get(section) is None:
            continue
        options = dict(_mapping(data[section], section))
        name = options.pop("name", technique)
        steps.append(Step(name, technique, options))
        steps += [Step(f"{name}+{q.name}", q.technique, q.options, source=name) for q in quant_steps]
    variants = data.get("variants") or []
    if not isinstance(variants, list):
        raise RecipeError("recipe: variants: expected a list")
    for i, item in enumerate(variants):
        item = dict(_mapping(item, f"variants[{i}]"))
        technique = item.pop("technique", None)
        if not isinstance(technique, str) or not technique:
            raise RecipeError(f"recipe: variants[{i}].technique: required (e.g. int8-static)")
        name = item.pop("name", technique)
        source = item.pop("from", None)
        if source is not None and not isinstance(source, str):
            raise RecipeError(f"recipe: variants[{i}].from: expected the name of an earlier variant, got {source!r}")
        steps.append(Step(name, technique, item, source))
    return steps


def parse_recipe(data: Mapping[str, Any], techniques: Iterable[str] | None = None) -> Recipe:
    """Check and normalize a recipe; raise RecipeError naming the field at fault.

    ``data`` has the shape of ``spec.compression`` (``quantization`` may also be a list of such objects,
    each with an optional ``name``), plus ``variants`` (explicit steps: ``{name, technique, from, ...options}``),
    ``seed`` and Job-only evaluation keys (``threads``, ``runs``, ``warmup``, ``batchSizes``, ``output``).
    With ``techniques`` given, every step's technique must be one of them.

    >>> r = parse_recipe({"quantization": {"mode": "int8-static", "perChannel": True},
    ...                   "pruning": {"amount": 0.5}, "evaluation": {"maxAccuracyDrop": 1}})
    >>> [(s.name, s.technique, s.source) for s in r.steps]
    [('int8-static', 'int8-static', None), ('prune', 'prune', None), ('prune+int8-static', 'int8-static', 'prune')]
    """
    data = _mapping(data, "top level")
    _unknown(data, _TOP_KEYS, "top level")
    steps = _steps(data)
    if not steps:
        raise RecipeError("recipe: no techniques (set quantization, pruning, distillation or variants)")
    names: set[str] = set()
    known = None if techniques is None else set(techniques)
    for step in steps:
        if not isinstance(step.name, str) or not _NAME.match(step.name):
            raise RecipeError(f"recipe: variant name {step.name!r}: use letters, digits and _.+- (63 at most)")
        if step.name in names:
            raise RecipeError(f"recipe: variant name {step.name!r} is used twice; give one of them a name")
        if known is not None and step.technique not in known:
            raise RecipeError(f"recipe: variant {step.name}: unknown technique {step.technique!r} "
                              f"(known: {', '.join(sorted(known))})")
        if step.source is not None and step.source not in names:
            raise RecipeError(f"recipe: variant {step.name}: from {step.source!r} names no earlier variant")
        names.add(step.name)

    ev = dict(_mapping(data.get("evaluation") or {}, "evaluation"))
    _unknown(ev, _EVALUATION_KEYS, "evaluation")
    drop = ev.get("maxAccuracyDrop")
    cosine = ev.get("minCosine")
    gate = Gate(None if drop is None else _number(drop, "evaluation.maxAccuracyDrop", 0, 100),
                None if cosine is None else _number(cosine, "evaluation.minCosine", -1, 1))
    batch_sizes = ev.get("batchSizes", EVALUATION_DEFAULTS["batchSizes"])
    if not isinstance(batch_sizes, (list, tuple)) or not batch_sizes:
        raise RecipeError("recipe: evaluation.batchSizes: expected a non-empty list of integers")
    batch_sizes = tuple(_integer(b, "evaluation.batchSizes[]", 1) for b in batch_sizes)
    dataset = ev.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise RecipeError(f"recipe: evaluation.dataset: expected a URI string, got {dataset!r}")
    output = ev.get("output")
    if output is not None and not isinstance(output, str):
        raise RecipeError(f"recipe: evaluation.output: expected an output name, got {output!r}")

    select = data.get("select", SELECT_SMALLEST)
    if not isinstance(select, str) or (select not in (SELECT_SMALLEST, SELECT_FASTEST) and select not in names
                                       and select not in {s.technique for s in steps}):
        raise RecipeError(f"recipe: select: {select!r} is neither smallest, fastest nor a variant or technique "
                          f"of this recipe ({', '.join(s.name for s in steps)})")
    return Recipe(
        steps=tuple(steps), gate=gate, select=select, dataset=dataset,
        threads=_integer(ev.get("threads", EVALUATION_DEFAULTS["threads"]), "evaluation.threads", 1),
        runs=_integer(ev.get("runs", EVALUATION_DEFAULTS["runs"]), "evaluation.runs", 1),
        warmup=_integer(ev.get("warmup", EVALUATION_DEFAULTS["warmup"]), "evaluation.warmup", 0),
        batch_sizes=batch_sizes, output=output,
        seed=_integer(data.get("seed", 0), "seed", 0),
    )


def effective_gate(gate: Gate, task: str) -> Gate:
    """The gate as applied: the recipe's, or the default for the task when it sets neither threshold."""
    if gate.max_accuracy_drop is not None or gate.min_cosine is not None:
        return gate
    if task == TASK_EMBEDDING:
        return Gate(min_cosine=DEFAULT_MIN_COSINE, source="default")
    return Gate(max_accuracy_drop=DEFAULT_MAX_ACCURACY_DROP, source="default")


# --- gate and selection --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One variant against the gate."""

    name: str
    passed: bool
    reasons: tuple[str, ...] = ()
    accuracy_drop_pt: float | None = None

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reasons": list(self.reasons), "accuracyDropPt": self.accuracy_drop_pt}


@dataclass(frozen=True)
class Decision:
    chosen: str | None  #: the variant to serve, None when none may be
    checks: tuple[Check, ...]
    message: str  #: one line with the numbers: goes into the report, the termination log, the status

    @property
    def passed(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if c.passed)

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "passed": list(self.passed), "message": self.message,
                "checks": {c.name: c.to_dict() for c in self.checks}}


def accuracy_drop_pt(baseline: float, accuracy: float) -> float:
    """FP32 accuracy minus the variant's, in percentage points (negative: the variant is better).

    >>> round(accuracy_drop_pt(354 / 360, 352 / 360), 4)
    0.5556
    """
    return 100.0 * (baseline - accuracy)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def check_variant(variant: Mapping[str, Any], baseline: Mapping[str, Any], gate: Gate) -> Check:
    """Does ``variant`` pass ``gate`` against ``baseline`` (the FP32 record)? Reasons carry the numbers."""
    name = variant["name"]
    if variant.get("error"):
        return Check(name, False, (f"not built: {variant['error']}",))
    reasons = []
    drop = None
    acc, base = variant.get("accuracy"), baseline.get("accuracy")
    if acc is not None and base is not None:
        drop = accuracy_drop_pt(base, acc)
    if gate.max_accuracy_drop is not None:
        if drop is None:
            reasons.append("maxAccuracyDrop is set but no accuracy was measured (the dataset has no labels)")
        elif drop > gate.max_accuracy_drop + _EPS:
            reasons.append(f"accuracy {_pct(acc)} is {drop:.2f} pt below FP32 {_pct(base)} "
                           f"(> {gate.max_accuracy_drop:g} pt allowed)")
    if gate.min_cosine is not None:
        cosine = variant.get("cosine")
        if cosine is None:
            reasons.append("minCosine is set but no cosine was measured")
        elif cosine < gate.min_cosine - _EPS:
            reasons.append(f"cosine to the original outputs {cosine:.4f} < {gate.min_cosine:g} required")
    return Check(name, not reasons, tuple(reasons), drop)


def latency(record: Mapping[str, Any], batch: int) -> float:
    """Median latency in ms at ``batch`` (inf when not measured)."""
    lat = record.get("latency_ms") or {}
    value = lat.get(str(batch), lat.get(batch))
    return math.inf if value is None else float(value)


def _summary(v: Mapping[str, Any], baseline: Mapping[str, Any], check: Check, batch: int) -> str:
    parts = [f"{v['size_bytes']:,} bytes"]
    if baseline.get("size_bytes") and v.get("size_bytes"):
        parts[0] += f" ({baseline['size_bytes'] / v['size_bytes']:.2f}× smaller than FP32)"
    if v.get("accuracy") is not None:
        parts.append(f"accuracy {_pct(v['accuracy'])}"
                     + (f" ({0.0 - check.accuracy_drop_pt:+.2f} pt)" if check.accuracy_drop_pt is not None else ""))
    if v.get("cosine") is not None:
        parts.append(f"cosine {v['cosine']:.4f}")
    lat, base_lat = latency(v, batch), latency(baseline, batch)
    if math.isfinite(lat):
        parts.append(f"batch {batch} {lat:.3f} ms" + (f" ({base_lat / lat:.2f}× FP32 speed)"
                                                      if math.isfinite(base_lat) and lat > 0 else ""))
    return ", ".join(parts)


def decide(variants: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any], gate: Gate,
           select: str = SELECT_SMALLEST, latency_batch: int = 1) -> Decision:
    """Gate every variant, then pick one of those that passed according to ``select``.

    ``fastest`` compares median latency at ``latency_batch``. The message explains the outcome with numbers.
    """
    checks = tuple(check_variant(v, baseline, gate) for v in variants)
    by_name = {v["name"]: v for v in variants}
    check_of = {c.name: c for c in checks}
    passing = [by_name[c.name] for c in checks if c.passed]
    failing = "; ".join(f"{c.name}: {' and '.join(c.reasons)}" for c in checks if not c.passed)
    prefix = f"gate {gate.describe()}"

    def smallest_key(v):
        return (v.get("size_bytes", math.inf), latency(v, latency_batch), v["name"])

    if select == SELECT_SMALLEST:
        pool, key, why = passing, smallest_key, "smallest"
    elif select == SELECT_FASTEST:
        pool, why = passing, f"fastest at batch {latency_batch}"
        key = lambda v: (latency(v, latency_batch), v.get("size_bytes", math.inf), v["name"])  # noqa: E731
    else:
        named = [v for v in variants if v["name"] == select] or [v for v in variants if v.get("technique") == select]
        if not named:
            return Decision(None, checks, f"select {select!r} names no variant of this run "
                                          f"({', '.join(by_name) or 'none'})")
        pool, key, why = [v for v in named if check_of[v["name"]].passed], smallest_key, f"select {select}"
        if not pool:
            others = [v["name"] for v in passing]
            failed = "; ".join(f"{v['name']}: {' and '.join(check_of[v['name']].reasons)}" for v in named)
            tail = (f"; passing but not selected: {', '.join(others)}" if others else "")
            return Decision(None, checks, f"{prefix}: selected {select} failed: {failed}{tail}")
    if not pool:
        if not variants:
            return Decision(None, checks, f"{prefix}: no variants were built")
        return Decision(None, checks, f"{prefix}: no variant passed ({len(variants)} tried): {failing}")
    chosen = min(pool, key=key)
    message = (f"{chosen['name']} chosen ({why} of {len(passing)}/{len(variants)} passing {prefix}): "
               f"{_summary(chosen, baseline, check_of[chosen['name']], latency_batch)}")
    return Decision(chosen["name"], checks, message)


# --- content address -----------------------------------------------------------------------------------

def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1 and 1.0 are the same recipe
    return value


def recipe_hash(input_digest: str, recipe: Mapping[str, Any], tool_versions: Mapping[str, str]) -> str:
    """Content address of a compression output: sha256 (hex) over (input model digest, recipe, tool versions).

    Pass the normalized recipe (``parse_recipe(...).to_dict()``) so that spelling differences that mean the
    same thing (key order, ``1`` vs ``1.0``, defaults written out or not) give the same hash; any change in
    technique options, dataset, gate, selection or a tool version gives a new one.

    >>> recipe_hash("sha256:00", {"select": "smallest"}, {"onnxruntime": "1.32.0"})[:16]
    '7fe751d89e9e35fd'
    >>> recipe_hash("sha256:00", {"select": "smallest", "seed": 0.0}, {"onnxruntime": "1.32.0"}) == \\
    ...     recipe_hash("sha256:00", {"seed": 0, "select": "smallest"}, {"onnxruntime": "1.32.0"})
    True
    """
    blob = json.dumps({"input": input_digest, "recipe": _canonical(recipe), "tools": _canonical(tool_versions)},
                      sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()
