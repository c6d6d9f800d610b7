"""modeldeploy promote|abort|retry|undo|history: the annotation protocol end to end against a fake API
whose "operator" answers with the real step machine."""

import copy
import doctest
import io
import json
from datetime import datetime, timezone

import pytest

from modeldeploy import cli, rollout_cli
from modeldeploy.api import canary as cs
from modeldeploy.policy import canary as cp
from modeldeploy.policy import commands as cmd

SPEC = {"model": {"uri": "s3://m/2", "format": "onnx", "version": 2},
        "rollout": {"strategy": "Canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}],
                                                       "trafficRouting": {"parentRefs": [{"name": "gw"}]}}}}


class FakeApi:
    """A ModelDeployment in memory; ``operator`` reconciles it after every patch (or never, when False)."""

    def __init__(self, obj, operator=True):
        self.obj = obj
        self.patches = []
        self.operator = operator

    def get(self, namespace, name):
        return copy.deepcopy(self.obj)

    def patch(self, namespace, name, body):
        self.patches.append(body)
        _merge(self.obj, body)
        if self.operator:
            self.reconcile()
        return copy.deepcopy(self.obj)

    def reconcile(self):
        annotations = self.obj["metadata"].get("annotations") or {}
        command = cmd.parse(annotations)
        spec = cs.parse_canary(self.obj["spec"]["rollout"]["canary"])
        stored = self.obj["status"].get("canary")
        d = cp.decide(spec, stored, cp.Target(stored["revision"], "s0"), cp.Observed(1, 1, 2), None, command,
                      datetime(2026, 12, 1, tzinfo=timezone.utc), 2)
        self.obj["status"]["canary"] = json.loads(json.dumps(d.status))
        if d.clear_command:
            _merge(self.obj, cmd.clear_patch())


def _merge(target, patch):
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def md(phase="Paused", history=None, **meta):
    spec = cs.parse_canary(SPEC["rollout"]["canary"])
    status = cp.decide(spec, None, cp.Target("c1", "s0"), cp.Observed(1, 1, 2), None, None,
                       datetime(2026, 12, 1, tzinfo=timezone.utc), 2).status
    status = json.loads(json.dumps(status))
    status["phase"] = phase
    if history is not None:
        status["history"] = history
    return {"metadata": {"name": "digits", "namespace": "ns", **meta}, "spec": copy.deepcopy(SPEC),
            "status": {"currentRevision": "s0", "canary": status}}


def run(fn, *args, **kwargs):
    out = io.StringIO()
    code = fn(*args, out=out, **kwargs)
    return code, out.getvalue()


def test_promote_waits_for_the_operators_answer():
    api = FakeApi(md())
    code, text = run(rollout_cli.send_command, api, "ns", "digits", "promote", user="ana")
    assert code == rollout_cli.EXIT_OK
    assert "promote of canary c1 (ns/digits): Applied: step 1/2 (setWeight 10%) completed by hand" in text
    sent = json.loads(api.patches[0]["metadata"]["annotations"][cmd.ANNOTATION])
    assert sent["command"] == "promote" and sent["revision"] == "c1" and sent["requestedBy"] == "ana"
    assert cmd.ANNOTATION not in api.obj["metadata"].get("annotations", {})  # the operator removed it


def test_abort_then_retry():
    api = FakeApi(md("Progressing"))
    code, text = run(rollout_cli.send_command, api, "ns", "digits", "abort", user="bob")
    assert code == 0 and api.obj["status"]["canary"]["phase"] == "RollingBack"
    code, text = run(rollout_cli.send_command, api, "ns", "digits", "retry")
    assert code == 0 and "attempt 2" in text


def test_refused_locally_when_nothing_to_do():
    api = FakeApi(md("Promoted"))
    assert run(rollout_cli.send_command, api, "ns", "digits", "promote")[0] == rollout_cli.EXIT_REFUSED
    assert run(rollout_cli.send_command, api, "ns", "digits", "retry")[0] == rollout_cli.EXIT_REFUSED
    assert api.patches == []


def test_timeout_when_no_operator_answers():
    api = FakeApi(md(), operator=False)
    ticks = iter(range(0, 1000))
    code, text = run(rollout_cli.send_command, api, "ns", "digits", "abort", timeout=3,
                     clock=lambda: next(ticks), sleep=lambda s: None)
    assert code == rollout_cli.EXIT_TIMEOUT and "did not answer within 3s" in text
    assert cmd.ANNOTATION in api.obj["metadata"]["annotations"]


def test_no_wait_only_writes_the_annotation():
    api = FakeApi(md(), operator=False)
    code, text = run(rollout_cli.send_command, api, "ns", "digits", "promote", full=True, wait=False)
    assert code == 0 and text.startswith("requested promote --full of canary c1")
    assert json.loads(api.obj["metadata"]["annotations"][cmd.ANNOTATION])["full"] is True


PROMOTED_HISTORY = [
    {"revision": "c1", "attempt": 1, "outcome": "Promoted", "spec": {"model": SPEC["model"]}},
    {"revision": "s0", "attempt": 1, "outcome": "Promoted",
     "spec": {"model": {"uri": "s3://m/1", "format": "onnx", "version": 1}}},
]


def promoted():
    obj = md("Promoted", history=PROMOTED_HISTORY)
    obj["status"]["canary"]["revision"] = "c1"
    obj["status"]["currentRevision"] = "c1"
    return obj


def test_undo_after_a_promotion_patches_the_spec_back():
    api = FakeApi(promoted(), operator=False)
    code, text = run(rollout_cli.undo, api, "ns", "digits")
    assert code == 0 and "spec set back to revision s0" in text
    assert api.patches == [{"spec": {"model": {"uri": "s3://m/1", "version": 1}}}]


def test_undo_refuses_under_gitops_unless_forced():
    obj = promoted()
    obj["metadata"]["managedFields"] = [{"manager": "argocd-controller"}]
    api = FakeApi(obj, operator=False)
    code, text = run(rollout_cli.undo, api, "ns", "digits")
    assert code == rollout_cli.EXIT_REFUSED and "revert the change in git" in text and api.patches == []
    assert run(rollout_cli.undo, api, "ns", "digits", force=True)[0] == 0 and len(api.patches) == 1


def test_undo_during_a_canary_aborts_it():
    api = FakeApi(md("Paused"))
    code, text = run(rollout_cli.undo, api, "ns", "digits")
    assert code == 0 and "aborting it" in text and api.obj["status"]["canary"]["phase"] == "RollingBack"


def test_undo_without_an_earlier_revision_is_refused():
    api = FakeApi(md("Promoted", history=PROMOTED_HISTORY[:1]), operator=False)
    code, text = run(rollout_cli.undo, api, "ns", "digits")
    assert code == rollout_cli.EXIT_REFUSED and "no earlier promoted revision" in text


def test_the_commands_are_registered_on_modeldeploy_and_kubectl_modeldeploy():
    parser = cli.build_parser()
    args = parser.parse_args(["promote", "digits", "-n", "ns", "--full", "--timeout", "5"])
    assert (args.command, args.name, args.namespace, args.full, args.timeout) == ("promote", "digits", "ns", True, 5.0)
    args = parser.parse_args(["undo", "digits", "--to-revision", "abc", "--force"])
    assert (args.to_revision, args.force) == ("abc", True)
    args = parser.parse_args(["history", "digits", "-o", "json"])
    assert args.output == "json" and args.func is rollout_cli._run
    import tomllib
    from pathlib import Path
    scripts = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-modeldeploy"] == scripts["modeldeploy"] == "modeldeploy.cli:main"


def test_docstring_examples():
    assert doctest.testmod(rollout_cli).failed == 0


@pytest.mark.parametrize("raw,words", [
    ("not json", "not a JSON object"), ('{"command": "promote"}', "needs an id"),
    ('{"command": "promote", "id": "x", "full": "yes"}', "full must be true or false"),
])
def test_invalid_annotations(raw, words):
    parsed = cmd.parse({cmd.ANNOTATION: raw})
    assert isinstance(parsed, cmd.InvalidCommand) and words in parsed.message
