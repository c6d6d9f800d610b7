"""In-place model swaps: what the operator tells which pod, from the agents' reports (table-driven)."""

import pytest

from modeldeploy.api import constants as c
from modeldeploy.policy import model_swap as p

WANT = p.Desired("s3://b/v2/model.onnx", 2, "b" * 64)
V1 = {"version": 1, "uri": "s3://b/v1/model.onnx", "sha256": "a" * 64}
V2 = {"version": 2, "uri": "s3://b/v2/model.onnx", "sha256": "b" * 64}


def rep(pod, served, state="Ready", desired=None, message=""):
    return p.PodReport(pod, {"served": served, "desired": desired, "state": state, "message": message})


CASES = {
    "all old: tell the first only": ([rep("a", V1), rep("b", V1)], ("a",), 0, p.REASON_SWAPPING, False),
    "one swapping: wait": ([rep("a", V1, "Swapping", V2), rep("b", V1)], (), 0, p.REASON_SWAPPING, False),
    "one done: next": ([rep("a", V2), rep("b", V1)], ("b",), 1, p.REASON_SWAPPING, False),
    "all done": ([rep("a", V2), rep("b", V2)], (), 2, None, False),
    "failed: stop, stalled": ([rep("a", V1, "Failed", V2, "load of version 2 failed: bad model; still serving "
                                                          "version 1"), rep("b", V1)],
                              (), 0, p.REASON_SWAP_FAILED, True),
    "unreachable agent: others go on": ([p.PodReport("a", None, "connection refused"), rep("b", V1)], ("b",), 0,
                                        p.REASON_AGENT_UNREACHABLE, False),
    "same version, other files: restart": ([rep("a", {**V2, "sha256": "c" * 64})], (), 0, c.REASON_ROLLING_OUT,
                                           False),
    "failed on another target does not block": ([rep("a", V1, "Failed", {**V2, "version": 3})], ("a",), 0,
                                                p.REASON_SWAPPING, False),
}


@pytest.mark.parametrize("case", CASES)
def test_plan(case):
    reports, put, serving, reason, stalled = CASES[case]
    plan = p.plan(WANT, reports)
    assert plan.put == put and plan.serving == serving and plan.total == len(reports)
    assert (plan.condition[0] if plan.condition else None) == reason
    assert bool(plan.condition and plan.condition[2]) == stalled
    assert plan.done == (reason is None)
    assert plan.restart == (case == "same version, other files: restart")


def test_messages_name_the_pod_and_the_cause():
    plan = p.plan(WANT, [rep("a", V2), rep("b", V1, "Failed", V2, "fetch: HTTP 403")])
    assert plan.condition[1] == ("model version 2: 1/2 pods serving it; swap failed on b: fetch: HTTP 403 "
                                 "(the previous version keeps serving there)")
    assert plan.pods == {"a": "serving", "b": "failed"}


def test_body_sent_to_the_agent():
    assert WANT.body() == {"uri": "s3://b/v2/model.onnx", "version": 2, "sha256": "b" * 64}
    assert p.Desired("s3://x", 3).body() == {"uri": "s3://x", "version": 3}


def test_body_carries_the_generation_when_known():
    assert p.Desired("s3://x", 3, generation=12).body() == {"uri": "s3://x", "version": 3, "generation": 12}


PRESIGNED_V2 = "https://h/v2/model.onnx?X-Amz-Signature=NEW"


def seen(uri, version=2):
    """What an agent shows of a served uri: redacted, with the fingerprint of the whole uri."""
    from modeldeploy.api.redact import redact_uri, uri_fingerprint

    return {"version": version, "uri": redact_uri(uri), "sha256": None, "uriFingerprint": uri_fingerprint(uri)}


def test_redacted_reports_are_compared_by_fingerprint():
    want = p.Desired(PRESIGNED_V2, 2)
    done = p.plan(want, [rep("a", seen(PRESIGNED_V2))])
    assert done.done and done.serving == 1
    # the same path, another signature: not the desired files (the redacted uris look the same)
    other = p.plan(want, [rep("a", seen("https://h/v2/model.onnx?X-Amz-Signature=OLD"))])
    assert not other.done and other.restart


def test_docstring_examples():
    import doctest

    assert doctest.testmod(p).failed == 0
