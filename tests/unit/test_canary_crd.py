"""The CRD's canary sections hold exactly what the parser reads and the step machine writes.

status.canary is the rollout's only memory: a field the schema lacks would be pruned by the API server
on write, and a restarted operator would lose it. So every status the machine produces must fit the
schema (names and types); and the defaults the CRD declares must be the parser's.
"""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from modeldeploy.api import canary as cs
from modeldeploy.policy import analysis as an
from modeldeploy.policy import canary as cp
from modeldeploy.policy import commands as cmd

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((ROOT / "crds" / "modeldeploy.io_modeldeployments.yaml").read_text())[
    "spec"]["versions"][0]["schema"]["openAPIV3Schema"]
CANARY_SPEC = SCHEMA["properties"]["spec"]["properties"]["rollout"]["properties"]["canary"]
CANARY_STATUS = SCHEMA["properties"]["status"]["properties"]["canary"]
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


def fits(value, schema, path="status.canary"):
    """Problems with ``value`` against a structural schema (types and known properties only)."""
    t = schema.get("type")
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, bool):
        return [] if t == "boolean" else [f"{path}: bool, schema {t}"]
    if isinstance(value, int):
        return [] if t in ("integer", "number") else [f"{path}: int, schema {t}"]
    if isinstance(value, float):
        return [] if t == "number" else [f"{path}: float, schema {t}"]
    if isinstance(value, str):
        problems = [] if t == "string" else [f"{path}: str, schema {t}"]
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"{path}: {value!r} not in {schema['enum']}")
        return problems
    if isinstance(value, list):
        if t != "array":
            return [f"{path}: list, schema {t}"]
        return [p for i, v in enumerate(value) for p in fits(v, schema["items"], f"{path}[{i}]")]
    if isinstance(value, dict):
        if t != "object":
            return [f"{path}: object, schema {t}"]
        props = schema.get("properties") or {}
        out = []
        for key, v in value.items():
            if key not in props:
                out.append(f"{path}.{key}: not in the schema (would be pruned)")
            else:
                out.extend(fits(v, props[key], f"{path}.{key}"))
        return out
    return [f"{path}: unexpected {type(value)}"]


def statuses():
    """Statuses from every branch of the machine: progressing with analysis, hold, rollback, commands, history."""
    spec = cs.parse_canary({"steps": [{"setWeight": 10}, {"pause": {}}], "trafficRouting": {"parentRefs": [
        {"name": "gw"}]}, "analysis": {"metricsOutageLimit": "1m"}})
    target = cp.Target("c1", "s0", change="model version 1 -> 2", spec_snapshot={"model": {"uri": "s3://m"}})
    check = an.CheckResult("errorRate", an.Outcome.FAIL, "errorRate 2% ...", 2.0, 0.0, 0.0, 1e-9, 0.0025)
    out = []
    status = None
    rounds = [
        (cp.Observed(0, 1, 3), None, None),
        (cp.Observed(1, 1, 3), None, None),
        (cp.Observed(1, 1, 3), an.Verdict(an.Outcome.NO_DATA, T0, 1, 0.0025, (), 0, 0, "down"), None),
        (cp.Observed(1, 1, 3), an.Verdict(an.Outcome.PASS, T0, 2, 0.0008, (check,), 200, 1800, "ok",
                                          {"errorRate": {"through": 1.5e9, "relative": [0.5] * 5}}), None),
        (cp.Observed(1, 1, 3), None, cmd.Command("promote", "p1", revision="c1")),
        (cp.Observed(1, 1, 3), an.Verdict(an.Outcome.FAIL, T0, 3, 0.0004, (check,), 300, 2700, "bad"), None),
        (cp.Observed(0, 0, 3), None, None),
        (cp.Observed(0, 0, 3), None, cmd.Command("retry", "r1")),
    ]
    for k, (obs, verdict, command) in enumerate(rounds):
        now = T0 + timedelta(seconds=10 * k)
        if verdict is not None:
            verdict = an.Verdict(verdict.outcome, now, verdict.look, verdict.alpha, verdict.checks,
                                 verdict.canary_requests, verdict.stable_requests, verdict.message, verdict.evidence)
        status = json.loads(json.dumps(cp.decide(spec, status, target, obs, verdict, command, now, 3).status))
        out.append(status)
    promoted = cp.decide(spec, {**status, "phase": "Promoting"}, cp.Target("c1", "c1"), cp.Observed(3, 3, 3), None,
                         None, T0, 3).status
    out.append(json.loads(json.dumps(promoted)))
    return out


@pytest.mark.parametrize("index", range(9))
def test_every_status_the_machine_writes_fits_the_schema(index):
    status = statuses()[index]
    assert fits(status, CANARY_STATUS) == []


def test_the_statuses_cover_every_status_field():
    seen = set()

    def walk(value, path):
        seen.add(path)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for v in value:
                walk(v, f"{path}[]")

    for s in statuses():
        walk(s, "canary")

    def declared(schema, path):
        yield path
        for k, sub in (schema.get("properties") or {}).items():
            yield from declared(sub, f"{path}.{k}")
        if "items" in schema:
            yield from declared(schema["items"], f"{path}[]")

    unused = sorted(set(declared(CANARY_STATUS, "canary")) - seen)
    assert unused == [], "schema fields the machine never writes"


def test_crd_defaults_are_the_parsers():
    props = CANARY_SPEC["properties"]
    analysis = props["analysis"]["properties"]
    default = cs.AnalysisSpec()
    assert cs.parse_duration(analysis["interval"]["default"], "x") == default.interval_seconds
    assert cs.parse_duration(analysis["window"]["default"], "x") == default.window_seconds
    assert analysis["minRequests"]["default"] == default.min_requests
    assert analysis["failureLimit"]["default"] == default.failure_limit
    assert analysis["significance"]["default"] == default.significance
    assert props["progressDeadlineSeconds"]["default"] == cs.CanarySpec(steps=()).progress_deadline_seconds
    assert props["skipAnalysis"]["default"] is False
    assert props["trafficRouting"]["properties"]["headerMatch"]["properties"]["type"]["default"] == "Exact"
    ref = props["trafficRouting"]["properties"]["parentRefs"]["items"]["properties"]
    assert (ref["group"]["default"], ref["kind"]["default"]) == (cs.ParentRef("x").group, cs.ParentRef("x").kind)


def test_builtin_metric_names_in_the_crd_rules_are_the_parsers():
    rules = " ".join(r["rule"] for r in CANARY_SPEC["properties"]["analysis"]["properties"]["metrics"]["items"][
        "x-kubernetes-validations"])
    for name in cs.BUILTIN_METRICS:
        assert f"'{name}'" in rules
