"""Shared by the monitoring tests: where the rules, dashboard and docs are, and the real binaries they run.

A missing binary skips a test on a developer's machine but fails it in CI (CI=true), where `make setup`
installs Debian's prometheus (promtool) and prometheus-alertmanager.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
RULES = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
RULES_TEST = ROOT / "tests" / "promtool" / "rules_test.yaml"
DOC = ROOT / "docs" / "monitoring.md"
RUNBOOK_BASE = "https://github.com/modeldeploy/modeldeploy/blob/main/docs/monitoring.md"

# Label names a rule or panel may use: the target labels of every Triton scrape config of this project
# (render/promql.py, adapters/prometheus.py), Triton's own series labels, the operator's metric labels
# (metrics/samples.py FAMILIES, exporter outcome) and Prometheus' job/instance.
TARGET_LABELS = {"namespace", "pod", "node", "revision", "track", "modeldeployment", "modeldeploy_model"}
TRITON_LABELS = {"model", "version", "reason", "quantile", "gpu_uuid"}
PROMETHEUS_LABELS = {"job", "instance", "__name__"}


def require_binary(name: str, package: str, env: str | None = None) -> str:
    """The binary's path; skip when missing, except in CI where `make setup` must have installed it."""
    path = (os.environ.get(env) if env else None) or shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian package {package}; `make setup` installs it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}, and CI=true: the monitoring tests must run in CI")
    pytest.skip(message)


def promtool() -> str:
    return require_binary("promtool", "prometheus", "MODELDEPLOY_PROMTOOL")


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to dashes.

    >>> github_anchor("ModelDeploymentNotReady"), github_anchor("Scraping Triton")
    ('modeldeploymentnotready', 'scraping-triton')
    """
    kept = "".join(ch for ch in heading.strip().lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def doc_anchors(text: str) -> set[str]:
    return {github_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
