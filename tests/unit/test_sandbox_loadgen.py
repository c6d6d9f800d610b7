"""The open-loop load generator against a local HTTP server: requests are due on the schedule whatever the
server's speed, a rate change drops the old schedule, and a lack of free connections shows as lag."""

from __future__ import annotations

import doctest
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modeldeploy.sandbox import loadgen
from modeldeploy.sandbox.loadgen import OpenLoopLoad


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.0

    def do_POST(self):  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    def make(delay: float):
        handler = type("H", (Handler,), {"delay": delay})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        made.append(srv)
        return f"127.0.0.1:{srv.server_address[1]}"
    made = []
    yield make
    for srv in made:
        srv.shutdown()


def settle(load: OpenLoopLoad, until: float) -> None:
    while time.monotonic() < until:
        time.sleep(0.05)


def test_requests_are_due_on_the_schedule_and_a_new_rate_replaces_it(server):
    load = OpenLoopLoad(server(0.0), "/infer", b"{}", rate=20.0).start()
    start = load.set_rate(20.0)
    settle(load, start + 1.2)
    faster = load.set_rate(50.0)
    settle(load, faster + 1.2)
    stopped = load.set_rate(0.0)
    settle(load, stopped + 0.3)
    load.stop()
    dues = [o.due for o in load.outcomes]
    assert len(load.between(start, start + 1.0)) == 20  # due every 50 ms, from the set_rate on
    assert len(load.between(faster, faster + 1.0)) == 50
    assert not [d for d in dues if d >= stopped]  # rate 0: nothing more is due
    assert load.failures() == []
    # slots taken under the old rate were given up: the new schedule starts at the change, evenly spaced
    after = sorted(d for d in dues if faster <= d < faster + 1.0)
    assert after[0] == pytest.approx(faster) and all(b - a == pytest.approx(0.02) for a, b in zip(after, after[1:]))


def test_too_few_connections_for_a_slow_server_shows_as_lag_not_as_a_lower_rate(server):
    load = OpenLoopLoad(server(0.2), "/infer", b"{}", rate=20.0, connections=2).start()
    start = load.set_rate(20.0)
    settle(load, start + 1.0)
    load.stop()
    assert load.lag() > 0.3  # 2 connections serve 10 requests/s: requests wait for one
    assert len(load.between(start, start + 0.5)) >= 5  # still due at 20/s


def test_doctests():
    assert doctest.testmod(loadgen).failed == 0
