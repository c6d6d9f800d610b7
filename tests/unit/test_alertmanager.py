"""Alertmanager for the sandbox: its config checked by amtool, the Prometheus side checked by promtool, and
both run for real.

- Alertmanager alone: an alert posted through its API arrives at the webhook receiver, then its
  resolution; a Stalled ModelDeployment's NotReady alert is inhibited.
- The whole chain without Kubernetes: the operator's metrics endpoint (a ModelDeployment observed as
  Stalled) scraped by a real Prometheus that loads the sandbox's copy of the rules and sends to a real
  Alertmanager, which notifies the webhook; observing the ModelDeployment Ready again resolves it.

The same chain driven by a real cluster condition is tests/integration/test_monitoring.py (needs the
sandbox wiring).
"""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from modeldeploy.metrics.exporter import OperatorMetrics
from modeldeploy.sandbox import alertmanager as am
from modeldeploy.sandbox import webhook
from modeldeploy.sandbox.webhook import WebhookReceiver

from .monitoring_tools import RULES, promtool, require_binary, run

NS, MD = "alerting-test", "digits"


def test_docstring_examples():
    for module in (am, webhook):
        assert doctest.testmod(module).failed == 0, module.__name__


def alertmanager_binary() -> str:
    found = am.find_binary()
    return str(found) if found else require_binary("prometheus-alertmanager", "prometheus-alertmanager")


def test_config_passes_amtool(tmp_path: Path):
    amtool = require_binary("amtool", "prometheus-alertmanager")
    path = am.write_config(tmp_path, "http://127.0.0.1:1/alerts")
    out = run(amtool, "check-config", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_sandbox_rules_only_shorten_for_and_say_so(tmp_path: Path):
    source = yaml.safe_load(RULES.read_text())
    short = yaml.safe_load(am.write_rules(tmp_path / "rules.yaml", "10s").read_text())
    pairs = [(a, b) for ga, gb in zip(source["groups"], short["groups"]) for a, b in zip(ga["rules"], gb["rules"])]
    assert len(pairs) == sum(len(g["rules"]) for g in source["groups"])
    shortened = 0
    for before, after in pairs:
        cut = "for" in before and am.parse_duration(before["for"]) > 10.0
        note = (after.get("annotations") or {}).get("sandbox")
        assert note == (f"sandbox: fired after 10s, not the rule's {before['for']}" if cut else None)
        annotations = {k: v for k, v in (after.get("annotations") or {}).items() if k != "sandbox"}
        assert annotations == (before.get("annotations") or {})
        keep = ("for", "annotations")
        assert {k: v for k, v in after.items() if k not in keep} == {k: v for k, v in before.items() if k not in keep}
        if "for" in before:
            assert am.parse_duration(after["for"]) == min(am.parse_duration(before["for"]), 10.0)
        shortened += cut
    assert shortened >= 1
    out = run(promtool(), "check", "rules", str(tmp_path / "rules.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("text,seconds", [("15m", 900), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172800)])
def test_parse_duration(text, seconds):
    assert am.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1.5m", "15 m", "15mm", "-1s"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        am.parse_duration(text)


def prometheus_yml(tmp_path: Path, operator_target: str, alertmanager_address: str, rules: Path) -> Path:
    cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
           "rule_files": [str(rules)],
           "alerting": am.prometheus_alerting(alertmanager_address),
           "scrape_configs": [am.operator_scrape_config(operator_target, interval="1s")]}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_prometheus_side_passes_promtool(tmp_path: Path):
    rules = am.write_rules(tmp_path / "rules.yaml")
    out = run(promtool(), "check", "config", str(prometheus_yml(tmp_path, "127.0.0.1:8081", "127.0.0.1:9093", rules)))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout


# --- real processes -------------------------------------------------------------------------------------
class Process:
    """A process started here, in its own session, stopped (and waited for) at the end of the test."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


@pytest.fixture
def receiver():
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: WebhookReceiver):
    binary = Path(alertmanager_binary())
    home = tmp_path / "alertmanager"
    url, pid = am.start(binary, home, tmp_path / "alertmanager.log", tmp_path / "alertmanager.pid", receiver.url)
    yield url
    assert am.stop(pid), f"alertmanager (pid {pid}) did not stop"


def alert(name: str, ends: datetime | None = None, **labels: str) -> dict:
    now = datetime.now(timezone.utc)
    body = {"labels": {"alertname": name, "namespace": NS, "modeldeployment": MD, "severity": "warning", **labels},
            "annotations": {"summary": "test", "description": f"ModelDeployment {MD} in namespace {NS}"},
            "startsAt": (now - timedelta(seconds=5)).isoformat()}
    if ends is not None:
        body["endsAt"] = ends.isoformat()
    return body


def test_alert_posted_to_alertmanager_reaches_the_webhook_and_resolves(alertmanager, receiver):
    am.post_alerts(alertmanager, [alert("ModelDeploymentNotReady")])
    (row,) = receiver.wait_for(lambda n: webhook.find(n, "ModelDeploymentNotReady", namespace=NS), 30,
                               "firing ModelDeploymentNotReady")
    assert row["annotations"]["description"] == f"ModelDeployment {MD} in namespace {NS}"
    am.post_alerts(alertmanager, [alert("ModelDeploymentNotReady", ends=datetime.now(timezone.utc))])
    receiver.wait_for(lambda n: webhook.find(n, "ModelDeploymentNotReady", "resolved", namespace=NS), 30,
                      "resolved ModelDeploymentNotReady")


def poll(predicate, timeout: float, what: str):
    """``predicate()`` once it is truthy, polled until ``timeout`` seconds; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.2)
    return result


def test_stalled_inhibits_not_ready_of_the_same_modeldeployment(alertmanager, receiver):
    am.post_alerts(alertmanager, [alert("ModelDeploymentStalled"), alert("ModelDeploymentNotReady"),
                                  alert("ModelDeploymentNotReady", modeldeployment="other")])
    receiver.wait_for(lambda n: webhook.find(n, "ModelDeploymentStalled"), 30, "firing ModelDeploymentStalled")
    receiver.wait_for(lambda n: webhook.find(n, "ModelDeploymentNotReady", modeldeployment="other"), 30,
                      "NotReady of another ModelDeployment (not inhibited)")
    # Alertmanager marks an inhibited alert on its own schedule: wait for the mark, with a deadline.
    (held,) = poll(lambda: [a for a in am.get_alerts(alertmanager, 'alertname="ModelDeploymentNotReady"',
                                                     f'modeldeployment="{MD}"') if a["status"]["state"] == "suppressed"],
                   30, f"NotReady of {MD} suppressed")
    assert held["status"]["inhibitedBy"], held["status"]
    assert not webhook.find(receiver.notifications(), "ModelDeploymentNotReady", modeldeployment=MD)


def test_prometheus_fires_a_rule_on_operator_metrics_through_alertmanager(tmp_path, alertmanager, receiver):
    """Operator metrics -> Prometheus rule -> Alertmanager -> webhook, and back to resolved."""
    prometheus = require_binary("prometheus", "prometheus", "MODELDEPLOY_PROMETHEUS")
    metrics = OperatorMetrics()
    stalled = {"phase": "Failed", "readyReplicas": 0, "conditions": [
        {"type": "Ready", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "0/1 available"},
        {"type": "Stalled", "status": "True", "reason": "ProgressDeadlineExceeded", "message": "0/1 available"}]}
    ready = {"phase": "Ready", "readyReplicas": 1, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Available", "message": "1/1"},
        {"type": "Stalled", "status": "False", "reason": "Available", "message": "1/1"}]}
    server, thread = metrics.serve("127.0.0.1:0")
    rules = am.write_rules(tmp_path / "rules.yaml", max_for="2s")
    config = prometheus_yml(tmp_path, f"127.0.0.1:{server.server_address[1]}", alertmanager.split("//")[1], rules)
    port = am.free_port()
    prom = Process([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "prometheus.log")
    try:
        metrics.observe(NS, MD, stalled, {"replicas": 1})
        start = time.monotonic()
        (row,) = receiver.wait_for(lambda n: webhook.find(n, "ModelDeploymentStalled", namespace=NS), 90,
                                   f"ModelDeploymentStalled from Prometheus (log {prom.log})")
        fired = time.monotonic() - start
        assert row["labels"]["modeldeployment"] == MD and row["labels"]["severity"] == "critical"
        assert row["annotations"]["description"].startswith(
            f"ModelDeployment {MD} in namespace {NS} is Stalled (reason ProgressDeadlineExceeded):")
        assert row["labels"]["job"] == am.OPERATOR_JOB  # honor_labels kept our namespace and added the job
        # NotReady fires in Prometheus too, and Alertmanager holds it back (inhibited by Stalled).
        notready = receiver.wait_for(
            lambda _: am.get_alerts(alertmanager, 'alertname="ModelDeploymentNotReady"'), 60,
            "ModelDeploymentNotReady at Alertmanager")
        assert notready[0]["status"]["state"] == "suppressed"
        metrics.observe(NS, MD, ready, {"replicas": 1})
        start = time.monotonic()
        receiver.wait_for(lambda n: webhook.find(n, "ModelDeploymentStalled", "resolved", namespace=NS), 90,
                          "resolved ModelDeploymentStalled")
        resolved = time.monotonic() - start
        print(f"\nStalled observed -> webhook firing {fired:.1f} s; Ready observed -> webhook resolved {resolved:.1f} s "
              "(scrape and evaluation 1 s, for capped at 2 s, group_wait 1 s, group_interval 2 s)")
        assert not webhook.find(receiver.notifications(), "ModelDeploymentNotReady")
    finally:
        prom.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
