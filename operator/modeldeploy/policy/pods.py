"""Why serving pods are not ready, read from their status: the one cause worth showing a user.

Kubernetes spreads the reason a replica does not come up over pod conditions and container
statuses; a user of ``kubectl get md`` should not have to dig. ``diagnose_pods`` picks the most
actionable cause among the pods of a revision, in this order: the model could not be fetched (the
init container failed: its termination message carries the fetcher's one-line cause), a container
crashes or its image cannot be pulled, the scheduler found no node. Pure: pods in, (reason, message)
out.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from modeldeploy.api import constants as c

FETCH_CONTAINER = "fetch-model"
_IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def _terminated_failure(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for key in ("state", "lastState"):
        term = (status.get(key) or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            return term
    return None


def _tail_line(text: str, limit: int = 512) -> str:
    """``text`` as one line, its end kept when too long (the fetcher writes one line, but a message that
    fell back to the container log ends with the cause; a newline inside a URI must not hide it).

    >>> _tail_line("bad uri http://h/a\nb.onnx: 404")
    'bad uri http://h/a b.onnx: 404'
    """
    line = " ".join(text.split())
    return line if len(line) <= limit else "…" + line[-(limit - 1):]


def _fetch_failure(pod: Mapping[str, Any]) -> str | None:
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        term = _terminated_failure(status)
        if term:
            detail = _tail_line(term.get("message") or term.get("reason") or "") or "no message"
            return f"init container {status.get('name')} exited {term.get('exitCode')}: {detail}"
    return None


def _container_failure(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in _IMAGE_REASONS:
            return c.REASON_IMAGE_PULL, f"container {status.get('name')}: {reason}: {waiting.get('message', '')}".strip()
        if reason == "CrashLoopBackOff":
            term = _terminated_failure(status) or {}
            detail = (term.get("message") or term.get("reason") or "").strip()
            return c.REASON_CRASH_LOOP, (f"container {status.get('name')} keeps exiting "
                                         f"(restarts {status.get('restartCount', 0)}): {detail}").strip()
    return None


def _unschedulable(pod: Mapping[str, Any]) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return cond.get("message") or "Unschedulable"
    return None


def diagnose_pods(pods: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The most actionable (reason, message) among ``pods``, or None when nothing is wrong.

    >>> diagnose_pods([{"status": {"conditions": [{"type": "PodScheduled", "reason": "Unschedulable",
    ...                                            "message": "0/4 nodes are available"}]}}])
    ('Unschedulable', 'pods unschedulable: 0/4 nodes are available')
    """
    pods = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    for pod in pods:
        if (failure := _fetch_failure(pod)) is not None:
            return c.REASON_FETCH_FAILED, f"model fetch failed: {failure}"
    for pod in pods:
        if (failure := _container_failure(pod)) is not None:
            return failure
    for pod in pods:
        if (message := _unschedulable(pod)) is not None:
            return c.REASON_UNSCHEDULABLE, f"pods unschedulable: {message}"
    return None
