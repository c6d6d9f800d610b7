"""The operator's agent client (adapters/agent.py) against the real agent API server (agent/api.py)."""

import threading

import pytest

from modeldeploy.adapters.agent import AgentClient, AgentError
from modeldeploy.agent import api
from modeldeploy.agent.swap import Decision, ModelRef
from modeldeploy.policy.model_swap import Desired


class FakeAgent:
    def __init__(self):
        self.submitted = []

    def snapshot(self):
        return {"name": "d", "served": None, "desired": None, "state": "Ready", "message": "", "loadedVersions": []}

    def submit(self, ref):
        self.submitted.append(ref)
        return Decision(202)


@pytest.fixture
def agent():
    srv = api.AgentServer(("127.0.0.1", 0), FakeAgent(), tokens=api.TokenSource(static="t0ken"))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_signed_puts_are_accepted_one_nonce_each(agent):
    base = f"http://127.0.0.1:{agent.server_address[1]}"
    client = AgentClient()
    first = client.get(base)["nonce"]
    client.put(base, Desired("s3://b/2.onnx", 2, generation=3).body(), token="t0ken")
    client.put(base, Desired("s3://b/3.onnx", 3, generation=4).body(), token="t0ken")
    assert agent.agent.submitted == [ModelRef(2, "s3://b/2.onnx"), ModelRef(3, "s3://b/3.onnx")]
    assert client.get(base)["nonce"] != first
    assert agent.generation == 4


def test_a_wrong_token_is_a_401_error_value(agent):
    base = f"http://127.0.0.1:{agent.server_address[1]}"
    with pytest.raises(AgentError, match="PUT /v1/model: HTTP 401: PUT /v1/model needs Authorization: HMAC-SHA256"):
        AgentClient().put(base, Desired("s3://b/2.onnx", 2).body(), token="wrong")
    with pytest.raises(AgentError, match="HTTP 401"):
        AgentClient().put(base, Desired("s3://b/2.onnx", 2).body())  # unsigned
    assert agent.agent.submitted == []


def test_a_stale_generation_is_a_409_error_value(agent):
    base = f"http://127.0.0.1:{agent.server_address[1]}"
    AgentClient().put(base, Desired("s3://b/3.onnx", 3, generation=9).body(), token="t0ken")
    with pytest.raises(AgentError, match="HTTP 409: generation: stale command"):
        AgentClient().put(base, Desired("s3://b/2.onnx", 2, generation=8).body(), token="t0ken")
