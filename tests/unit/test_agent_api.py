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
    srv = api.AgentServer(("127.0.0.1", 0), FakeAgent())
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
    status, body = call(server, "GET", "/v1/model")
    assert status == 200
    assert len(body.pop("nonce")) == 32
    assert body == api.public_view(SNAPSHOT)
    assert body["served"] == dict(SNAPSHOT["served"], uriFingerprint=api.uri_fingerprint("s3://b/1.onnx"))
    assert call(server, "GET", "/healthz") == (200, "ok")
    assert call(server, "GET", "/v1/models")[0] == 404


def test_put_accepts_with_202_and_the_get_body(server):
    status, body = call(server, "PUT", "/v1/model", {"uri": "s3://b/2.onnx", "version": 2, "sha256": "AB" * 32})
    assert status == 202
    body.pop("nonce")
    assert body == api.public_view(dict(SNAPSHOT, desired={"version": 2, "uri": "s3://b/2.onnx", "sha256": "ab" * 32}))
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
    ({"uri": "s3://b/m.onnx", "version": 2, "name": "x"},
     "name: unknown field (known: uri, version, sha256, generation, nonce)"),
    ({"uri": "s3://b/m.onnx", "version": 2, "generation": "5"}, "generation: must be an integer >= 1, got '5'"),
    ({"uri": "s3://b/m.onnx", "version": 2, "nonce": 5}, "nonce: must be a string"),
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


def signed(server, body, token="s3cret", nonce=None, **extra):
    """A PUT body bound to the agent's current nonce, and its Authorization header."""
    from modeldeploy.api.agent_auth import authorization

    payload = dict(body, nonce=nonce if nonce is not None else call(server, "GET", "/v1/model")[1]["nonce"], **extra)
    data = json.dumps(payload).encode()
    return data, {"Authorization": authorization(token, "PUT", "/v1/model", data)}


def test_a_token_guards_put_but_not_get(server):
    server.tokens = lambda: ["s3cret"]
    body = {"uri": "s3://b/2.onnx", "version": 2}
    assert call(server, "PUT", "/v1/model", body)[0] == 401
    data, headers = signed(server, body, token="wrong")
    assert call(server, "PUT", "/v1/model", data, headers)[0] == 401
    data, headers = signed(server, body)
    assert call(server, "PUT", "/v1/model", data, headers)[0] == 202
    assert server.agent.submitted == [ModelRef(2, "s3://b/2.onnx")]
    assert call(server, "GET", "/v1/model")[0] == 200


def test_the_token_itself_is_never_accepted_on_the_wire(server):
    """A bearer token can be read off the pod network; only a signature of the body counts."""
    server.tokens = lambda: ["s3cret"]
    status, answer = call(server, "PUT", "/v1/model", {"uri": "s3://b/2.onnx", "version": 2},
                          {"Authorization": "Bearer s3cret"})
    assert status == 401 and "HMAC-SHA256" in answer["error"]
    assert server.agent.submitted == []


def test_a_replayed_put_is_refused(server):
    server.tokens = lambda: ["s3cret"]
    data, headers = signed(server, {"uri": "s3://b/2.onnx", "version": 2})
    assert call(server, "PUT", "/v1/model", data, headers)[0] == 202
    status, answer = call(server, "PUT", "/v1/model", data, headers)  # the same bytes, captured and sent again
    assert status == 409 and answer["error"].startswith("nonce: stale command")
    assert len(server.agent.submitted) == 1


def test_a_nonce_is_good_for_one_agent_only(server):
    other = api.AgentServer(("127.0.0.1", 0), FakeAgent())
    server.tokens = other.tokens = lambda: ["s3cret"]
    data, headers = signed(server, {"uri": "s3://b/2.onnx", "version": 2})
    thread = threading.Thread(target=other.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        assert call(other, "PUT", "/v1/model", data, headers)[0] == 409  # signed for `server`, sent to `other`
    finally:
        other.shutdown()
        other.server_close()
    assert call(server, "PUT", "/v1/model", data, headers)[0] == 202


def test_a_signed_put_without_a_nonce_is_refused(server):
    from modeldeploy.api.agent_auth import authorization

    server.tokens = lambda: ["s3cret"]
    data = json.dumps({"uri": "s3://b/2.onnx", "version": 2}).encode()
    status, answer = call(server, "PUT", "/v1/model", data, {"Authorization": authorization("s3cret", "PUT", "/v1/model", data)})
    assert status == 409 and answer["error"].startswith("nonce: required")


def test_an_older_generation_is_refused(server):
    server.tokens = lambda: ["s3cret"]
    data, headers = signed(server, {"uri": "s3://b/3.onnx", "version": 3}, generation=5)
    assert call(server, "PUT", "/v1/model", data, headers)[0] == 202
    data, headers = signed(server, {"uri": "s3://b/2.onnx", "version": 2}, generation=4)
    status, answer = call(server, "PUT", "/v1/model", data, headers)
    assert status == 409 and answer["error"] == "generation: stale command: generation 4 is older than 5, already accepted"
    data, headers = signed(server, {"uri": "s3://b/3.onnx", "version": 3}, generation=5)
    assert call(server, "PUT", "/v1/model", data, headers)[0] == 202
    assert [r.version for r in server.agent.submitted] == [3, 3]


@pytest.mark.parametrize("value", ["Bearer s3crét", "HMAC-SHA256 ü" + "0" * 63, "Bearer \u4e2d"])
def test_a_non_ascii_authorization_header_is_a_401_not_a_dropped_connection(server, value):
    server.tokens = lambda: ["s3cret"]
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    body = json.dumps({"uri": "s3://b/2.onnx", "version": 2}).encode()
    conn.putrequest("PUT", "/v1/model")
    conn.putheader("Authorization", value.encode("utf-8"))
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    assert resp.status == 401
    assert "error" in json.loads(resp.read())
    conn.close()
    assert call(server, "GET", "/healthz") == (200, "ok")


def test_tokens_are_read_from_the_mounted_secret_on_every_put(tmp_path):
    """A rotated token (the kubelet updates the mounted Secret) works without a restart; the previous one
    keeps working while ``previous-token`` is there."""
    (tmp_path / "token").write_text("old\n")
    source = api.TokenSource(path=str(tmp_path / "token"))
    assert source() == ["old"]
    (tmp_path / "token").write_text("new")
    assert source() == ["new"]
    (tmp_path / "previous-token").write_text("old")
    assert source() == ["new", "old"]
    (tmp_path / "token").unlink()
    assert source() == ["old"]
    assert api.TokenSource(static="env-token")() == ["env-token"]
    assert api.TokenSource()() == []


def test_a_missing_token_file_refuses_every_put(server, tmp_path):
    """Configured with a token file that is not there: nothing is accepted (it never falls open)."""
    source = api.TokenSource(path=str(tmp_path / "absent"))
    server.tokens = source
    server.require_auth = True
    data, headers = signed(server, {"uri": "s3://b/2.onnx", "version": 2}, token="")
    assert call(server, "PUT", "/v1/model", data, headers)[0] == 401
    assert call(server, "PUT", "/v1/model", {"uri": "s3://b/2.onnx", "version": 2})[0] == 401


def test_get_shows_uris_without_credentials_but_with_a_fingerprint(server):
    from modeldeploy.api.redact import uri_fingerprint

    presigned = "https://alice:PW@h/m.onnx?X-Amz-Signature=SIG"
    server.agent.snapshot = lambda: dict(SNAPSHOT, served={"version": 1, "uri": presigned, "sha256": None},
                                         message=f"fetch of version 2 failed: GET {presigned}: 403")
    status, body = call(server, "GET", "/v1/model")
    assert status == 200
    assert body["served"] == {"version": 1, "uri": "https://h/m.onnx?…", "sha256": None,
                              "uriFingerprint": uri_fingerprint(presigned)}
    assert body["message"] == "fetch of version 2 failed: GET https://h/m.onnx?…: 403"
    assert "PW" not in json.dumps(body) and "SIG" not in json.dumps(body)


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
