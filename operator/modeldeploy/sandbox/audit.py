"""Reading the sandbox API server's audit log: which client made which request, and when.

The sandbox's API server logs every request at the Metadata level (cluster.py ``AUDIT_POLICY``):
verb, resource, namespace, name, user agent, timestamps, response code. The operator's requests carry
``modeldeploy-operator/<version> (<identity>)`` as user agent and Kopf's ``kopf/<version>``, so the
log attributes each request to one operator process without estimating anything. The tests that
count requests and the benchmark read it through here.

The API server rotates the log at 100 MB (``audit.log`` is renamed ``audit-<time>.log`` and a new one
started), which a benchmark of 1,000 objects crosses. A :class:`Cursor` therefore remembers the file
by inode, not by name, and reads on through the files rotated since.
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
LOG_NAME = "audit.log"


@dataclass(frozen=True)
class Request:
    verb: str
    resource: str  # "deployments", "modeldeployments/status", ...
    namespace: str
    name: str
    user_agent: str
    code: int
    at: datetime  # when the API server answered (stageTimestamp)
    received: datetime  # when it received the request (requestReceivedTimestamp)
    stage: str
    uri: str

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def parse(lines: Iterable[bytes], stages: tuple[str, ...] = ("ResponseComplete",)) -> Iterator[Request]:
    for line in lines:
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
                      at=_time(event["stageTimestamp"]), received=_time(event["requestReceivedTimestamp"]),
                      stage=event["stage"], uri=event.get("requestURI", ""))


@dataclass(frozen=True)
class Cursor:
    """A place in the audit log of ``log_dir``: the current file's inode and size when marked."""

    log_dir: Path
    inode: int
    offset: int

    @classmethod
    def mark(cls, log_dir: Path) -> "Cursor":
        st = (Path(log_dir) / LOG_NAME).stat()
        return cls(Path(log_dir), st.st_ino, st.st_size)

    def files(self) -> list[tuple[Path, int]]:
        """(file, offset to start at) from the marked file on, oldest first."""
        logs = sorted(self.log_dir.glob("audit*.log"), key=lambda p: (p.name == LOG_NAME, p.name))
        out, started = [], False
        for path in logs:
            if not started and path.stat().st_ino == self.inode:
                started = True
                out.append((path, self.offset))
            elif started:
                out.append((path, 0))
        if not started:  # rotated away and deleted: read what is left
            out = [(path, 0) for path in logs]
        return out

    def read(self, stages: tuple[str, ...] = ("ResponseComplete",)) -> Iterator[Request]:
        """Every request logged since the mark (one ResponseComplete per completed request; add
        ``ResponseStarted`` to see watches that are still open)."""
        for path, offset in self.files():
            with open(path, "rb") as fh:
                fh.seek(offset)
                yield from parse(fh, stages)


def log_dir(sandbox) -> Path:
    """The sandbox's audit log directory (``sandbox`` is a modeldeploy.sandbox.cluster.Sandbox)."""
    found = sorted(Path(sandbox.workdir).rglob(LOG_NAME))
    if not found:
        raise FileNotFoundError(f"the sandbox in {sandbox.workdir} writes no audit log")
    return found[0].parent


def operator_requests(requests: Iterable[Request], namespace: str | None = None) -> list[Request]:
    """The operators' requests (ours and Kopf's), about objects in ``namespace`` when given."""
    return [r for r in requests if r.user_agent.startswith(OPERATOR_AGENTS)
            and (namespace is None or r.namespace == namespace)]


def client_of(user_agent: str, identities: Iterable[str] = ()) -> str:
    """The operator identity in a user agent (``... (bench-a)``), else the client's name (``kopf``).

    >>> client_of("modeldeploy-operator/0.1.0 (bench-a)", ["bench-a"]), client_of("kopf/1.45.2")
    ('bench-a', 'kopf')
    """
    for identity in identities:
        if f"({identity})" in user_agent:
            return identity
    return user_agent.split("/")[0]


def by_verb_and_resource(requests: Iterable[Request]) -> Counter:
    return Counter((r.verb, r.resource) for r in requests)


def table(counts: Counter) -> str:
    return "\n".join(f"  {verb:7} {resource:28} {n}" for (verb, resource), n in sorted(counts.items()))

