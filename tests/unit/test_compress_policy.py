"""Compression policy, table-driven: gate, selection, recipe parsing, content hash (pure, no I/O)."""

import doctest

import pytest

from modeldeploy.policy import compression
from modeldeploy.policy.compression import (Gate, RecipeError, decide, effective_gate, parse_recipe,
                                            recipe_hash)

BASE = {"name": "fp32", "size_bytes": 40627, "accuracy": 354 / 360, "latency_ms": {"1": 0.018, "32": 0.087}}


def v(name, size, correct=None, b1=0.02, b32=0.1, technique=None, cosine=None, error=None):
    record = {"name": name, "technique": technique or name, "size_bytes": size,
              "latency_ms": {"1": b1, "32": b32}}
    if correct is not None:
        record["accuracy"] = correct / 360
    if cosine is not None:
        record["cosine"] = cosine
    if error:
        record["error"] = error
    return record


FP16 = v("fp16", 21373, 354, b1=0.022, b32=0.093)
DYN = v("int8-dynamic", 26501, 353, b1=0.020, b32=0.093)
STATIC = v("int8-static", 15823, 352, b1=0.028, b32=0.145)
STATIC_OK = v("int8-static", 14996, 354, b1=0.028, b32=0.145)
DYN_ALL = v("int8-dynamic-all", 13810, 353, b1=0.045, b32=0.64, technique="int8-dynamic")
PRUNE = v("prune", 9000, 350, b1=0.012, b32=0.05)
BROKEN = v("prune", None, error="ValueError: amount 2 is outside [0, 0.95]")


@pytest.mark.parametrize("variants,gate,select,chosen", [
    # the worked example of the module docstring
    ([FP16, DYN, STATIC], Gate(0.3), "smallest", "fp16"),
    ([FP16, DYN, STATIC_OK], Gate(0.3), "smallest", "int8-static"),
    ([FP16, DYN, STATIC_OK], Gate(0.3), "fastest", "int8-dynamic"),
    ([FP16, DYN, STATIC], Gate(1.0), "smallest", "int8-static"),
    # 1 image of 360 is 0.2778 pt: within 0.3, outside 0.25; exactly 2 images (0.5556) within 0.5556
    ([DYN], Gate(0.3), "smallest", "int8-dynamic"),
    ([DYN], Gate(0.25), "smallest", None),
    ([STATIC], Gate(100 * 2 / 360), "smallest", "int8-static"),
    ([FP16, DYN, STATIC], Gate(0.0), "smallest", "fp16"),
    # select by variant name, or by technique (smallest passing variant of that technique)
    ([FP16, DYN, DYN_ALL], Gate(0.3), "int8-dynamic", "int8-dynamic"),
    ([FP16, DYN_ALL], Gate(0.3), "int8-dynamic", "int8-dynamic-all"),
    ([FP16, DYN, STATIC], Gate(0.3), "int8-static", None),   # asked for it, it failed: nothing served
    ([FP16, DYN], Gate(0.3), "prune", None),                  # names nothing that was built
    # a variant that was not built never passes, and does not hide the others
    ([BROKEN, FP16], Gate(1.0), "smallest", "fp16"),
    ([BROKEN], Gate(1.0), "smallest", None),
    ([], Gate(1.0), "smallest", None),
    # the fastest variant is taken at batch 1; ties by size
    ([PRUNE, FP16], Gate(2.0), "fastest", "prune"),
    ([v("a", 200, 354, b1=0.01), v("b", 100, 354, b1=0.01)], Gate(0), "fastest", "b"),
    ([v("a", 100, 354, b1=0.02), v("b", 100, 354, b1=0.01)], Gate(0), "smallest", "b"),
])
def test_gate_and_selection(variants, gate, select, chosen):
    assert decide(variants, BASE, gate, select).chosen == chosen


def test_fastest_at_another_batch_size():
    assert decide([FP16, PRUNE, DYN_ALL], BASE, Gate(2.0), "fastest", latency_batch=32).chosen == "prune"
    assert decide([FP16, DYN], BASE, Gate(2.0), "fastest", latency_batch=32).chosen in ("fp16", "int8-dynamic")
    assert decide([v("x", 1, 354, b32=0.2), v("y", 2, 354, b32=0.1)], BASE, Gate(0), "fastest",
                  latency_batch=32).chosen == "y"


def test_refusal_explains_with_numbers():
    d = decide([STATIC, DYN], BASE, Gate(0.0), "smallest")
    assert d.chosen is None and d.passed == ()
    assert d.message == (
        "gate maxAccuracyDrop 0 pt: no variant passed (2 tried): "
        "int8-static: accuracy 97.78% is 0.56 pt below FP32 98.33% (> 0 pt allowed); "
        "int8-dynamic: accuracy 98.06% is 0.28 pt below FP32 98.33% (> 0 pt allowed)")
    assert d.to_dict()["checks"]["int8-static"]["accuracyDropPt"] == pytest.approx(100 * 2 / 360)


def test_refusal_of_the_selected_variant_names_the_others():
    d = decide([FP16, STATIC], BASE, Gate(0.3), "int8-static")
    assert d.chosen is None
    assert d.message == ("gate maxAccuracyDrop 0.3 pt: selected int8-static failed: int8-static: accuracy 97.78% "
                         "is 0.56 pt below FP32 98.33% (> 0.3 pt allowed); passing but not selected: fp16")


def test_choice_message_has_the_numbers():
    d = decide([FP16, DYN, STATIC], BASE, Gate(0.3), "smallest")
    assert d.passed == ("fp16", "int8-dynamic")
    assert d.message == ("fp16 chosen (smallest of 2/3 passing gate maxAccuracyDrop 0.3 pt): 21,373 bytes "
                         "(1.90× smaller than FP32), accuracy 98.33% (+0.00 pt), batch 1 0.022 ms "
                         "(0.82× FP32 speed)")


def test_not_built_reason():
    d = decide([BROKEN], BASE, Gate(1.0))
    assert d.checks[0].reasons == ("not built: ValueError: amount 2 is outside [0, 0.95]",)


@pytest.mark.parametrize("variant,gate,passed,reason", [
    (v("e", 10, cosine=0.995), Gate(min_cosine=0.99), True, None),
    (v("e", 10, cosine=0.95), Gate(min_cosine=0.99), False, "cosine to the original outputs 0.9500 < 0.99 required"),
    (v("e", 10, cosine=0.99), Gate(min_cosine=0.99), True, None),
    (v("e", 10, cosine=0.999), Gate(max_accuracy_drop=1), False,
     "maxAccuracyDrop is set but no accuracy was measured (the dataset has no labels)"),
    (v("c", 10, 354), Gate(min_cosine=0.9), False, "minCosine is set but no cosine was measured"),
    (v("both", 10, 353, cosine=0.97), Gate(0.3, 0.99), False, "cosine to the original outputs 0.9700 < 0.99 required"),
    (v("both", 10, 353, cosine=0.995), Gate(0.3, 0.99), True, None),
])
def test_cosine_gate(variant, gate, passed, reason):
    base = dict(BASE) if variant.get("accuracy") is not None else {"name": "fp32", "size_bytes": 40}
    check = compression.check_variant(variant, base, gate)
    assert check.passed is passed
    assert (check.reasons[-1] if check.reasons else None) == reason


@pytest.mark.parametrize("gate,task,expected", [
    (Gate(), "classification", Gate(max_accuracy_drop=1.0, source="default")),
    (Gate(), "embedding", Gate(min_cosine=0.99, source="default")),
    (Gate(0.5), "embedding", Gate(0.5)),
    (Gate(min_cosine=0.9), "classification", Gate(min_cosine=0.9)),
])
def test_effective_gate(gate, task, expected):
    assert effective_gate(gate, task) == expected


def test_default_gate_is_described_as_such():
    assert effective_gate(Gate(), "classification").describe() == "maxAccuracyDrop 1 pt (default)"
    assert Gate(0.5, 0.99).describe() == "maxAccuracyDrop 0.5 pt and minCosine 0.99"


# --- recipes -------------------------------------------------------------------------------------------

TECHNIQUES = ("fp16", "int8-dynamic", "int8-static", "prune", "distill")


def test_crd_shape_expands_to_steps():
    r = parse_recipe({"quantization": {"mode": "int8-static", "perChannel": True, "calibrationMethod": "Entropy"},
                      "pruning": {"norm": "l1", "amount": 0.5, "fineTuneEpochs": 3},
                      "distillation": {"student": "mlp-small"},
                      "evaluation": {"dataset": "builtin://digits", "maxAccuracyDrop": 1}, "select": "fastest"},
                     TECHNIQUES)
    assert [(s.name, s.technique, s.source, dict(s.options)) for s in r.steps] == [
        ("int8-static", "int8-static", None, {"perChannel": True, "calibrationMethod": "Entropy"}),
        ("prune", "prune", None, {"norm": "l1", "amount": 0.5, "fineTuneEpochs": 3}),
        ("prune+int8-static", "int8-static", "prune", {"perChannel": True, "calibrationMethod": "Entropy"}),
        ("distill", "distill", None, {"student": "mlp-small"}),
        ("distill+int8-static", "int8-static", "distill", {"perChannel": True, "calibrationMethod": "Entropy"}),
    ]
    assert (r.gate, r.select, r.dataset, r.batch_sizes, r.threads, r.runs) == (
        Gate(1.0), "fastest", "builtin://digits", (1, 32), 1, 50)


def test_list_of_quantizations_and_explicit_variants():
    r = parse_recipe({"quantization": [{"mode": "fp16"}, {"mode": "int8-static", "name": "s8-pc", "perChannel": True}],
                      "variants": [{"technique": "int8-dynamic", "opTypes": ["MatMul"]},
                                   {"name": "fp16-of-s8", "technique": "fp16", "from": "fp16"}],
                      "evaluation": {"minCosine": 0.99, "batchSizes": [1, 8], "runs": 5, "threads": 2},
                      "select": "int8-static", "seed": 3})
    assert [(s.name, s.technique, s.source) for s in r.steps] == [
        ("fp16", "fp16", None), ("s8-pc", "int8-static", None), ("int8-dynamic", "int8-dynamic", None),
        ("fp16-of-s8", "fp16", "fp16")]
    assert (r.gate, r.batch_sizes, r.runs, r.threads, r.seed, r.select) == (
        Gate(min_cosine=0.99), (1, 8), 5, 2, 3, "int8-static")


@pytest.mark.parametrize("data,message", [
    ({}, "recipe: no techniques (set quantization, pruning, distillation or variants)"),
    ({"quantisation": {"mode": "fp16"}}, "recipe: top level: unknown key(s) quantisation"),
    ({"quantization": {"mode": "int4"}}, "recipe: quantization.mode: 'int4' is not one of fp16, int8-dynamic, "
                                         "int8-static"),
    ({"quantization": [{"mode": "fp16"}, {"mode": "fp16"}]}, "recipe: variant name 'fp16' is used twice"),
    ({"variants": [{"technique": "sparsify"}]}, "recipe: variant sparsify: unknown technique 'sparsify'"),
    ({"variants": [{"name": "x", "technique": "fp16", "from": "y"}]}, "recipe: variant x: from 'y' names no earlier"),
    ({"variants": [{"name": "../x", "technique": "fp16"}]}, "recipe: variant name '../x'"),
    ({"variants": [{"name": "x"}]}, "recipe: variants[0].technique: required"),
    ({"quantization": {"mode": "fp16"}, "select": "tiniest"}, "recipe: select: 'tiniest' is neither"),
    ({"quantization": {"mode": "fp16"}, "evaluation": {"maxAccuracyDrop": -1}},
     "recipe: evaluation.maxAccuracyDrop: -1 is outside [0, 100]"),
    ({"quantization": {"mode": "fp16"}, "evaluation": {"minCosine": "high"}},
     "recipe: evaluation.minCosine: expected a number"),
    ({"quantization": {"mode": "fp16"}, "evaluation": {"maxAcuracyDrop": 1}},
     "recipe: evaluation: unknown key(s) maxAcuracyDrop"),
    ({"quantization": {"mode": "fp16"}, "evaluation": {"batchSizes": [0]}}, "recipe: evaluation.batchSizes[]"),
    ({"quantization": "fp16"}, "recipe: quantization: expected an object, got str"),
])
def test_recipe_errors_name_the_field(data, message):
    with pytest.raises(RecipeError) as err:
        parse_recipe(data, TECHNIQUES)
    assert str(err.value).startswith(message)


# --- content hash --------------------------------------------------------------------------------------

TOOLS = {"onnx": "1.23.2", "onnxruntime": "1.32.0"}


def test_recipe_hash_is_stable_and_sensitive():
    a = parse_recipe({"quantization": {"mode": "int8-static"}, "evaluation": {"maxAccuracyDrop": 1}})
    same = parse_recipe({"evaluation": {"maxAccuracyDrop": 1.0, "runs": 50, "batchSizes": [1, 32]},
                         "select": "smallest", "quantization": [{"mode": "int8-static"}]})
    h = recipe_hash("sha256:aa", a.to_dict(), TOOLS)
    assert len(h) == 64 and h == recipe_hash("sha256:aa", same.to_dict(), dict(reversed(TOOLS.items())))
    changed = [
        recipe_hash("sha256:ab", a.to_dict(), TOOLS),
        recipe_hash("sha256:aa", a.to_dict(), {**TOOLS, "onnxruntime": "1.33.0"}),
        recipe_hash("sha256:aa", parse_recipe({"quantization": {"mode": "int8-static", "perChannel": True},
                                               "evaluation": {"maxAccuracyDrop": 1}}).to_dict(), TOOLS),
        recipe_hash("sha256:aa", parse_recipe({"quantization": {"mode": "int8-static"},
                                               "evaluation": {"maxAccuracyDrop": 1,
                                                              "dataset": "builtin://digits"}}).to_dict(), TOOLS),
    ]
    assert len({h, *changed}) == 5


def test_docstring_examples():
    assert doctest.testmod(compression).failed == 0
