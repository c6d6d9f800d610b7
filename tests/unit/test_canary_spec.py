"""spec.rollout.canary parses to a frozen CanarySpec with the CRD's defaults; bad input names the field."""

import dataclasses
import doctest

import pytest

from modeldeploy.api import canary as cs
from modeldeploy.api.spec import SpecError


def test_worked_example_from_the_docstring():
    spec = cs.parse_canary({
        "steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50}, {"pause": {}}],
        "trafficRouting": {"parentRefs": [{"name": "gw"}], "headerMatch": {"name": "x-canary", "value": "1"}},
    })
    assert spec.steps == (cs.SetWeight(10), cs.Pause(60.0), cs.SetWeight(50), cs.Pause(None))
    assert spec.steps[3].indefinite and not spec.steps[1].indefinite
    assert spec.traffic_routing.parent_refs == (cs.ParentRef("gw"),)
    assert spec.traffic_routing.header_match == cs.HeaderMatch("x-canary", "1", "Exact")
    assert spec.analysis == cs.AnalysisSpec()
    assert spec.analysis.metrics == cs.DEFAULT_METRICS
    assert spec.progress_deadline_seconds == 600 and not spec.skip_analysis


def test_default_analysis_is_error_rate_and_p99_relative_to_stable():
    spec = cs.parse_canary({"steps": [{"setWeight": 20}]})
    names = [(m.name, m.max_ratio, m.max) for m in spec.analysis.metrics]
    assert names == [("errorRate", 1.5, None), ("latencyP99", 1.2, None)]
    assert all(m.relative for m in spec.analysis.metrics)


def test_an_analysis_block_without_metrics_keeps_the_default_checks():
    spec = cs.parse_canary({"steps": [{"setWeight": 20}], "analysis": {"interval": "30s", "window": "10m"}})
    assert spec.analysis.metrics == cs.DEFAULT_METRICS
    assert (spec.analysis.interval_seconds, spec.analysis.window_seconds) == (30.0, 600.0)


def test_full_analysis():
    spec = cs.parse_canary({"steps": [{"setWeight": 20}], "progressDeadlineSeconds": 120, "analysis": {
        "interval": "5s", "window": "2m", "minRequests": 500, "failureLimit": 1, "significance": 0.01,
        "metricsOutageLimit": "10m",
        "metrics": [
            {"name": "errorRate", "max": 1, "maxRatio": 2},
            {"name": "latencyP99", "max": 250},
            {"name": "latencyMean", "maxRatio": 1.1},
            {"name": "queueTime", "max": 20},
            {"name": "throughput", "min": 5},
            {"name": "gpu-util", "query": 'avg(util{namespace="{{namespace}}",revision="{{revision}}",'
                                          'model="{{ model }}"})', "min": 0.1, "max": 0.9},
        ]}})
    a = spec.analysis
    assert (a.interval_seconds, a.window_seconds, a.min_requests, a.failure_limit, a.significance,
            a.metrics_outage_limit_seconds) == (5.0, 120.0, 500, 1, 0.01, 600.0)
    assert [m.kind for m in a.metrics] == ["errorRate", "latencyP99", "latencyMean", "queueTime", "throughput",
                                           "custom"]
    assert a.metrics[0] == cs.MetricCheck("errorRate", max=1.0, max_ratio=2.0)
    assert a.metrics[0].limits() == "<= 2x stable, <= 1%"
    assert a.metrics[4].limits() == ">= 5 req/s"
    assert a.metrics[5].min == 0.1 and a.metrics[5].max == 0.9 and not a.metrics[5].relative
    assert spec.progress_deadline_seconds == 120


def test_skip_analysis_is_the_only_way_to_promote_unjudged():
    spec = cs.parse_canary({"steps": [{"setWeight": 50}], "skipAnalysis": True})
    assert spec.analysis is None and spec.skip_analysis


def test_the_spec_is_frozen():
    spec = cs.parse_canary({"steps": [{"setWeight": 50}]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.steps = ()


def test_gateway_parent_refs_render_as_gateway_api():
    spec = cs.parse_canary({"steps": [{"setWeight": 5}], "trafficRouting": {
        "parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "http", "port": 80}],
        "hostnames": ["models.example.com"], "headerMatch": {"name": "X-Canary", "value": "^yes", "type":
                                                             "RegularExpression"}}})
    tr = spec.traffic_routing
    assert tr.parent_refs[0].as_gateway_api() == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                  "name": "gw", "namespace": "infra", "sectionName": "http",
                                                  "port": 80}
    assert tr.hostnames == ("models.example.com",)
    assert tr.header_match.as_gateway_api() == {"type": "RegularExpression", "name": "X-Canary", "value": "^yes"}


STEPS = [{"setWeight": 10}]
BAD = {
    "no canary block": (None, "spec.rollout.canary.steps", "is required"),
    "no steps": ({}, "spec.rollout.canary.steps", "at least one step"),
    "empty steps": ({"steps": []}, "spec.rollout.canary.steps", "at least one step"),
    "both in one step": ({"steps": [{"setWeight": 1, "pause": {}}]}, "spec.rollout.canary.steps[0]",
                         "exactly one of setWeight or pause"),
    "neither": ({"steps": [{}]}, "spec.rollout.canary.steps[0]", "exactly one"),
    "weight 150": ({"steps": [{"setWeight": 150}]}, "spec.rollout.canary.steps[0].setWeight", "0 to 100"),
    "weight true": ({"steps": [{"setWeight": True}]}, "spec.rollout.canary.steps[0].setWeight", "integer"),
    "bad pause": ({"steps": [{"setWeight": 1}, {"pause": {"duration": "ten minutes"}}]},
                  "spec.rollout.canary.steps[1].pause.duration", "30s"),
    "33 steps": ({"steps": [{"setWeight": 1}] * 33}, "spec.rollout.canary.steps", "at most 32"),
    "skip and analysis": ({"steps": STEPS, "skipAnalysis": True, "analysis": {}},
                          "spec.rollout.canary.skipAnalysis", "choose one"),
    "deadline 0": ({"steps": STEPS, "progressDeadlineSeconds": 0}, "spec.rollout.canary.progressDeadlineSeconds",
                   ">= 1"),
    "no parentRefs": ({"steps": STEPS, "trafficRouting": {}}, "spec.rollout.canary.trafficRouting.parentRefs",
                      "at least one Gateway"),
    "bad gateway name": ({"steps": STEPS, "trafficRouting": {"parentRefs": [{"name": "Bad_Name"}]}},
                         "spec.rollout.canary.trafficRouting.parentRefs[0].name", "DNS subdomain"),
    "bad port": ({"steps": STEPS, "trafficRouting": {"parentRefs": [{"name": "g", "port": 70000}]}},
                 "spec.rollout.canary.trafficRouting.parentRefs[0].port", "65535"),
    "bad header name": ({"steps": STEPS, "trafficRouting": {"parentRefs": [{"name": "g"}],
                                                            "headerMatch": {"name": "a b", "value": "1"}}},
                        "spec.rollout.canary.trafficRouting.headerMatch.name", "HTTP header name"),
    "header without value": ({"steps": STEPS, "trafficRouting": {"parentRefs": [{"name": "g"}],
                                                                 "headerMatch": {"name": "x"}}},
                             "spec.rollout.canary.trafficRouting.headerMatch.value", "non-empty"),
    "interval 0.5s": ({"steps": STEPS, "analysis": {"interval": "500ms"}}, "spec.rollout.canary.analysis.interval",
                      "at least 1s"),
    "window < interval": ({"steps": STEPS, "analysis": {"interval": "1m", "window": "30s"}},
                          "spec.rollout.canary.analysis.window", "at least spec.rollout.canary.analysis.interval"),
    "significance 0": ({"steps": STEPS, "analysis": {"significance": 0}}, "spec.rollout.canary.analysis.significance",
                       "> 0"),
    "significance 0.9": ({"steps": STEPS, "analysis": {"significance": 0.9}},
                         "spec.rollout.canary.analysis.significance", "<= 0.5"),
    "minRequests 0": ({"steps": STEPS, "analysis": {"minRequests": 0}}, "spec.rollout.canary.analysis.minRequests",
                      ">= 1"),
    "empty metrics": ({"steps": STEPS, "analysis": {"metrics": []}}, "spec.rollout.canary.analysis.metrics",
                      "skipAnalysis"),
    "unknown builtin": ({"steps": STEPS, "analysis": {"metrics": [{"name": "p95", "max": 1}]}},
                        "spec.rollout.canary.analysis.metrics[0].name", "not a built-in metric"),
    "builtin with query": ({"steps": STEPS, "analysis": {"metrics": [{"name": "errorRate", "query": "x", "max": 1}]}},
                           "spec.rollout.canary.analysis.metrics[0].query", "takes no query"),
    "no limit": ({"steps": STEPS, "analysis": {"metrics": [{"name": "latencyP99"}]}},
                 "spec.rollout.canary.analysis.metrics[0]", "needs a limit"),
    "min on latency": ({"steps": STEPS, "analysis": {"metrics": [{"name": "latencyP99", "min": 3}]}},
                       "spec.rollout.canary.analysis.metrics[0].min", "does not apply"),
    "max on throughput": ({"steps": STEPS, "analysis": {"metrics": [{"name": "throughput", "max": 3}]}},
                          "spec.rollout.canary.analysis.metrics[0].max", "does not apply"),
    "error rate 200%": ({"steps": STEPS, "analysis": {"metrics": [{"name": "errorRate", "max": 200}]}},
                        "spec.rollout.canary.analysis.metrics[0].max", "<= 100"),
    "ratio 0": ({"steps": STEPS, "analysis": {"metrics": [{"name": "errorRate", "maxRatio": 0}]}},
                "spec.rollout.canary.analysis.metrics[0].maxRatio", "> 0"),
    "query without revision": ({"steps": STEPS, "analysis": {"metrics": [
        {"name": "q", "query": 'x{namespace="{{namespace}}"}', "max": 1}]}},
        "spec.rollout.canary.analysis.metrics[0].query", "{{revision}}"),
    "unknown placeholder": ({"steps": STEPS, "analysis": {"metrics": [
        {"name": "q", "query": 'x{revision="{{revision}}",pod="{{pod}}"}', "max": 1}]}},
        "spec.rollout.canary.analysis.metrics[0].query", "{{pod}}"),
    "bad custom name": ({"steps": STEPS, "analysis": {"metrics": [
        {"name": "Q_1", "query": 'x{revision="{{revision}}"}', "max": 1}]}},
        "spec.rollout.canary.analysis.metrics[0].name", "lowercase letter"),
    "min > max": ({"steps": STEPS, "analysis": {"metrics": [
        {"name": "q", "query": 'x{revision="{{revision}}"}', "max": 1, "min": 2}]}},
        "spec.rollout.canary.analysis.metrics[0].min", "must be <="),
    "twice": ({"steps": STEPS, "analysis": {"metrics": [{"name": "errorRate", "max": 1},
                                                        {"name": "errorRate", "maxRatio": 2}]}},
              "spec.rollout.canary.analysis.metrics[1].name", "listed twice"),
    "bad outage limit": ({"steps": STEPS, "analysis": {"metricsOutageLimit": "forever"}},
                         "spec.rollout.canary.analysis.metricsOutageLimit", "duration"),
}


@pytest.mark.parametrize("case", BAD)
def test_rejected_naming_the_field(case):
    data, field, words = BAD[case]
    with pytest.raises(SpecError) as err:
        cs.parse_canary(data)
    assert err.value.field == field
    assert words in err.value.message, err.value.message


def test_render_query_fills_every_placeholder():
    q = 'sum(rate(x{namespace="{{namespace}}",revision="{{revision}}",model="{{model}}"}[30s]))'
    assert cs.render_query(q, namespace="ns", revision="r1", model="digits") == \
        'sum(rate(x{namespace="ns",revision="r1",model="digits"}[30s]))'


def test_docstring_examples():
    assert doctest.testmod(cs).failed == 0
