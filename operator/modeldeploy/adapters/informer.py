"""List-then-watch of one kind, one event at a time: client-go's reflector, for the operator's children.

Why not Kopf's watches for the children (Deployments, pods, ConfigMaps, Services, compression Jobs):
Kopf hands every event of every object to a per-object asyncio worker without back-pressure, and
keeps a deep copy of each body for its change-detecting handlers (which this operator does not use).
A leader that starts with 1,000 ModelDeployments receives about 5,000 such objects at once; held
whole in Kopf's queues, they made its peak memory 370–390 MiB (docs/benchmarks.md, "Fleet scale").
Here each page of the initial list (:attr:`Informer.PAGE` objects) and then each watch event is
handed to ``handle`` and dropped; the watch cache keeps only the slimmed fields (adapters/cache.py).

The protocol, as the Kubernetes API documents it ("Efficient detection of changes"):

1. LIST in pages; remember the list's ``resourceVersion``; every item is handed over as ``LISTED``
   (the first list: the cache is being filled) or ``ADDED`` (a re-list: something may have changed).
   Objects known before and absent from a re-list are handed over as ``DELETED``.
2. WATCH from that ``resourceVersion`` with bookmarks, for ``timeout_seconds`` at a time; every
   event moves the ``resourceVersion`` on, so a reconnect resumes where the last one stopped.
3. ``410 Gone`` (the version is too old, compacted away; as an ERROR event in the stream or as the
   watch request's HTTP status): back to 1. Any other failure: wait
   (1, 2, 4 … 30 s) and watch again from the last version.

:meth:`Informer.wait_synced` tells when the first list is in: the operator starts its reconcile
workers only then, so the first reconciles read a full cache instead of GETting children one by one.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

log = logging.getLogger(__name__)

#: Event types handed to ``handle``: the API's three, and LISTED for an item of the first list.
LISTED, ADDED, MODIFIED, DELETED = "LISTED", "ADDED", "MODIFIED", "DELETED"
BACKOFF_MAX_SECONDS = 30.0


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class ListWatch(Protocol):
    """The two requests an informer makes (adapters/kube.py implements them)."""

    def list_page(self, kind: str, label_selector: str, namespace: str | None, token: str | None,
                  limit: int) -> Mapping[str, Any]: ...

    def watch_events(self, kind: str, label_selector: str, namespace: str | None, resource_version: str,
                     timeout_seconds: int) -> Iterable[Mapping[str, Any]]: ...


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row.

    >>> [backoff(n) for n in (1, 2, 3, 9)]
    [1.0, 2.0, 4.0, 30.0]
    """
    return min(BACKOFF_MAX_SECONDS, 2.0 ** max(0, failures - 1))


def _ident(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class Informer:
    """Keeps ``handle(event_type, obj)`` told of every change of ``kind`` matching ``label_selector``."""

    PAGE = 250

    def __init__(self, source: ListWatch, kind: str, label_selector: str, namespace: str | None,
                 handle: Callable[[str, dict[str, Any]], None], timeout_seconds: int = 300):
        self.source, self.kind, self.selector, self.namespace = source, kind, label_selector, namespace
        self.handle = handle
        self.timeout_seconds = timeout_seconds
        self._stop = threading.Event()
        self.failures = 0  # in a row
        self._synced = threading.Event()
        self._known: set[tuple[str, str]] = set()
        self.resource_version: str | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"<Informer {self.kind}s{where} [{self.selector}]>"

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        name = f"informer-{self.kind.lower()}" + (f"-{self.namespace}" if self.namespace else "")
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def run(self) -> None:
        while not self._stop.is_set():
            wait = self.step()
            if wait and self._stop.wait(wait):
                return

    def step(self) -> float:
        """One round: list when there is no version to resume from, then follow one watch request.
        Returns the seconds to wait before the next round (0 after a success or a 410)."""
        try:
            if self.resource_version is None:
                self.relist()
            self.watch_once()
        except Exception as err:  # noqa: BLE001 - the informer must outlive any one failure
            if isinstance(err, Gone) or getattr(err, "status", 0) == 410:  # an ERROR event, or the HTTP answer
                log.info("%r: resourceVersion %s expired, listing again", self, self.resource_version)
                self.resource_version = None
                return 0.0
            self.failures += 1
            log.warning("%r failed (%d in a row), retrying in %.0f s: %s", self, self.failures,
                        backoff(self.failures), err)
            return backoff(self.failures)
        self.failures = 0
        return 0.0

    # --- the two steps --------------------------------------------------------------------------
    def relist(self) -> None:
        """One paged LIST: every item handed over, vanished objects as DELETED, the version kept."""
        first = not self._synced.is_set()
        seen: set[tuple[str, str]] = set()
        token: str | None = None
        version = ""
        while True:
            page = self.source.list_page(self.kind, self.selector, self.namespace, token, self.PAGE)
            for item in page.get("items") or ():
                seen.add(_ident(item))
                self.handle(LISTED if first else ADDED, item)
            meta = page.get("metadata") or {}
            version = meta.get("resourceVersion") or version
            token = meta.get("continue") or None
            del page
            if not token:
                break
        for namespace, name in sorted(self._known - seen):
            self.handle(DELETED, {"metadata": {"namespace": namespace, "name": name}})
        self._known = seen
        self.resource_version = version
        self._synced.set()

    def watch_once(self) -> None:
        """Follow one watch request until the server ends it; every event moves the version on."""
        events = self.source.watch_events(self.kind, self.selector, self.namespace, self.resource_version or "",
                                          self.timeout_seconds)
        for event in events:
            if self._stop.is_set():
                return
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(obj.get("message", ""))
                raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                self.resource_version = version
            if kind == "BOOKMARK":
                continue
            if kind == DELETED:
                self._known.discard(_ident(obj))
            else:
                self._known.add(_ident(obj))
            self.handle(kind, obj)


def json_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Watch events from the API server's newline-delimited JSON stream (blank keep-alives skipped)."""
    for line in lines:
        if line.strip():
            yield json.loads(line)
