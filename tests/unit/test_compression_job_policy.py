"""Where a compression Job stands, read from the Job's conditions and its pods (table-driven)."""

import json

import pytest

from modeldeploy.api import constants as c
from modeldeploy.policy import compression_job as p

CHOSEN = {"v": 1, "status": "chosen", "selected": "int8-static", "file": "selected/model.onnx", "sha256": "ab" * 32,
          "message": "int8-static chosen (smallest of 2 that passed)", "baseline": {"sizeBytes": 40000},
          "variants": [{"name": "int8-static", "sizeBytes": 15000, "passed": True}]}
GATE_FAILED = {"v": 1, "status": "gate-failed", "selected": None, "file": None, "sha256": None,
               "message": "gate maxAccuracyDrop 0 pt: no variant passed: prune: accuracy 90.00% is 8.33 pt below",
               "baseline": {"sizeBytes": 40000}, "variants": [{"name": "prune", "passed": False}]}


def job(*conditions, **status):
    return {"metadata": {"name": "modeldeploy-compress-abc"},
            "status": {"conditions": [{"type": t, "status": "True", "reason": r, "message": m}
                                      for t, r, m in conditions], **status}}


def pod(created, exit_code=None, message="", init_exit=None, init_message="", unschedulable=False):
    status = {}
    if exit_code is not None:
        status["containerStatuses"] = [{"name": "compress", "state": {
            "terminated": {"exitCode": exit_code, "message": message, "reason": "Error" if exit_code else "Completed"}}}]
    if init_exit is not None:
        status["initContainerStatuses"] = [{"name": "fetch-model", "state": {
            "terminated": {"exitCode": init_exit, "message": init_message}}}]
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/4 nodes are available: 4 Insufficient cpu."}]
    return {"metadata": {"creationTimestamp": created}, "status": status}


CASES = {
    "running": (job(active=1), [pod("t1")], p.RUNNING, "Job modeldeploy-compress-abc running", None),
    "running after a failed attempt": (job(active=1, failed=1), [pod("t1", 1, "boom"), pod("t2")], p.RUNNING,
                                       "Job modeldeploy-compress-abc running, 1 failed attempt(s)", None),
    "unschedulable": (job(active=1), [pod("t1", unschedulable=True)], p.RUNNING,
                      "Job modeldeploy-compress-abc: pods unschedulable: 0/4 nodes are available: 4 Insufficient cpu.",
                      None),
    "chosen": (job(("Complete", "", "")), [pod("t1", 0, json.dumps(CHOSEN))], p.SUCCEEDED, CHOSEN["message"], CHOSEN),
    "gate failed (podFailurePolicy)": (
        job(("Failed", "PodFailurePolicy", "Container compress for pod x failed with exit code 3")),
        [pod("t1", 3, json.dumps(GATE_FAILED))], p.GATE_FAILED, GATE_FAILED["message"], GATE_FAILED),
    "newest pod decides": (job(("Complete", "", "")), [pod("t1", 1, "CompressError: flaky"),
                                                       pod("t2", 0, json.dumps(CHOSEN))],
                           p.SUCCEEDED, CHOSEN["message"], CHOSEN),
    "error after retries": (
        job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        [pod("t1", 1, "CompressError: dataset builtin://nope: unknown"), pod("t0", 1, "older")], p.FAILED,
        "Job failed (BackoffLimitExceeded: Job has reached the specified backoff limit); last message: "
        "CompressError: dataset builtin://nope: unknown", None),
    "model fetch failed": (
        job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        [pod("t1", init_exit=1, init_message="ChecksumMismatch: sha256 of model.onnx is 00.., expected ab..")],
        p.FAILED, "Job failed (BackoffLimitExceeded: Job has reached the specified backoff limit); last message: "
                  "init container fetch-model exited 1: ChecksumMismatch: sha256 of model.onnx is 00.., expected ab..",
        None),
    "deadline, pod gone": (job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")), [],
                           p.FAILED, "Job failed (DeadlineExceeded: Job was active longer than specified deadline)",
                           None),
    "complete but garbage message": (job(("Complete", "", "")), [pod("t1", 0, "hello")], p.FAILED,
                                     "Job modeldeploy-compress-abc completed without a result: hello", None),
}


@pytest.mark.parametrize("case", CASES)
def test_job_outcome(case):
    the_job, pods, state, message, summary = CASES[case]
    outcome = p.job_outcome(the_job, pods)
    assert (outcome.state, outcome.message, outcome.summary) == (state, message, summary)
    assert outcome.servable == (state == p.SUCCEEDED)


@pytest.mark.parametrize("state,status,reason,hold", [
    (p.RUNNING, None, c.REASON_COMPRESSING, (c.REASON_COMPRESSING, "m", False)),
    (p.SUCCEEDED, True, c.REASON_VARIANT_SELECTED, None),
    (p.GATE_FAILED, False, c.REASON_GATE_FAILED, (c.REASON_GATE_FAILED, "m", True)),
    (p.FAILED, False, c.REASON_COMPRESSION_FAILED, (c.REASON_COMPRESSION_FAILED, "m", True)),
    (p.INVALID, False, c.REASON_INVALID_RECIPE, (c.REASON_INVALID_RECIPE, "m", True)),
])
def test_condition_and_hold(state, status, reason, hold):
    outcome = p.Outcome(state, "m", CHOSEN if state == p.SUCCEEDED else None)
    cond = p.compressed_condition(outcome)
    assert (cond.type, cond.status, cond.reason, cond.message) == (c.COND_COMPRESSED, status, reason, "m")
    assert p.hold_reason(outcome) == hold


def test_status_block_has_the_numbers():
    block = p.status_block("k" * 64, "modeldeploy-compress-kkk", p.from_summary(CHOSEN), cached=True)
    assert block == {"state": "Succeeded", "message": CHOSEN["message"], "key": "k" * 64,
                     "job": "modeldeploy-compress-kkk", "cached": True, "selected": "int8-static",
                     "baseline": {"sizeBytes": 40000}, "variants": CHOSEN["variants"]}
    running = p.status_block("k" * 64, "j", p.Outcome(p.RUNNING, "Job j running"), cached=False)
    assert running == {"state": "Running", "message": "Job j running", "key": "k" * 64, "job": "j"}
