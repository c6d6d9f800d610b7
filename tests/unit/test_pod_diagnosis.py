"""diagnose_pods: the most actionable reason a revision's pods are not ready, table-driven."""

import pytest

from modeldeploy.policy.pods import diagnose_pods

UNSCHEDULABLE = {"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                            "message": "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."}]}}
FETCH_FAILED = {"status": {"initContainerStatuses": [{
    "name": "fetch-model", "state": {"terminated": {"exitCode": 1, "reason": "Error",
                                                    "message": "SourceError: GET https://h/m.onnx: 404 Not Found\n"}}}]}}
FETCH_BACKOFF = {"status": {"initContainerStatuses": [{
    "name": "fetch-model", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
    "lastState": {"terminated": {"exitCode": 1, "message": "ChecksumMismatch: expected aa, got bb"}}}]}}
FETCH_OK = {"status": {"initContainerStatuses": [{"name": "fetch-model",
                                                  "state": {"terminated": {"exitCode": 0}}}]}}
IMAGE = {"status": {"containerStatuses": [{"name": "triton", "state": {"waiting": {
    "reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}}
CRASH = {"status": {"containerStatuses": [{"name": "triton", "restartCount": 4,
                                           "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                           "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}
DELETING = {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, **FETCH_FAILED}


@pytest.mark.parametrize("pods,reason,fragment", [
    ([], None, None),
    ([FETCH_OK], None, None),
    ([UNSCHEDULABLE], "Unschedulable", "5 Insufficient nvidia.com/gpu"),
    ([FETCH_FAILED], "ModelFetchFailed", "init container fetch-model exited 1: SourceError: GET https://h/m.onnx: 404"),
    ([FETCH_BACKOFF], "ModelFetchFailed", "ChecksumMismatch: expected aa, got bb"),
    ([IMAGE], "ImagePullFailed", "ImagePullBackOff"),
    ([CRASH], "CrashLoop", "restarts 4"),
    ([UNSCHEDULABLE, CRASH, FETCH_FAILED], "ModelFetchFailed", "404"),  # fetch failures first
    ([UNSCHEDULABLE, IMAGE], "ImagePullFailed", "ImagePullBackOff"),  # then container failures
    ([DELETING], None, None),  # pods on their way out do not count
])
def test_diagnosis(pods, reason, fragment):
    result = diagnose_pods(pods)
    if reason is None:
        assert result is None
    else:
        assert result[0] == reason
        assert fragment in result[1]
