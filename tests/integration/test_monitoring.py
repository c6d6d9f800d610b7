"""Monitoring end to end in the sandbox: real conditions fire real alerts through Alertmanager, and the
dashboard's expressions return data while a model serves.

What these tests rely on (docs/monitoring.md, "The sandbox"):

- ``sandbox up`` starts the webhook receiver (``python -m modeldeploy.sandbox.webhook --port P``) and a real
  Alertmanager (``modeldeploy.sandbox.alertmanager.start(..., webhook_url=http://127.0.0.1:P/alerts)``), and
  exposes ``Sandbox.alertmanager_url`` and ``Sandbox.alert_webhook_url`` (``http://127.0.0.1:P``: GET
  ``/notifications``); ``sandbox env`` prints MODELDEPLOY_ALERTMANAGER_URL;
- the sandbox Prometheus loads ``rule_files: [alertmanager.write_rules(<prometheus dir>/rules/modeldeploy.yaml)]``
  (every ``for`` capped at 10 s), sends alerts to Alertmanager (``alerting: alertmanager.prometheus_alerting(...)``)
  and scrapes the operator (``alertmanager.operator_scrape_config(<operator metrics address>)``, job
  ``modeldeploy-operator``) at its 2 s interval;
- the ``operator`` fixture (and ``make demo``) run the operator with ``--metrics-address`` at that address, and
  the handlers call ``modeldeploy.metrics.observe/forget/record_reconcile``.

Timing bound: an alert reaches the webhook within its (capped) ``for`` plus one evaluation interval, plus
the scrape that brings the metric in, Alertmanager's ``group_wait`` and a margin for this shared machine.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import yaml
from kubernetes import client

from modeldeploy.api import constants as c
from modeldeploy.sandbox import alertmanager as am
from modeldeploy.sandbox import webhook

from ..unit.monitoring_tools import DASHBOARD, RULES
from .conftest import wait_for
from .test_dataplane import local_md, pod_url
from .test_operator import condition, create_md, digits, get_md, patch_md, pods_of, wait_ready

pytestmark = pytest.mark.integration

EVALUATION = 2.0  # the sandbox Prometheus' scrape and evaluation interval (sandbox/prometheus.py SCRAPE_INTERVAL)
FOR = am.parse_duration(am.SANDBOX_MAX_FOR)
GROUP_WAIT = 1.0  # alertmanager_config's default
MARGIN = 10.0  # shared 2-core machine: process scheduling, the operator's reconcile, HTTP
FIRE_WITHIN = FOR + EVALUATION + EVALUATION + GROUP_WAIT + MARGIN  # for + one evaluation + one scrape + group_wait
RESOLVE_WITHIN = EVALUATION + EVALUATION + 2.0 + MARGIN  # one scrape + one evaluation + group_interval

# Dashboard targets that have no data in the sandbox, and why. Everything else must return data.
EXPECTED_EMPTY = {
    "Canary weight A": "no canary runs in this test",
    "Canary weight and step A": "no canary runs in this test",
    "Canary weight and step B": "no canary runs in this test",
    "GPU utilisation A": "no GPU in the sandbox: Triton exports no nv_gpu_* series",
    "GPU utilisation B": "no dcgm-exporter in the sandbox",
    "GPU memory used A": "no GPU in the sandbox",
    "GPU memory used B": "no dcgm-exporter in the sandbox",
    "Replicas C": "the autoscaler (status.autoscaling) is not built yet; remove this line when it is",
}


def prom_query(url: str, expr: str) -> list[dict]:
    query = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def notifications(sandbox) -> list[dict]:
    with urllib.request.urlopen(f"{sandbox.alert_webhook_url}/notifications", timeout=5) as resp:
        return json.loads(resp.read())


def arrived(sandbox, alertname: str, status: str, namespace: str, within: float, what: str) -> tuple[dict, float]:
    """Wait for the webhook to have received ``alertname`` in ``status`` for ``namespace``; (row, seconds)."""
    start = time.monotonic()
    (row, *_) = wait_for(lambda: webhook.find(notifications(sandbox), alertname, status, namespace=namespace),
                         within, interval=0.25, what=what)
    return row, time.monotonic() - start


def test_rules_loaded_alertmanager_connected_operator_scraped(sandbox, operator):
    url = sandbox.prometheus_url
    names = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}

    def healthy():
        with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=10) as resp:
            groups = json.loads(resp.read())["data"]["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        return rules if names <= set(rules) and all(rules[n]["health"] == "ok" for n in names) else None
    rules = wait_for(healthy, 30, what="every alert rule loaded and evaluated without error")
    assert all(rules[n].get("lastError", "") == "" for n in names)

    def alertmanagers():  # Prometheus' notifier finds its Alertmanagers asynchronously after a (re)load
        with urllib.request.urlopen(f"{url}/api/v1/alertmanagers", timeout=10) as resp:
            return [a["url"] for a in json.loads(resp.read())["data"]["activeAlertmanagers"]]
    wait_for(lambda: alertmanagers() == [f"{sandbox.alertmanager_url}/api/v2/alerts"], 30,
             what="the sandbox Alertmanager active in Prometheus")
    wait_for(lambda: prom_query(url, f'up{{job="{am.OPERATOR_JOB}"}} == 1'), 30, what="the operator scraped")


def test_dashboard_expressions_return_data_while_the_demo_model_serves(api, operator, namespace, runner_node,
                                                                      digits_model, sandbox):
    import tritonclient.http as httpclient

    from ..unit.test_dashboard import expressions

    out, _ = digits_model
    model = out / "model.onnx"
    body = local_md("dash", f"file://{model}", sha256=hashlib.sha256(model.read_bytes()).hexdigest())
    body["spec"].pop("replicas", None)  # an objective for the latency panel, without any scaling room
    body["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1, "targetP99LatencyMilliseconds": 1000}
    create_md(api, namespace, body)
    wait_ready(api, namespace, "dash", timeout=120)

    x = np.load(out / "digits_test.npz")["x_test"].astype(np.float32)[:4]
    stop = threading.Event()

    def load():  # keep the model serving while the expressions are queried
        triton = httpclient.InferenceServerClient(pod_url(api, namespace, "dash"))
        try:
            while not stop.is_set():
                inp = httpclient.InferInput("input", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                triton.infer("digits", [inp])
        finally:
            triton.close()
    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    try:
        url = sandbox.prometheus_url
        variables = {"$__rate_interval": "30s", "$namespace": namespace, "$modeldeployment": "dash"}

        def substitute(expr: str) -> str:
            for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace(name, value)
            return expr
        wait_for(lambda: prom_query(url, f'sum(rate(nv_inference_request_success{{namespace="{namespace}"}}[30s])) > 0'),
                 60, what="Triton's request rate in Prometheus")
        empty = []
        for title, expr in expressions(json.loads(DASHBOARD.read_text())):
            result = prom_query(url, substitute(expr))  # a parse error fails here
            finite = [r for r in result if math.isfinite(float(r["value"][1]))]
            if title in EXPECTED_EMPTY:
                continue
            if not finite:
                empty.append(f"{title}: {expr}")
        assert empty == [], "expressions without data while the model serves:\n" + "\n".join(empty)
    finally:
        stop.set()
        sender.join(timeout=30)


def test_unschedulable_gpu_product_fires_not_ready_and_resolves_after_the_fix(api, operator, namespace, sandbox):
    body = digits(replicas=1)
    body["spec"]["resources"]["gpu"]["product"] = "NVIDIA-B200"  # no node has it
    create_md(api, namespace, body)
    wait_for(lambda: condition(get_md(api, namespace, "digits"), "Ready").get("reason") == c.REASON_UNSCHEDULABLE,
             60, what="Ready reason Unschedulable")
    row, took = arrived(sandbox, "ModelDeploymentNotReady", "firing", namespace, FIRE_WITHIN,
                        "ModelDeploymentNotReady at the webhook")
    assert row["labels"]["modeldeployment"] == "digits"
    assert f"ModelDeployment digits in namespace {namespace}" in row["annotations"]["description"]
    assert "(reason Unschedulable)" in row["annotations"]["description"]
    print(f"\nNotReady (Unschedulable) at the webhook {took:.1f} s after the operator reported it (for {FOR:.0f} s)")

    patch_md(api, namespace, "digits", {"spec": {"resources": {"gpu": {"product": "NVIDIA-H100-80GB-HBM3"}}}})
    wait_ready(api, namespace, "digits", timeout=90)
    _, took = arrived(sandbox, "ModelDeploymentNotReady", "resolved", namespace, RESOLVE_WITHIN,
                      "resolved ModelDeploymentNotReady")
    print(f"resolved at the webhook {took:.1f} s after Ready")


def test_failing_fetch_fires_and_resolves_after_the_fix(api, operator, namespace, runner_node, digits_model, sandbox):
    out, _ = digits_model
    create_md(api, namespace, copy.deepcopy(local_md("broken", f"file://{out}/no-such-model.onnx")))
    wait_for(lambda: condition(get_md(api, namespace, "broken"), "Ready").get("reason") == c.REASON_FETCH_FAILED,
             90, what="Ready reason ModelFetchFailed")
    row, took = arrived(sandbox, "ModelDeploymentNotReady", "firing", namespace, FIRE_WITHIN,
                        "ModelDeploymentNotReady (fetch failed) at the webhook")
    assert "(reason ModelFetchFailed)" in row["annotations"]["description"]
    print(f"\nNotReady (ModelFetchFailed) at the webhook {took:.1f} s after the operator reported it")

    model = out / "model.onnx"
    patch_md(api, namespace, "broken", {"spec": {"model": {"uri": f"file://{model}",
                                                           "sha256": hashlib.sha256(model.read_bytes()).hexdigest()}}})
    # The operator replaces the pods stuck fetching the old model (they have no agent to swap it): their
    # replacements fetch the fixed one, with no one deleting anything by hand.
    wait_ready(api, namespace, "broken", timeout=120)
    arrived(sandbox, "ModelDeploymentNotReady", "resolved", namespace, RESOLVE_WITHIN, "resolved NotReady")
    # Stalled (progress deadline 30 s in the tests) may have fired meanwhile; it resolves too.
    if webhook.find(notifications(sandbox), "ModelDeploymentStalled", namespace=namespace):
        arrived(sandbox, "ModelDeploymentStalled", "resolved", namespace, RESOLVE_WITHIN, "resolved Stalled")


def test_deleted_modeldeployment_leaves_no_series(api, operator, namespace, sandbox):
    create_md(api, namespace, digits(replicas=1))
    wait_ready(api, namespace, "digits", timeout=90)
    sel = f'modeldeploy_phase{{namespace="{namespace}",modeldeployment="digits",phase="Ready"}} == 1'
    wait_for(lambda: prom_query(sandbox.prometheus_url, sel), 30, what=sel)
    client.CustomObjectsApi(api).delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, "digits")
    # forget() drops the series; Prometheus marks them stale at the next scrape
    wait_for(lambda: not prom_query(sandbox.prometheus_url, f'modeldeploy_info{{namespace="{namespace}"}}'), 60,
             what="the deleted ModelDeployment's series gone")
