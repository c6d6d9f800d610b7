"""spec.rollout.canary against the real API server: CEL rules name the field; defaults land; status.canary
written by the step machine comes back unpruned (the rollout's only memory survives a write)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modeldeploy.api import canary as cs
from modeldeploy.api import constants as c
from modeldeploy.policy import analysis as an
from modeldeploy.policy import canary as cp

pytestmark = pytest.mark.integration

BASE = {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": "canary-v"},
        "spec": {"model": {"uri": "s3://bucket/model.onnx", "format": "onnx"}}}
STEPS = [{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50}, {"pause": {}}]


def with_canary(**canary) -> dict:
    body = copy.deepcopy(BASE)
    body["spec"]["rollout"] = {"strategy": "Canary", "canary": {"steps": STEPS, **canary}}
    return body


def metrics(*items) -> dict:
    return {"metrics": list(items)}


CASES = {
    "skipAnalysis with analysis": (with_canary(skipAnalysis=True, analysis={}),
                                   ["spec.rollout.canary.skipAnalysis is true"]),
    "no parentRefs": (with_canary(trafficRouting={"parentRefs": []}), ["spec.rollout.canary.trafficRouting.parentRefs"]),
    "bad gateway name": (with_canary(trafficRouting={"parentRefs": [{"name": "Bad_Gw"}]}),
                         ["spec.rollout.canary.trafficRouting.parentRefs[0].name"]),
    "header without value": (with_canary(trafficRouting={"parentRefs": [{"name": "gw"}], "headerMatch": {"name": "x"}}),
                             ["spec.rollout.canary.trafficRouting.headerMatch.value", "Required"]),
    "bad header type": (with_canary(trafficRouting={"parentRefs": [{"name": "gw"}],
                                                    "headerMatch": {"name": "x", "value": "1", "type": "Prefix"}}),
                        ["spec.rollout.canary.trafficRouting.headerMatch.type"]),
    "interval too short": (with_canary(analysis={"interval": "500ms"}),
                           ["spec.rollout.canary.analysis.interval must be at least 1s"]),
    "window shorter than interval": (with_canary(analysis={"interval": "1m", "window": "30s"}),
                                     ["spec.rollout.canary.analysis.window must be at least"]),
    "bad window": (with_canary(analysis={"window": "five minutes"}), ["spec.rollout.canary.analysis.window must be a "
                                                                      "duration"]),
    "significance 0": (with_canary(analysis={"significance": 0}), ["spec.rollout.canary.analysis.significance"]),
    "unknown built-in": (with_canary(analysis=metrics({"name": "p95", "max": 1})),
                         ["spec.rollout.canary.analysis.metrics[0]", "must be one of errorRate"]),
    "query on a built-in": (with_canary(analysis=metrics({"name": "errorRate", "max": 1, "query": 'x{a="{{revision}}"}'})),
                            ["query cannot be set on a built-in metric"]),
    "no limit": (with_canary(analysis=metrics({"name": "latencyP99"})), ["needs a limit"]),
    "max on throughput": (with_canary(analysis=metrics({"name": "throughput", "max": 5})),
                          ["throughput takes min or minRatio"]),
    "min on latency": (with_canary(analysis=metrics({"name": "latencyMean", "min": 5})),
                       ["take max or maxRatio"]),
    "error rate above 100": (with_canary(analysis=metrics({"name": "errorRate", "max": 150})),
                             ["max of errorRate is a percentage"]),
    "ratio 0": (with_canary(analysis=metrics({"name": "errorRate", "maxRatio": 0})),
                ["spec.rollout.canary.analysis.metrics[0].maxRatio"]),
    "query without revision": (with_canary(analysis=metrics({"name": "q", "max": 1, "query": 'x{ns="{{namespace}}"}'})),
                               ["must select one revision with {{revision}}"]),
    "min above max": (with_canary(analysis=metrics({"name": "q", "min": 2, "max": 1, "query": 'x{r="{{revision}}"}'})),
                      ["min must be <= max"]),
    "duplicate metric": (with_canary(analysis=metrics({"name": "errorRate", "max": 1}, {"name": "errorRate",
                                                                                         "maxRatio": 2})),
                         ["spec.rollout.canary.analysis.metrics[].name must be unique"]),
    "empty metrics": (with_canary(analysis={"metrics": []}), ["spec.rollout.canary.analysis.metrics"]),
}


def create(api, namespace, body, dry_run=True):
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL, body, **({"dry_run": "All"} if dry_run else {}))


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejected_with_message_naming_the_field(api, crd_installed, namespace, case):
    body, expected = CASES[case]
    with pytest.raises(ApiException) as err:
        create(api, namespace, body)
    assert err.value.status == 422, err.value.body
    message = json.loads(err.value.body)["message"]
    for fragment in expected:
        assert fragment in message, message
    with pytest.raises(Exception):  # the parser rejects each of them too
        cs.parse_canary(body["spec"]["rollout"]["canary"])


def test_full_canary_is_accepted_with_defaults_and_parses(api, crd_installed, namespace):
    body = with_canary(
        trafficRouting={"parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "http", "port": 80}],
                        "hostnames": ["models.example.com"], "headerMatch": {"name": "x-canary", "value": "1"}},
        analysis={"metricsOutageLimit": "10m", "metrics": [
            {"name": "errorRate", "maxRatio": 1.5, "max": 2}, {"name": "latencyP99", "maxRatio": 1.2},
            {"name": "latencyMean", "max": 50}, {"name": "queueTime", "maxRatio": 2}, {"name": "throughput", "min": 1},
            {"name": "gpu-busy", "query": 'avg(x{namespace="{{namespace}}",revision="{{ revision }}",'
                                          'model="{{model}}"})', "max": 0.95}]})
    spec = create(api, namespace, body)["spec"]["rollout"]["canary"]
    assert spec["analysis"]["interval"] == "10s" and spec["analysis"]["window"] == "5m"
    assert spec["analysis"]["significance"] == 0.005 and spec["analysis"]["minRequests"] == 100
    assert spec["progressDeadlineSeconds"] == 600 and spec["skipAnalysis"] is False
    assert spec["trafficRouting"]["headerMatch"]["type"] == "Exact"
    assert spec["trafficRouting"]["parentRefs"][0]["kind"] == "Gateway"
    parsed = cs.parse_canary(spec)
    assert len(parsed.analysis.metrics) == 6 and parsed.traffic_routing.header_match.name == "x-canary"


def test_status_written_by_the_machine_comes_back_whole(api, crd_installed, namespace):
    body = with_canary(trafficRouting={"parentRefs": [{"name": "gw"}]})
    created = create(api, namespace, body, dry_run=False)
    spec = cs.parse_canary(created["spec"]["rollout"]["canary"])
    now = datetime.now(timezone.utc).replace(microsecond=0)
    check = an.CheckResult("errorRate", an.Outcome.FAIL, "errorRate 1.3% ...", 1.3, 0.0, 0.0, 1.2e-11, 0.0025)
    verdict = an.Verdict(an.Outcome.FAIL, now, 2, 0.00083, (check,), 800, 7200, "errorRate 1.3% ...",
                         {"errorRate": {"through": 1.8e9, "relative": [0.1, 1.2, 3.4, 5.6, 7.8]}})
    stored = cp.decide(spec, None, cp.Target("c1", "s0", "model version 1 -> 2", {"model": created["spec"]["model"]}),
                       cp.Observed(1, 1, 2), None, None, now, 2).status
    status = cp.decide(spec, json.loads(json.dumps(stored)), cp.Target("c1", "s0"), cp.Observed(1, 1, 2), verdict,
                       None, now, 2).status
    status = json.loads(json.dumps(status))
    objects = client.CustomObjectsApi(api)
    objects.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, namespace, c.PLURAL, "canary-v",
                                                  {"status": {"canary": status}},
                                                  _content_type="application/merge-patch+json")
    back = objects.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, "canary-v")
    assert back["status"]["canary"] == status
    assert back["status"]["canary"]["phase"] == "RollingBack"
    assert back["status"]["canary"]["lastAnalysis"]["checks"][0]["pValue"] == 1.2e-11
