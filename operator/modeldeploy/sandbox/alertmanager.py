"""A real Alertmanager for the sandbox, and the Prometheus settings that send it the project's alerts.

Why: the alert rules (charts/modeldeploy/files/prometheus-rules.yaml) are only worth trusting if they fire
for real: the operator's metrics scraped, a rule evaluated, the alert routed by Alertmanager and delivered to
a receiver, and resolved once the cause is gone. The sandbox runs Debian's ``prometheus-alertmanager``
(0.25) with one webhook receiver (:mod:`modeldeploy.sandbox.webhook`), so tests see exactly what a pager
would get.

The trade-off: the sandbox loads the same rules with every ``for`` capped (:func:`sandbox_rules`, default
10 s) and Alertmanager's grouping waits shortened, so an end-to-end test takes seconds instead of the
15 minutes a production ``for`` asks; expressions, labels and annotations are unchanged.

Pure parts: :func:`alertmanager_config`, :func:`command`, :func:`parse_duration`, :func:`format_duration`,
:func:`sandbox_rules`, :func:`prometheus_alerting`, :func:`operator_scrape_config`. I/O: :func:`find_binary`,
:func:`write_config`, :func:`start`, :func:`stop`, :func:`wait_ready`, :func:`post_alerts`, :func:`get_alerts`.

How the sandbox wires it (docs/monitoring.md, "The sandbox"): start the webhook receiver, then
Alertmanager with :func:`alertmanager_config` pointing at it, then Prometheus with ``rule_files`` = the
file :func:`write_rules` wrote and the ``alerting`` block of :func:`prometheus_alerting`, and a scrape job
:func:`operator_scrape_config` for the operator's ``--metrics-address``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modeldeploy.sandbox import processes

ROOT = Path(__file__).resolve().parents[3]
#: The rules file: the single source the chart renders too.
RULES_FILE = ROOT / "charts" / "modeldeploy" / "files" / "prometheus-rules.yaml"
CONFIG_FILE, DATA_DIR = "alertmanager.yml", "data"
RECEIVER = "webhook"
#: The alerts of one ModelDeployment go out together; the operator's own alerts form their own group.
GROUP_BY = ("alertname", "namespace", "modeldeployment")
OPERATOR_JOB = "modeldeploy-operator"
SANDBOX_MAX_FOR = "10s"


class AlertmanagerError(RuntimeError):
    """Alertmanager did not start, did not become ready, or refused a request; names the URL or log."""


# --- pure: Alertmanager ----------------------------------------------------------------------------
def alertmanager_config(webhook_url: str, group_wait: str = "1s", group_interval: str = "2s",
                        repeat_interval: str = "1h") -> dict[str, Any]:
    """The whole ``alertmanager.yml``: every alert to one webhook, resolved ones too, and one inhibition
    (a Stalled ModelDeployment's NotReady alert is redundant).

    >>> cfg = alertmanager_config("http://127.0.0.1:9/alerts")
    >>> cfg["receivers"][0]["webhook_configs"][0]
    {'url': 'http://127.0.0.1:9/alerts', 'send_resolved': True}
    >>> cfg["route"]["group_by"]
    ['alertname', 'namespace', 'modeldeployment']
    """
    return {
        "route": {"receiver": RECEIVER, "group_by": list(GROUP_BY), "group_wait": group_wait,
                  "group_interval": group_interval, "repeat_interval": repeat_interval},
        "receivers": [{"name": RECEIVER, "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
        "inhibit_rules": [{"source_matchers": ['alertname="ModelDeploymentStalled"'],
                           "target_matchers": ['alertname="ModelDeploymentNotReady"'],
                           "equal": ["namespace", "modeldeployment"]}],
    }


def command(binary: Path | str, home: Path, port: int) -> list[str]:
    """The command line: config and data under ``home``, API on 127.0.0.1:``port``, no HA gossip (an
    empty cluster address: a single instance, and no second port to collide with other sandboxes).

    >>> command("/usr/bin/prometheus-alertmanager", Path("/s/am"), 9093)[1:4]
    ['--config.file=/s/am/alertmanager.yml', '--storage.path=/s/am/data', '--web.listen-address=127.0.0.1:9093']
    """
    return [str(binary), f"--config.file={home / CONFIG_FILE}", f"--storage.path={home / DATA_DIR}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=info"]


# --- pure: Prometheus's side -----------------------------------------------------------------------
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float:
    """A Prometheus duration (``1h30m``, ``15m``, ``500ms``) in seconds.

    >>> parse_duration("1h30m"), parse_duration("500ms")
    (5400.0, 0.5)
    >>> parse_duration("15 minutes")
    Traceback (most recent call last):
    ...
    ValueError: '15 minutes' is not a Prometheus duration (e.g. 30s, 15m, 1h30m)
    """
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a Prometheus duration (e.g. 30s, 15m, 1h30m)")
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


def format_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration, in whole milliseconds.

    >>> format_duration(10), format_duration(0.25), format_duration(5400)
    ('10s', '250ms', '5400s')
    """
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def sandbox_rules(rules: Mapping[str, Any], max_for: str = SANDBOX_MAX_FOR) -> dict[str, Any]:
    """The rules with every ``for`` longer than ``max_for`` cut to it, and an annotation ``sandbox`` on those
    rules saying so (their summary and description speak of the production ``for``); nothing else changes.

    >>> doc = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "x", "for": "15m"},
    ...                                           {"alert": "B", "expr": "y"}]}]}
    >>> [r.get("for") for r in sandbox_rules(doc)["groups"][0]["rules"]]
    ['10s', None]
    >>> sandbox_rules(doc)["groups"][0]["rules"][0]["annotations"]
    {'sandbox': "sandbox: fired after 10s, not the rule's 15m"}
    """
    cap = parse_duration(max_for)
    groups = []
    for group in rules.get("groups") or ():
        new_rules = []
        for rule in group.get("rules") or ():
            rule = dict(rule)
            if "for" in rule and parse_duration(rule["for"]) > cap:
                # Say so where the alert is read: its text speaks of the production ``for``.
                note = f"sandbox: fired after {format_duration(cap)}, not the rule's {rule['for']}"
                rule["for"] = format_duration(cap)
                rule["annotations"] = {**(rule.get("annotations") or {}), "sandbox": note}
            new_rules.append(rule)
        groups.append({**group, "rules": new_rules})
    return {**rules, "groups": groups}


def prometheus_alerting(alertmanager_address: str) -> dict[str, Any]:
    """The ``alerting`` block of prometheus.yml that sends alerts to one Alertmanager (``host:port``).

    >>> prometheus_alerting("127.0.0.1:9093")
    {'alertmanagers': [{'api_version': 'v2', 'static_configs': [{'targets': ['127.0.0.1:9093']}]}]}
    """
    return {"alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": [alertmanager_address]}]}]}


def operator_scrape_config(target: str, interval: str = "2s") -> dict[str, Any]:
    """A scrape job for the operator's ``/metrics`` at ``target`` (``host:port``). ``honor_labels``: the
    operator's series carry the ModelDeployment's ``namespace``, which must not be renamed
    ``exported_namespace`` (the rules join it with Triton's series).

    >>> operator_scrape_config("127.0.0.1:8081")["honor_labels"]
    True
    """
    return {"job_name": OPERATOR_JOB, "honor_labels": True, "scrape_interval": interval,
            "scrape_timeout": interval, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}


# --- I/O ---------------------------------------------------------------------------------------------
def find_binary() -> Path | None:
    """``$MODELDEPLOY_ALERTMANAGER`` if set, else ``prometheus-alertmanager`` (Debian) or ``alertmanager``."""
    value = (os.environ.get("MODELDEPLOY_ALERTMANAGER") or shutil.which("prometheus-alertmanager")
             or shutil.which("alertmanager"))
    return Path(value) if value and Path(value).is_file() else None


def _dump(doc: Mapping[str, Any]) -> str:
    import yaml  # the sandbox's dependency; kept local so the pure parts import with the stdlib only

    return yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True)


def write_rules(path: Path, max_for: str = SANDBOX_MAX_FOR, source: Path = RULES_FILE) -> Path:
    """Write :func:`sandbox_rules` of the rules file to ``path`` (for Prometheus' ``rule_files``)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(sandbox_rules(yaml.safe_load(source.read_text()), max_for)))
    return path


def write_config(home: Path, webhook_url: str, **timing: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / DATA_DIR).mkdir(exist_ok=True)
    path = home / CONFIG_FILE
    path.write_text(_dump(alertmanager_config(webhook_url, **timing)))
    return path


free_port = processes.free_port


def wait_ready(url: str, proc: subprocess.Popen | None, log: Path, timeout: float) -> None:
    """Poll ``/-/ready`` until 200; fail early if the process exits."""
    processes.wait_http_ready(url, proc, log, timeout, "alertmanager", AlertmanagerError)


def start(binary: Path, home: Path, log: Path, pidfile: Path, webhook_url: str, timeout: float = 30.0,
          **timing: str) -> tuple[str, int]:
    """Write the config, start Alertmanager in its own session, record its pid, wait until ready.
    Returns (URL, pid); the caller stops it (SIGTERM)."""
    write_config(home, webhook_url, **timing)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = processes.start_daemon(command(binary, home, port), home, log, pidfile,
                                  lambda proc: wait_ready(url, proc, log, timeout))
    return url, proc.pid


def stop(pid: int, timeout: float = 15.0) -> bool:
    """SIGTERM the process group :func:`start` created (SIGKILL after ``timeout``); True once it is gone.
    Reaps it when it is this process's child."""
    import signal

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    return True
            except ChildProcessError:  # not our child: wait until it no longer exists
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
            time.sleep(0.1)
    return False


def _request(method: str, url: str, body: Any = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as err:
        raise AlertmanagerError(f"{method} {url}: HTTP {err.code}: {err.read().decode(errors='replace')[:300]}") from None
    except (OSError, urllib.error.URLError) as err:
        raise AlertmanagerError(f"{method} {url}: {err}") from None
    return json.loads(text) if text.strip() else None


def post_alerts(url: str, alerts: Iterable[Mapping[str, Any]]) -> None:
    """POST alerts to Alertmanager's API v2 (what Prometheus does): each ``{"labels", "annotations",
    "startsAt", "endsAt"?}``; an ``endsAt`` in the past resolves the alert."""
    _request("POST", f"{url}/api/v2/alerts", list(alerts))


def get_alerts(url: str, *matchers: str, inhibited: bool = True) -> list[dict[str, Any]]:
    """Alerts Alertmanager holds now, filtered by matchers such as ``alertname="X"``; each has
    ``status.state`` (active, suppressed) and ``status.inhibitedBy``."""
    query = "&".join([f"filter={urllib.request.quote(m)}" for m in matchers] + [f"inhibited={str(inhibited).lower()}"])
    return _request("GET", f"{url}/api/v2/alerts?{query}") or []
