"""Where a compression stands, and what the ModelDeployment's status says about it. Pure.

Inputs are what the reconciler can read: the Job (its ``Complete``/``Failed`` conditions), the Job's
pods (the ``compress`` container's termination message carries the result, an init container's the
fetch error), and the cache record of an earlier Job with the same key. Output is an
:class:`Outcome` (Running, Succeeded, GateFailed, Failed), the ``Compressed`` condition and the
``status.compression`` block.

Why the Job's own conditions decide "finished", not the pods: with ``backoffLimit`` a failed pod is
followed by another, and with ``podFailurePolicy`` exit code 3 ends the Job at once; only the Job
controller knows which failure was the last.

Worked example: a Job with condition Failed (reason PodFailurePolicy) whose pod's ``compress``
container terminated with exit code 3 and the message ``{"v":1,"status":"gate-failed",...}`` gives
GateFailed, the ``Compressed`` condition False with reason CompressionGateFailed and the decision's
numbers as its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from modeldeploy.api import constants as c
from modeldeploy.api.conditions import Condition, find
from modeldeploy.policy.compression_result import STATUS_CHOSEN, STATUS_GATE_FAILED, parse_message
from modeldeploy.policy.pods import diagnose_pods

RUNNING = "Running"
SUCCEEDED = "Succeeded"
GATE_FAILED = "GateFailed"
FAILED = "Failed"
INVALID = "Invalid"
COMPRESS_CONTAINER = "compress"


@dataclass(frozen=True)
class Outcome:
    state: str
    message: str
    summary: Mapping[str, Any] | None = None

    @property
    def servable(self) -> bool:
        return self.state == SUCCEEDED and self.summary is not None


def from_summary(summary: Mapping[str, Any]) -> Outcome:
    """A finished result (the Job's, or the cache record's) -> Outcome."""
    state = SUCCEEDED if summary.get("status") == STATUS_CHOSEN else GATE_FAILED
    return Outcome(state, str(summary.get("message", "")), summary)


def _true(job: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    cond = find((job.get("status") or {}).get("conditions"), ctype)
    return cond if cond and cond.get("status") == "True" else None


def _newest_first(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)


def _terminated(pod: Mapping[str, Any], key: str, name: str | None = None) -> Mapping[str, Any] | None:
    for status in (pod.get("status") or {}).get(key) or []:
        if name is not None and status.get("name") != name:
            continue
        term = (status.get("state") or {}).get("terminated")
        if term and (name is not None or term.get("exitCode", 0) != 0):
            return {**term, "container": status.get("name")}
    return None


def last_message(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The most telling termination message of the Job's pods: the newest pod's ``compress`` container,
    else its failed init container (``fetch-model``: the model could not be fetched)."""
    for pod in _newest_first(pods):
        term = _terminated(pod, "containerStatuses", COMPRESS_CONTAINER)
        if term is not None:
            return term.get("message") or term.get("reason") or f"exit code {term.get('exitCode')}"
        init = _terminated(pod, "initContainerStatuses")
        if init is not None:
            detail = (init.get("message") or init.get("reason") or "").strip()
            return f"init container {init['container']} exited {init.get('exitCode')}: {detail}"
    return None


def job_outcome(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Outcome:
    """Where the Job stands, from its conditions and its pods.

    >>> job_outcome({"status": {"active": 1}}, []).state
    'Running'
    >>> job_outcome({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
    ...     "message": "Job was active longer than specified deadline"}]}}, []).message
    'Job failed (DeadlineExceeded: Job was active longer than specified deadline)'
    """
    name = (job.get("metadata") or {}).get("name", "the compression Job")
    complete, failed = _true(job, "Complete"), _true(job, "Failed")
    if not complete and not failed:
        problem = diagnose_pods(pods)
        status = job.get("status") or {}
        if problem:
            return Outcome(RUNNING, f"Job {name}: {problem[1]}")
        retries = f", {status['failed']} failed attempt(s)" if status.get("failed") else ""
        return Outcome(RUNNING, f"Job {name} running{retries}")
    message = last_message(pods)
    result = parse_message(message) if message is not None else None
    if complete:
        if result is not None and result.chosen:
            return from_summary(result.summary)  # type: ignore[arg-type]
        return Outcome(FAILED, f"Job {name} completed without a result: "
                               f"{result.error if result else 'its pod is gone'}")
    if result is not None and result.summary is not None and result.summary.get("status") == STATUS_GATE_FAILED:
        return from_summary(result.summary)
    why = f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".rstrip(": ")  # type: ignore[union-attr]
    detail = f"; last message: {result.error}" if result is not None and result.error else ""
    return Outcome(FAILED, f"Job failed ({why}){detail}")


_CONDITION = {
    RUNNING: (None, c.REASON_COMPRESSING),
    SUCCEEDED: (True, c.REASON_VARIANT_SELECTED),
    GATE_FAILED: (False, c.REASON_GATE_FAILED),
    FAILED: (False, c.REASON_COMPRESSION_FAILED),
    INVALID: (False, c.REASON_INVALID_RECIPE),
}


def compressed_condition(outcome: Outcome) -> Condition:
    """``Compressed``: True once a variant passed and was chosen; Unknown while the Job runs."""
    status, reason = _CONDITION[outcome.state]
    return Condition(c.COND_COMPRESSED, status, reason, outcome.message)


def hold_reason(outcome: Outcome) -> tuple[str, str, bool] | None:
    """(reason, message, needs a person) when the rollout must wait or stop; None when servable."""
    if outcome.servable:
        return None
    _, reason = _CONDITION[outcome.state]
    return reason, outcome.message, outcome.state != RUNNING


def status_block(key: str | None, job: str | None, outcome: Outcome, cached: bool) -> dict[str, Any]:
    """``status.compression``: the state, the decision and every variant's numbers."""
    block: dict[str, Any] = {"state": outcome.state, "message": outcome.message}
    if key:
        block["key"] = key
    if job:
        block["job"] = job
    if outcome.summary is not None:
        block["cached"] = cached
        if outcome.summary.get("selected"):
            block["selected"] = outcome.summary["selected"]
        block["baseline"] = dict(outcome.summary.get("baseline") or {})
        block["variants"] = [dict(v) for v in outcome.summary.get("variants") or ()]
    return block
