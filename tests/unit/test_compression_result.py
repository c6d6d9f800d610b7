"""The compression Job's result summary: fits a termination message, parses back, rejects non-results."""

import json

import pytest

from modeldeploy.policy.compression_result import MAX_MESSAGE, dump, parse_message, summarize


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
                                     '{"v": 2, "status": "chosen"}'),
    ('{"v": 1, "status": "chosen"}', "the compression container's message is not a result: "
                                     '{"v": 1, "status": "chosen"}'),
    ("{not json", "the compression container's message is not a result: {not json"),
])
def test_anything_but_a_summary_is_an_error(message, error):
    parsed = parse_message(message)
    assert parsed.summary is None and parsed.error == error and not parsed.chosen
