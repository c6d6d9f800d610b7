"""A webhook receiver for Alertmanager's notifications: what tests (and the demo) read alerts from.

Alertmanager POSTs a JSON document per notification (``{"status": "firing"|"resolved", "alerts": [...],
"groupLabels": ..., ...}``, webhook format version 4). :class:`WebhookReceiver` keeps every one in order,
and answers ``GET /notifications`` with the list, so a receiver started by the sandbox as a process
(``python -m modeldeploy.sandbox.webhook --port P``) can be read by tests in another process.
:meth:`WebhookReceiver.wait_for` waits on a condition variable that each POST signals: no polling sleeps.

Pure helpers: :func:`events` flattens notifications to one row per alert; :func:`find` selects rows.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


# --- pure --------------------------------------------------------------------------------------------
def events(notifications: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per alert per notification: ``{"status", "labels", "annotations", "startsAt", "endsAt"}``
    (an alert's own status: a resolved notification may still list alerts that fire).

    >>> events([{"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "A"}}]}])
    [{'status': 'firing', 'labels': {'alertname': 'A'}, 'annotations': {}, 'startsAt': None, 'endsAt': None}]
    """
    rows = []
    for note in notifications:
        for alert in note.get("alerts") or ():
            rows.append({"status": alert.get("status", note.get("status")), "labels": dict(alert.get("labels") or {}),
                         "annotations": dict(alert.get("annotations") or {}), "startsAt": alert.get("startsAt"),
                         "endsAt": alert.get("endsAt")})
    return rows


def find(notifications: Iterable[Mapping[str, Any]], alertname: str, status: str = "firing",
         **labels: str) -> list[dict[str, Any]]:
    """Rows of :func:`events` for ``alertname`` in ``status`` whose labels include ``labels``.

    >>> notes = [{"alerts": [{"status": "resolved", "labels": {"alertname": "A", "namespace": "ml"}}]}]
    >>> len(find(notes, "A", "resolved", namespace="ml")), len(find(notes, "A"))
    (1, 0)
    """
    return [row for row in events(notifications)
            if row["labels"].get("alertname") == alertname and row["status"] == status
            and all(row["labels"].get(k) == v for k, v in labels.items())]


# --- the receiver --------------------------------------------------------------------------------------
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records notifications. ``url`` is what Alertmanager posts to."""

    def __init__(self, port: int = 0, log: Path | None = None) -> None:
        self._notifications: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._log = log
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    self._answer(400, {"error": "body is not JSON"})
                    return
                if not isinstance(body, dict):
                    self._answer(400, {"error": "expected a JSON object (Alertmanager's webhook payload)"})
                    return
                receiver._record(body)
                self._answer(200, {"ok": True})

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") == "/notifications":
                    self._answer(200, receiver.notifications())
                elif self.path == "/healthz":
                    self._answer(200, "ok")
                else:
                    self._answer(404, {"error": f"{self.path}: try GET /notifications"})

            def _answer(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # quiet: the notifications are the record
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="alert-webhook", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _record(self, body: dict[str, Any]) -> None:
        with self._changed:
            self._notifications.append(body)
            if self._log is not None:
                with open(self._log, "a") as fh:
                    fh.write(json.dumps(body) + "\n")
            self._changed.notify_all()

    def notifications(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._notifications)

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float, what: str = "notification"):
        """Wait until ``predicate(notifications)`` is truthy (re-checked on every POST); return its value.
        AssertionError naming ``what`` and what did arrive when ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = predicate(list(self._notifications))
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(e["status"], e["labels"].get("alertname")) for e in events(self._notifications)]
                    raise AssertionError(f"no {what} within {timeout:.0f}s; received: {got}")
                self._changed.wait(left)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modeldeploy.sandbox.webhook", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--log", type=Path, help="also append each notification to this file (JSON lines)")
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(args.port, args.log)
    print(f"alert webhook receiver on {receiver.url}; GET http://127.0.0.1:{receiver.port}/notifications", flush=True)
    try:
        receiver._server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
