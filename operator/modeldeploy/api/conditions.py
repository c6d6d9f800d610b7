"""Condition helpers following the Kubernetes API conventions (metav1.Condition).

``set_condition`` keeps ``lastTransitionTime`` when the status did not change, so a reconcile that
computes the same conditions produces byte-identical status and the operator can skip the write.
The clock is injected (``now``) so tests need no sleeping or patching.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from modeldeploy.api.redact import redact_text


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None = "Unknown"
    reason: str
    message: str

    @property
    def status_str(self) -> str:
        return {True: "True", False: "False", None: "Unknown"}[self.status]


#: Longest condition message kept (the API has no limit, but a message is read in `kubectl get` columns).
MAX_MESSAGE = 1024


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line (newlines and runs of blanks become one space), URIs redacted, cut at
    ``limit``. Every condition message goes through here, and Events are made from conditions.

    A status message is read in ``kubectl get``/``describe`` output and by GitOps tools: a newline in a
    user's input (a URI, a model name) must not push the cause out of sight, and a password or a
    presigned URL's signature must never show (api/redact.py).

    >>> one_line("fetch failed:\n  GET https://u:pw@h/m.onnx?sig=x: 404 Not Found\n")
    'fetch failed: GET https://h/m.onnx?…: 404 Not Found'
    """
    text = " ".join(redact_text(str(message)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_time(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    existing: Iterable[Mapping[str, Any]] | None,
    wanted: Iterable[Condition],
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Return the condition list for ``wanted``, reusing lastTransitionTime from ``existing``.

    Conditions in ``existing`` whose type is not wanted are dropped: the operator owns this list.
    Order follows ``wanted`` so the rendered status is stable.
    """
    previous = {c.get("type"): c for c in (existing or ())}
    result = []
    for cond in wanted:
        old = previous.get(cond.type)
        if old is not None and old.get("status") == cond.status_str and old.get("lastTransitionTime"):
            transition = old["lastTransitionTime"]
        else:
            transition = format_time(now)
        result.append({
            "type": cond.type,
            "status": cond.status_str,
            "observedGeneration": generation,
            "lastTransitionTime": transition,
            "reason": cond.reason,
            "message": one_line(cond.message),
        })
    return result


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None
