"""The Grafana dashboard: well-formed, every PromQL expression parsed by Prometheus' own engine and
returning finite data on synthetic series of one serving ModelDeployment, and shipped by the chart as a
ConfigMap for Grafana's sidecar.

The expressions run through `promtool test rules` (Prometheus' parser and query engine, no server): one
`promql_expr_test` per expression asks `count((E) == (E)) > bool 0` to be 1, which fails on a parse
error, on an empty result and on a result that is only NaN (e.g. a division by a series that is always
0). Grafana's variables are replaced by values of the synthetic ModelDeployment first. Whether the
expressions return data from a real sandbox while the demo model serves is
tests/integration/test_monitoring.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from .monitoring_tools import (CHART, DASHBOARD, PROMETHEUS_LABELS, TARGET_LABELS, TRITON_LABELS, promtool, run)
from .test_alert_rules import label_names

NS, MD = "ml", "digits"
VARIABLES = {"$__rate_interval": "2m", "$namespace": NS, "$modeldeployment": MD}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def expressions(dash: dict) -> list[tuple[str, str]]:
    """(panel title + refId, expr) for every target, and the selectors of the variables' label_values()."""
    out = [(f"{p['title']} {t['refId']}", t["expr"]) for p in dash["panels"] for t in p.get("targets", ())]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
            assert match, f"variable {var['name']}: expected label_values(selector, label), got {query!r}"
            out.append((f"variable {var['name']}", match.group(1)))
    return out


def substitute(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def test_dashboard_shape():
    dash = dashboard()
    assert dash["uid"] == "modeldeploy-model" and dash["title"]
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "namespace", "modeldeployment"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert 'namespace="$namespace"' in target["expr"] and 'modeldeployment="$modeldeployment"' in target["expr"], (
                f"{panel['title']}: every query is about the selected ModelDeployment")


def test_panels_the_issue_asks_for():
    exprs = {title.rsplit(" ", 1)[0]: [] for title, _ in expressions(dashboard())}
    for title, expr in expressions(dashboard()):
        exprs[title.rsplit(" ", 1)[0]].append(expr)
    text = json.dumps(exprs)
    for metric in ("nv_inference_request_success", "nv_inference_request_failure", 'quantile=\\"0.5\\"',
                   'quantile=\\"0.99\\"', "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
                   "modeldeploy_replicas_ready", "modeldeploy_replicas_desired", "modeldeploy_canary_weight",
                   "DCGM_FI_DEV_GPU_UTIL", "nv_gpu_utilization"):
        assert metric in text, metric


def test_panels_do_not_overlap():
    cells = {}
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_expressions_use_known_label_names():
    from modeldeploy.metrics.samples import FAMILIES

    known = (TARGET_LABELS | TRITON_LABELS | PROMETHEUS_LABELS
             | {label for family in FAMILIES.values() for label in family.labels})
    for title, expr in expressions(dashboard()):
        assert label_names(expr) - known == set(), title


# --- synthetic series of one ModelDeployment: two pods, two revisions (stable and canary) ---------------
def synthetic_series() -> list[dict]:
    pods = [("digits-stable-a", "gpu-1", "r1", "stable"), ("digits-canary-b", "gpu-2", "r2", "canary")]
    series = []

    def add(name: str, labels: dict, values: str) -> None:
        body = ",".join(f'{k}="{v}"' for k, v in labels.items())
        series.append({"series": f"{name}{{{body}}}", "values": values})

    ids = {"namespace": NS, "modeldeployment": MD}
    op = {"job": "modeldeploy-operator", "instance": "op:8081", **ids}
    for phase in ("Pending", "Progressing", "Ready", "Degraded", "Failed"):
        add("modeldeploy_phase", {**op, "phase": phase}, "1x30" if phase == "Ready" else "0x30")
    add("modeldeploy_replicas_ready", op, "2x30")
    add("modeldeploy_replicas_desired", op, "2x30")
    add("modeldeploy_autoscaler_desired_replicas", op, "2x30")
    add("modeldeploy_model_version", {**op, "model": MD}, "3x30")
    add("modeldeploy_canary_weight", op, "20x30")
    add("modeldeploy_canary_step", op, "1x30")
    add("modeldeploy_latency_objective_seconds", {**op, "quantile": "0.99"}, "0.25x30")
    for pod, node, revision, track in pods:
        target = {"job": "triton", "instance": f"{pod}:8002", **ids, "pod": pod, "node": node, "revision": revision,
                  "track": track, "modeldeploy_model": MD}
        triton = {**target, "model": MD, "version": "3"}
        add("up", target, "1x30")
        add("nv_inference_request_success", triton, "0+600x30")
        add("nv_inference_request_failure", {**triton, "reason": "BACKEND"}, "0+6x30")
        add("nv_inference_count", triton, "0+2400x30")
        add("nv_inference_exec_count", triton, "0+300x30")
        add("nv_inference_queue_duration_us", triton, "0+1200000x30")
        for part in ("input", "infer", "output"):
            add(f"nv_inference_compute_{part}_duration_us", triton, "0+3000000x30")
        for q, v in (("0.5", "4000"), ("0.9", "6000"), ("0.99", "9000")):
            add("nv_inference_request_summary_us", {**triton, "quantile": q}, f"{v}x30")
        add("nv_inference_pending_request_count", triton, "3x30")
        add("nv_gpu_utilization", {**target, "gpu_uuid": f"GPU-{pod}"}, "0.5x30")
        add("nv_gpu_memory_used_bytes", {**target, "gpu_uuid": f"GPU-{pod}"}, "8e9x30")
        # dcgm-exporter's own target (honor_labels: its pod/namespace labels are the GPU's user)
        dcgm = {"job": "dcgm-exporter", "instance": f"{node}:9400", "gpu": "0", "UUID": f"GPU-{pod}",
                "Hostname": node, "modelName": "NVIDIA H100 80GB HBM3", "namespace": NS, "pod": pod,
                "container": "triton"}
        add("DCGM_FI_DEV_GPU_UTIL", dcgm, "55x30")
        add("DCGM_FI_DEV_FB_USED", dcgm, "8000x30")
    return series


def test_synthetic_series_cover_every_metric_the_dashboard_reads():
    have = {s["series"].split("{")[0] for s in synthetic_series()}
    used = set()
    for _, expr in expressions(dashboard()):
        used.update(m for m in re.findall(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\s*\{", expr))
    assert used - have == set()


def test_every_expression_returns_finite_data_on_synthetic_series(tmp_path: Path):
    exprs = expressions(dashboard())
    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": synthetic_series(),
        "promql_expr_test": [{"expr": f"count(({substitute(e)}) == ({substitute(e)})) > bool 0", "eval_time": "20m",
                              "exp_samples": [{"labels": "{}", "value": 1}]} for _, e in exprs],
    }]}
    path = tmp_path / "dashboard_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    out = run(promtool(), "test", "rules", str(path))
    assert out.returncode == 0, "\n".join(f"{t}: {e}" for t, e in exprs) + "\n" + out.stdout + out.stderr


def test_the_check_can_fail(tmp_path: Path):
    """The same harness on a broken and on an always-empty expression fails."""
    for expr in ('sum(rate(nv_inference_request_success{namespace="ml"}[2m]) by (pod))',  # parse error
                 'nv_inference_request_success{namespace="nowhere"}'):  # no data
        tests = {"rule_files": [], "tests": [{"interval": "1m", "input_series": synthetic_series(),
                                              "promql_expr_test": [{"expr": f"count(({expr}) == ({expr})) > bool 0",
                                                                    "eval_time": "20m",
                                                                    "exp_samples": [{"labels": "{}", "value": 1}]}]}]}
        path = tmp_path / "t.yaml"
        path.write_text(yaml.safe_dump(tests))
        assert run(promtool(), "test", "rules", str(path)).returncode != 0, expr


# --- the chart ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def helm():
    from modeldeploy.sandbox.tools import ensure_helm

    return ensure_helm()


def configmaps(helm, *sets: str) -> list[dict]:
    args = [a for s in sets for a in ("--set", s)]
    out = run(str(helm), "template", "md", str(CHART), "--namespace", "modeldeploy-system", *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "ConfigMap"
            and d["metadata"]["name"].endswith("-dashboard")]


def test_chart_dashboard_is_off_by_default(helm):
    assert configmaps(helm) == []


def test_chart_dashboard_configmap_for_the_grafana_sidecar(helm):
    (cm,) = configmaps(helm, "grafanaDashboard.enabled=true", "grafanaDashboard.namespace=monitoring",
                       "grafanaDashboard.annotations.grafana_folder=modeldeploy")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "modeldeploy"}
    assert json.loads(cm["data"]["modeldeploy.json"]) == dashboard()
