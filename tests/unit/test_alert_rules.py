"""The alert rules: valid for Prometheus, unit-tested with promtool on synthetic series, documented, and
rendered by the chart from the one rules file.

`promtool test rules tests/promtool/rules_test.yaml` is the behaviour test (each alert fires with its exact
labels and annotations, and stays silent where it must); the tests here make sure that file covers every
alert both ways, that every alert carries what a person needs (summary, a description naming the
ModelDeployment and its namespace, a runbook section that exists), and that the rules use the label names
the scrape configs attach.
"""

from __future__ import annotations

import re

import pytest
import yaml

from modeldeploy.metrics.samples import FAMILIES

from .monitoring_tools import (DOC, PROMETHEUS_LABELS, RULES, RULES_TEST, RUNBOOK_BASE, TARGET_LABELS, TRITON_LABELS,
                               doc_anchors, promtool, run)

OPERATOR_GROUP = "modeldeploy.operator"  # alerts about the operator itself name no ModelDeployment


def alerts() -> list[tuple[str, dict]]:
    doc = yaml.safe_load(RULES.read_text())
    return [(group["name"], rule) for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


ALERTS = alerts()
ALERT_IDS = [rule["alert"] for _, rule in ALERTS]


def test_issue_alerts_are_all_there():
    assert set(ALERT_IDS) >= {
        "ModelDeploymentNotReady", "ModelDeploymentStalled", "ModelDeploymentLatencyAboveObjective",
        "ModelDeploymentHighErrorRate", "ModelDeploymentQueueSaturated", "ModelDeploymentTritonMetricsMissing",
        "ModelDeploymentCanaryRolledBack", "ModelDeploymentCompressionGateFailed", "ModelDeployOperatorDown",
        "ModelDeployReconcileErrors"}
    assert len(ALERT_IDS) == len(set(ALERT_IDS))


def test_promtool_check_rules():
    out = run(promtool(), "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in out.stdout


def test_promtool_unit_tests_pass():
    out = run(promtool(), "test", "rules", str(RULES_TEST))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_unit_tests_cover_every_alert_firing_and_silent():
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", ())]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert set(ALERT_IDS) - fires == set(), "alerts never shown to fire"
    assert set(ALERT_IDS) - silent == set(), "alerts never shown to stay silent"


@pytest.mark.parametrize("group,rule", ALERTS, ids=ALERT_IDS)
def test_alert_annotations(group, rule):
    ann = rule["annotations"]
    assert set(ann) >= {"summary", "description", "runbook_url"}
    assert rule["labels"]["severity"] in ("warning", "critical")
    if group != OPERATOR_GROUP:
        for label in ("$labels.modeldeployment", "$labels.namespace"):
            assert label in ann["description"], f"{rule['alert']}: the description must name {label}"
    assert ann["runbook_url"] == f"{RUNBOOK_BASE}#{rule['alert'].lower()}"


def test_every_runbook_section_exists():
    anchors = doc_anchors(DOC.read_text())
    missing = [name for name in ALERT_IDS if name.lower() not in anchors]
    assert missing == [], f"docs/monitoring.md has no section for {missing}"


_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by (a textual scan; enough for our rules)."""
    names = set()
    for selector in re.findall(r"\{([^}]*)\}", expr):
        names.update(_MATCHER.findall(selector))
    for group in _GROUPING.findall(expr):
        names.update(n.strip() for n in group.split(",") if n.strip())
    return names


def test_label_scan_finds_names():
    assert label_names('sum by (namespace, pod) (x{a="1", b=~"2"}) / on (c) group_left () y') == {
        "namespace", "pod", "a", "b", "c"}


@pytest.mark.parametrize("group,rule", ALERTS, ids=ALERT_IDS)
def test_rules_use_known_label_names(group, rule):
    operator_labels = {label for family in FAMILIES.values() for label in family.labels} | {"outcome", "version"}
    known = TARGET_LABELS | TRITON_LABELS | PROMETHEUS_LABELS | operator_labels
    assert label_names(rule["expr"]) - known == set()


# --- the chart ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def helm():
    from modeldeploy.sandbox.tools import ensure_helm

    return ensure_helm()


def rendered(helm, *sets: str) -> list[dict]:
    from .monitoring_tools import CHART

    args = [a for s in sets for a in ("--set", s)]
    out = run(str(helm), "template", "md", str(CHART), "--namespace", "modeldeploy-system", *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_chart_prometheus_rule_is_off_by_default(helm):
    assert [d for d in rendered(helm) if d["kind"] == "PrometheusRule"] == []


def test_chart_prometheus_rule_renders_the_rules_file(helm):
    (rule,) = [d for d in rendered(helm, "prometheusRule.enabled=true", "prometheusRule.labels.release=kps")
               if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "modeldeploy-system"
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())  # the same groups, templates untouched


def test_chart_runbook_url_can_point_elsewhere(helm):
    (rule,) = [d for d in rendered(helm, "prometheusRule.enabled=true",
                                   "prometheusRule.runbookUrl=https://wiki.example.com/modeldeploy")
               if d["kind"] == "PrometheusRule"]
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert urls and all(u.startswith("https://wiki.example.com/modeldeploy#") for u in urls)
