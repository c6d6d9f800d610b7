"""The model agent's HTTP API on a real socket (port 0, a thread) with a fake swapper, and its CLI wiring."""

import doctest
import http.client
import json
import threading

import pytest

from modeldeploy.agent import api, command
from modeldeploy.agent.swap import Decision, ModelRef
from modeldeploy.cli import build_parser

SNAPSHOT = {"name": "digits", "served": {"version": 1, "uri": "s3://b/1.onnx", "sha256": None},
            "desired": {"version": 1, "uri": "s3://b/1.onnx", "sha256": None}, "state": "Ready",
            "message": "serving version 1", "loadedVersions": [1]}


class FakeAgent:
    def __init__(self):
        self.submitted = []
        self.decision = Decision(202)

    def snapshot(self):
        return dict(SNAPSHOT, desired=self.submitted[-1].as_json() if self.submitted else SNAPSHOT["desired"])

    def submit(self, ref):
        self.submitted.append(ref)
        return self.decision


@pytest.fixture
def server():
    srv = api.AgentServer(("127.0.0.1", 0), FakeAgent(), token=None)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def call(srv, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode().strip()


def test_docstring_examples():
    assert doctest.testmod(api).failed == 0


def test_get_model_and_healthz(server):
    assert call(server, "GET", "/v1/model") == (200, SNAPSHOT)
    assert call(server, "GET", "/healthz") == (200, "ok")
    assert call(server, "GET", "/v1/models")[0] == 404


def test_put_accepts_with_202_and_the_get_body(server):
    status, body = call(server, "PUT", "/v1/model", {"uri": "s3://b/2.onnx", "version": 2, "sha256": "AB" * 32})
    assert status == 202
    assert body == dict(SNAPSHOT, desired={"version": 2, "uri": "s3://b/2.onnx", "sha256": "ab" * 32})
    assert server.agent.submitted == [ModelRef(2, "s3://b/2.onnx", "ab" * 32)]


@pytest.mark.parametrize("body,message", [
    (b"", "body: must be a JSON object with uri, version and optionally sha256"),
    (b"{nope", "body: not JSON"),
    ([1, 2], "body: must be a JSON object"),
    ({"version": 2}, "uri: required, a non-empty string"),
    ({"uri": "", "version": 2}, "uri: required, a non-empty string"),
    ({"uri": "ftp://x/m.onnx", "version": 2}, "uri: ftp://x/m.onnx: unsupported scheme ftp://"),
    ({"uri": "s3://b/m.onnx"}, "version: must be an integer >= 1, got None"),
    ({"uri": "s3://b/m.onnx", "version": 0}, "version: must be an integer >= 1, got 0"),
    ({"uri": "s3://b/m.onnx", "version": True}, "version: must be an integer >= 1, got True"),
    ({"uri": "s3://b/m.onnx", "version": 2.0}, "version: must be an integer >= 1, got 2.0"),
    ({"uri": "s3://b/m.onnx", "version": 2, "sha256": "abc"}, "sha256: must be 64 hex digits, got 'abc'"),
    ({"uri": "s3://b/m.onnx", "version": 2, "name": "x"}, "name: unknown field (known: uri, version, sha256)"),
])
def test_put_validation_errors_are_400_naming_the_field(server, body, message):
    status, answer = call(server, "PUT", "/v1/model", body)
    assert status == 400
    assert answer["error"].startswith(message)
    assert server.agent.submitted == []


def test_put_conflict_is_passed_through(server):
    server.agent.decision = Decision(409, "version 1 is served from s3://b/1.onnx; new files need a new version number")
    assert call(server, "PUT", "/v1/model", {"uri": "s3://b/other.onnx", "version": 1}) == (
        409, {"error": "version 1 is served from s3://b/1.onnx; new files need a new version number"})


@pytest.mark.parametrize("method,path,status", [("POST", "/v1/model", 405), ("DELETE", "/v1/model", 405),
                                                ("PUT", "/healthz", 405), ("PUT", "/v2/model", 404)])
def test_other_methods_and_paths(server, method, path, status):
    assert call(server, method, path, {"uri": "s3://b/2.onnx", "version": 2})[0] == status


def test_token_guards_put_but_not_get(server):
    server.token = "s3cret"
    body = {"uri": "s3://b/2.onnx", "version": 2}
    assert call(server, "PUT", "/v1/model", body)[0] == 401
    assert call(server, "PUT", "/v1/model", body, {"Authorization": "Bearer wrong"})[0] == 401
    assert call(server, "PUT", "/v1/model", body, {"Authorization": "Bearer s3cret"})[0] == 202
    assert call(server, "GET", "/v1/model")[0] == 200


def test_registered_in_the_cli():
    args = build_parser().parse_args(["agent", "--name", "digits", "--format", "onnx", "--uri", "s3://b/1.onnx",
                                      "--version", "1", "--sha256", "AB" * 32, "--port", "8009"])
    assert args.func is command.run
    assert (args.repository, args.triton_url, args.triton_grpc_url, args.port, args.sha256) == (
        "/models", "127.0.0.1:8000", "127.0.0.1:8001", 8009, "ab" * 32)


def test_port_in_use_exits_1_with_the_cause_in_the_termination_log(server, tmp_path):
    log = tmp_path / "termination-log"
    rc = command.run(build_parser().parse_args(
        ["agent", "--name", "digits", "--format", "onnx", "--address", "127.0.0.1",
         "--port", str(server.server_address[1]), "--repository", str(tmp_path), "--termination-log", str(log)]))
    assert rc == 1
    assert log.read_text().startswith(f"AgentError: cannot listen on 127.0.0.1:{server.server_address[1]}:")
