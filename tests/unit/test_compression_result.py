"""The compression Job's result summary: fits a termination message, parses back, rejects non-results."""

import json

import pytest

from modeldeploy.policy.compression_result import (MAX_MESSAGE, SELECTED_FILE, ResultError, dump, parse_message,
                                                   summarize, validate_summary)


def record(name, size, accuracy, passed=True, reasons=()):
    return {"name": name, "technique": name.split("+")[-1], "size_bytes": size, "size_ratio": 40000 / size,
            "accuracy": accuracy, "accuracy_drop_pt": 100 * (0.9833 - accuracy),
            "latency_ms": {1: 0.123456, 32: 1.5}, "gate": {"passed": passed, "reasons": list(reasons)}}


def report(variants, chosen="int8-static"):
    return {"status": "chosen" if chosen else "gate-failed", "selected": "selected/model.onnx" if chosen else None,
            "decision": {"chosen": chosen, "message": f"{chosen} chosen" if chosen else "none passed"},
            "baseline": {"size_bytes": 40000, "accuracy": 0.9833, "latency_ms": {1: 0.2, 32: 3.0}},
            "variants": variants}


def test_a_chosen_result_round_trips_with_numbers_rounded():
    s = summarize(report([record("int8-static", 15000, 0.9833)]), "a" * 64)
    parsed = parse_message(dump(s))
    assert parsed.chosen and parsed.error is None
    v = parsed.summary["variants"][0]
    assert v == {"name": "int8-static", "technique": "int8-static", "sizeBytes": 15000, "sizeRatio": 2.67,
                 "accuracy": 0.9833, "accuracyDropPt": 0.0, "latencyMs": {"1": 0.123, "32": 1.5}, "passed": True}
    assert parsed.summary["sha256"] == "a" * 64 and parsed.summary["file"] == "selected/model.onnx"


def test_a_gate_failure_carries_the_reasons_and_no_file():
    s = summarize(report([record("prune", 9000, 0.90, False, ["accuracy 90.00% is 8.33 pt below"])], chosen=None),
                  "ignored")
    parsed = parse_message(dump(s))
    assert not parsed.chosen and parsed.summary["status"] == "gate-failed"
    assert (parsed.summary["file"], parsed.summary["sha256"], parsed.summary["selected"]) == (None, None, None)
    assert parsed.summary["variants"][0]["reason"] == "accuracy 90.00% is 8.33 pt below"


def test_a_failed_variant_keeps_its_error():
    s = summarize(report([{"name": "distill", "technique": "distill", "error": "ValueError: no student"}]))
    assert s["variants"] == [{"name": "distill", "technique": "distill", "passed": False,
                              "error": "ValueError: no student"}]


@pytest.mark.parametrize("count", [1, 20, 60, 400])
def test_always_fits_the_termination_message(count):
    variants = [record(f"variant-with-a-long-name-{i:03d}", 10000 + i, 0.97, i % 2 == 0,
                       ["a reason that is long enough to cost bytes " * 3]) for i in range(count)]
    text = dump(summarize(report(variants), "f" * 64))
    assert len(text.encode()) <= MAX_MESSAGE
    parsed = parse_message(text).summary
    kept = len(parsed["variants"])
    assert kept + parsed.get("truncated", 0) == count
    if count == 1:
        assert "latencyMs" in parsed["variants"][0] and "truncated" not in parsed


def test_an_enormous_decision_message_is_cut_not_dropped():
    r = report([], chosen="x")
    r["decision"]["message"] = "m" * 10000
    text = dump(summarize(r))
    assert len(text) <= MAX_MESSAGE and json.loads(text)["message"].endswith("...")


@pytest.mark.parametrize("message,error", [
    ("CompressError: dataset builtin://nope: unknown", "CompressError: dataset builtin://nope: unknown"),
    ("", "the compression container left no message (killed, or out of memory?)"),
    (None, "the compression container left no message (killed, or out of memory?)"),
    ('{"v": 2, "status": "chosen"}', "the compression container's message is not a result: "
                                     '{"v": 2, "status": "chosen"} (v: must be 1, got 2)'),
    ('{"v": 1, "status": "chosen"}', "the compression container's message is not a result: "
                                     '{"v": 1, "status": "chosen"} (selected: must name the chosen variant, got None)'),
    ("{not json", "the compression container's message is not a result: {not json"),
])
def test_anything_but_a_summary_is_an_error(message, error):
    parsed = parse_message(message)
    assert parsed.summary is None and parsed.error == error and not parsed.chosen


GOOD = {"v": 1, "status": "chosen", "selected": "prune+int8-static", "file": "selected/model.onnx", "sha256": "ab" * 32,
        "message": "prune+int8-static chosen", "baseline": {"sizeBytes": 40627, "accuracy": 0.98, "latencyMs": {"1": 0.2}},
        "variants": [{"name": "prune+int8-static", "technique": "int8-static", "sizeBytes": 8791, "sizeRatio": 4.62,
                      "accuracy": 0.9778, "accuracyDropPt": -0.56, "latencyMs": {"1": 0.1, "32": 1.2}, "passed": True}]}


def test_a_summary_this_operator_writes_validates_unchanged():
    s = summarize(report([record("int8-static", 15000, 0.9833)]), "a" * 64)
    assert validate_summary(json.loads(dump(s))) == json.loads(dump(s))
    assert validate_summary(GOOD) == GOOD
    assert SELECTED_FILE == "selected/model.onnx"


@pytest.mark.parametrize("change, field", [
    ({"file": "evil/model.onnx"}, "file"),
    ({"file": "../../other-key/selected/model.onnx"}, "file"),
    ({"file": "selected/../../x/model.onnx"}, "file"),
    ({"file": None}, "file"),
    ({"selected": "../x"}, "selected"),
    ({"selected": "a/b"}, "selected"),
    ({"selected": None}, "selected"),
    ({"sha256": "not-a-digest"}, "sha256"),
    ({"sha256": None}, "sha256"),
    ({"status": "done"}, "status"),
    ({"v": 2}, "v"),
    ({"baseline": "big"}, "baseline"),
    ({"baseline": {"sizeBytes": -1}}, "baseline.sizeBytes"),
    ({"baseline": {"accuracy": float("nan")}}, "baseline.accuracy"),
    ({"baseline": {"latencyMs": {"x": 1}}}, "baseline.latencyMs"),
    ({"variants": "all"}, "variants"),
    ({"variants": [{"name": "a/b"}]}, "variants[0].name"),
    ({"variants": [{"name": "a", "sizeRatio": float("inf")}]}, "variants[0].sizeRatio"),
    ({"variants": [{"name": "a", "passed": "yes"}]}, "variants[0].passed"),
    ({"truncated": -3}, "truncated"),
])
def test_a_forged_or_broken_summary_is_refused_naming_the_field(change, field):
    with pytest.raises(ResultError) as err:
        validate_summary({**GOOD, **change})
    assert err.value.field == field


def test_a_gate_failure_has_no_file_and_no_selection():
    failed = {**GOOD, "status": "gate-failed", "selected": None, "file": None, "sha256": None}
    assert validate_summary(failed)["file"] is None
    with pytest.raises(ResultError, match="file"):
        validate_summary({**failed, "file": "selected/model.onnx"})


def test_only_known_bounded_fields_are_kept():
    forged = {**GOOD, "evil": {"nested": "x" * 100_000}, "message": "line one\nline two " + "m" * 5000,
              "baseline": {**GOOD["baseline"], "extra": [1, 2, 3], "latencyMs": {str(b): 1.0 for b in range(1, 100)}},
              "variants": [{**GOOD["variants"][0], "name": f"v{i}", "hack": True, "reason": "r" * 5000,
                            "error": "e" * 5000, "technique": "t" * 500} for i in range(500)]}
    out = validate_summary(forged)
    assert "evil" not in out and "extra" not in out["baseline"]
    assert "\n" not in out["message"] and len(out["message"]) <= 1000
    assert len(out["baseline"]["latencyMs"]) <= 16
    assert len(out["variants"]) <= 64 and out["truncated"] == 500 - len(out["variants"])
    v = out["variants"][0]
    assert "hack" not in v and len(v["reason"]) <= 300 and len(v["error"]) <= 200 and len(v["technique"]) <= 64
    assert len(json.dumps(out)) < 64 * 1024


def test_the_message_shows_no_credentials():
    out = validate_summary({**GOOD, "message": "dataset https://u:PW@h/d.npz?sig=S: 403"})
    assert out["message"] == "dataset https://h/d.npz?…: 403"


@pytest.mark.parametrize("message", [
    json.dumps({**GOOD, "file": "../escape/model.onnx"}),
    json.dumps({**GOOD, "variants": [{"name": "x", "sizeBytes": "huge"}]}),
    '{"v": 1, "status": "chosen", "selected": "x", "file": "selected/model.onnx", "sha256": NaN}',
])
def test_a_termination_message_goes_through_the_same_validation(message):
    parsed = parse_message(message)
    assert parsed.summary is None and parsed.error.startswith("the compression container's message is not a result: ")


def test_docstring_examples():
    import doctest

    from modeldeploy.policy import compression_result

    assert doctest.testmod(compression_result).failed == 0
