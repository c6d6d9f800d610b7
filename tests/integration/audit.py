"""Reading the sandbox API server's audit log: which client made which request, when.

The sandbox writes every request at the Metadata level (modeldeploy/sandbox/cluster.py AUDIT_POLICY):
verb, resource, namespace, name, user agent, timestamps, response code. The operator's requests carry
``modeldeploy-operator/<version> (<identity>)`` as user agent, Kopf's ``kopf/<version>``, so the log
attributes each request to one operator process without estimating anything.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

OPERATOR_AGENTS = ("modeldeploy-operator/", "kopf/")
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class Request:
    verb: str
    resource: str  # "deployments", "modeldeployments/status", ...
    namespace: str
    name: str
    user_agent: str
    code: int
    at: datetime  # when the API server answered (stageTimestamp)
    uri: str
    received: datetime  # when the API server received it (requestReceivedTimestamp)
    stage: str = "ResponseComplete"

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS


def audit_log(sandbox) -> Path:
    found = sorted(sandbox.workdir.rglob("audit.log"))
    assert found, f"the sandbox in {sandbox.workdir} writes no audit log"
    return found[0]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def read(log: Path, offset: int = 0, stages: tuple[str, ...] = ("ResponseComplete",)) -> Iterator[Request]:
    """Requests logged after byte ``offset``: one ResponseComplete event per completed request; add
    ``ResponseStarted`` to see watches that are still open."""
    with open(log, "rb") as fh:
        fh.seek(offset)
        for line in fh:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written
            if event.get("stage") not in stages:
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "")
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            yield Request(verb=event.get("verb", ""), resource=resource, namespace=ref.get("namespace", ""),
                          name=ref.get("name", ""), user_agent=event.get("userAgent", ""),
                          code=(event.get("responseStatus") or {}).get("code", 0),
                          at=_time(event["stageTimestamp"]), uri=event.get("requestURI", ""),
                          received=_time(event["requestReceivedTimestamp"]), stage=event["stage"])


def operator_requests(log: Path, offset: int, namespace: str) -> list[Request]:
    """The operators' (ours and Kopf's) requests about objects in ``namespace``."""
    return [r for r in read(log, offset) if r.namespace == namespace and r.user_agent.startswith(OPERATOR_AGENTS)]


def by_verb_and_resource(requests: Iterable[Request]) -> Counter:
    return Counter((r.verb, r.resource) for r in requests)


def table(counts: Counter) -> str:
    return "\n".join(f"  {verb:7} {resource:28} {n}" for (verb, resource), n in sorted(counts.items()))
