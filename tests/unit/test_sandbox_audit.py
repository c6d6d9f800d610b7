"""The audit-log reader (modeldeploy/sandbox/audit.py): parsing, and reading on across a rotation."""

import doctest
import json

from modeldeploy.sandbox import audit


def event(verb, resource, name, agent="modeldeploy-operator/0.1.0 (op-a)", stage="ResponseComplete",
          namespace="ns", subresource=None, t="2026-11-30T06:00:00.000001Z"):
    ref = {"resource": resource, "namespace": namespace, "name": name}
    if subresource:
        ref["subresource"] = subresource
    return json.dumps({"stage": stage, "verb": verb, "userAgent": agent, "objectRef": ref,
                       "responseStatus": {"code": 200}, "requestReceivedTimestamp": t, "stageTimestamp": t,
                       "requestURI": "/x"}) + "\n"


def test_parse_keeps_completed_requests_with_subresources():
    lines = [event("patch", "modeldeployments", "m", subresource="status").encode(),
             event("watch", "pods", "", stage="ResponseStarted").encode(), b'{"partial']
    (req,) = audit.parse(lines)
    assert (req.verb, req.resource, req.name, req.write) == ("patch", "modeldeployments/status", "m", True)
    assert [r.verb for r in audit.parse(lines, ("ResponseStarted",))] == ["watch"]


def test_cursor_reads_on_across_a_rotation(tmp_path):
    log = tmp_path / "audit.log"
    log.write_text(event("get", "leases", "before"))
    cursor = audit.Cursor.mark(tmp_path)
    with open(log, "a") as fh:
        fh.write(event("patch", "deployments", "after-1"))
    log.rename(tmp_path / "audit-2026-11-30T06-55-17.205.log")  # what the API server does at 100 MB
    log.write_text(event("create", "events", "after-2"))
    assert [r.name for r in cursor.read()] == ["after-1", "after-2"]


def test_operator_requests_and_clients():
    lines = [event("get", "leases", "l").encode(), event("get", "pods", "p", agent="kube-scheduler/v1.35").encode(),
             event("list", "pods", "", agent="kopf/1.45.2", namespace="other").encode()]
    reqs = audit.operator_requests(audit.parse(lines))
    assert [audit.client_of(r.user_agent, ["op-a"]) for r in reqs] == ["op-a", "kopf"]
    assert [r.name for r in audit.operator_requests(audit.parse(lines), "ns")] == ["l"]


def test_docstring_examples():
    assert doctest.testmod(audit).failed == 0
