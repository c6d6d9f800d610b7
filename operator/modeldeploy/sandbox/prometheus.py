"""A real Prometheus in the sandbox, scraping every Triton pod the pod runner runs.

Why: canary analysis and autoscaling read Triton's metrics through Prometheus; kwok's simulated pods
have none, but the runner's pods (node ``local-0``) are real tritonservers with a real metrics port.
This module lets the sandbox run Debian's ``prometheus`` binary against them.

How targets are found. On a cluster, Prometheus would discover the pods with ``kubernetes_sd_configs``
(role ``pod``) and relabel pod metadata into target labels. In the sandbox the pod IPs are made up by
kwok and the runner's pods listen on loopback ports recorded in the pod annotation
``modeldeploy.io/local-ports``, so discovery is a ``file_sd_configs`` file that the runner rewrites
(atomically) whenever its set of Running pods changes: :func:`file_sd_groups` turns the runner's pod
objects into exactly the target labels the kubernetes_sd relabeling in ``docs/sandbox.md`` would attach.

The label choice (the trade-off). Triton labels its own series ``model`` (the Triton model name) and
``version``. A target label of the same name would, with the default ``honor_labels: false``, push
Triton's into ``exported_model``; with ``honor_labels: true`` ours would be dropped instead. We keep
Triton's labels untouched (they say which model *in the server* a series is about; a Triton pod can
serve several) and name ours ``modeldeploy_model`` (the pod label ``modeldeploy.io/model``).
:data:`TARGET_LABELS` never overlaps :data:`TRITON_SERIES_LABELS`, so no renaming ever happens and
``honor_labels`` stays at its default (target labels win, should Triton ever export one of ours).

Pure parts: :func:`prometheus_config`, :func:`file_sd_groups`, :func:`render_file_sd`,
:func:`command`. I/O: :func:`write_atomic`, :func:`find_binary`, :func:`start`, :func:`wait_ready`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modeldeploy.api import constants as c
from modeldeploy.sandbox.podrunner.claim import PORTS_ANNOTATION

JOB = "triton"
SCRAPE_INTERVAL = "2s"
#: Pod label -> target label, as ``labelmap``/``replace`` relabeling would attach them on a cluster.
TARGET_LABELS: dict[str, str] = {
    c.LABEL_MODEL: "modeldeploy_model",
    c.LABEL_REVISION: "revision",
    c.LABEL_DEPLOYMENT: "modeldeployment",
    c.LABEL_TRACK: "track",
}
#: Labels Triton 2.51 puts on its own series (see FACTS.md); target labels must not reuse them.
TRITON_SERIES_LABELS = frozenset({"model", "version", "reason", "quantile", "gpu_uuid"})
#: Where each piece lives under the sandbox's Prometheus folder.
CONFIG_FILE, TARGETS_FILE, DATA_DIR = "prometheus.yml", "targets/triton.json", "data"


class PrometheusError(RuntimeError):
    """Prometheus did not start or did not become ready; the message ends with its log's tail."""


# --- pure ------------------------------------------------------------------------------------------
def prometheus_config(targets_file: Path | str, interval: str = SCRAPE_INTERVAL) -> dict[str, Any]:
    """The whole ``prometheus.yml``: one job scraping the targets the runner writes to ``targets_file``.

    >>> cfg = prometheus_config("/s/targets/triton.json")
    >>> cfg["scrape_configs"][0]["file_sd_configs"]
    [{'files': ['/s/targets/triton.json'], 'refresh_interval': '2s'}]
    """
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": "/metrics",
            "honor_labels": False,  # explicit: target labels win; see the module docstring
            "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": interval}],
        }],
    }


def metrics_port(pod: Mapping[str, Any]) -> int | None:
    """The loopback port of the pod's Triton metrics port (container port 8002), if recorded.

    >>> metrics_port({"metadata": {"annotations": {PORTS_ANNOTATION: '{"8000": 41001, "8002": 41003}'}}})
    41003
    >>> metrics_port({"metadata": {"annotations": {PORTS_ANNOTATION: 'not json'}}}) is None
    True
    """
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(PORTS_ANNOTATION)
    try:
        port = json.loads(raw)[str(c.METRICS_PORT)] if raw else None
        return int(port) if port else None
    except (ValueError, TypeError, KeyError):
        return None


def file_sd_groups(pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One file_sd target group per Running pod that has a metrics port, sorted by namespace/pod.

    A pod that is terminating but still Running stays a target (as with kubernetes_sd), so its last
    counts are scraped while Triton drains. Pod labels absent on a pod are left out (Prometheus treats
    an empty label as no label).

    >>> pod = {"metadata": {"namespace": "ns", "name": "p", "labels": {c.LABEL_REVISION: "abc"},
    ...                     "annotations": {PORTS_ANNOTATION: '{"8002": 41003}'}},
    ...        "spec": {"nodeName": "local-0"}, "status": {"phase": "Running"}}
    >>> file_sd_groups([pod])
    [{'targets': ['127.0.0.1:41003'], 'labels': {'namespace': 'ns', 'pod': 'p', 'node': 'local-0', 'revision': 'abc'}}]
    """
    groups = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        port = metrics_port(pod)
        if (pod.get("status") or {}).get("phase") != "Running" or port is None:
            continue
        labels = {"namespace": meta.get("namespace", ""), "pod": meta.get("name", ""),
                  "node": (pod.get("spec") or {}).get("nodeName", "")}
        pod_labels = meta.get("labels") or {}
        labels.update({target: pod_labels[key] for key, target in TARGET_LABELS.items() if pod_labels.get(key)})
        groups.append({"targets": [f"127.0.0.1:{port}"], "labels": {k: v for k, v in labels.items() if v}})
    return sorted(groups, key=lambda g: (g["labels"].get("namespace", ""), g["labels"].get("pod", "")))


def render_file_sd(pods: Iterable[Mapping[str, Any]]) -> str:
    """The targets file's text: :func:`file_sd_groups` as stable JSON (same pods, same bytes)."""
    return json.dumps(file_sd_groups(pods), indent=2, sort_keys=True) + "\n"


def command(binary: Path | str, home: Path, port: int) -> list[str]:
    """The ``prometheus`` command line for a Prometheus folder ``home`` listening on 127.0.0.1:``port``.

    >>> command("/usr/bin/prometheus", Path("/s/prometheus"), 9091)[1:3]
    ['--config.file=/s/prometheus/prometheus.yml', '--storage.tsdb.path=/s/prometheus/data']
    """
    return [str(binary), f"--config.file={home / CONFIG_FILE}", f"--storage.tsdb.path={home / DATA_DIR}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d", "--log.level=info"]


# --- I/O -------------------------------------------------------------------------------------------
def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one step (temp file in the same folder, then rename), so Prometheus never
    reads a half-written targets file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def find_binary() -> Path | None:
    """``$MODELDEPLOY_PROMETHEUS`` if set, else ``prometheus`` on PATH (Debian: /usr/bin/prometheus)."""
    value = os.environ.get("MODELDEPLOY_PROMETHEUS") or shutil.which("prometheus")
    return Path(value) if value and Path(value).is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, size: int = 3000) -> str:
    try:
        data = path.read_bytes()[-size:]
    except OSError as exc:
        return f"(no log: {exc})"
    return data.decode(errors="replace")


def wait_ready(url: str, proc: subprocess.Popen | None, log: Path, timeout: float) -> None:
    """Poll ``/-/ready`` until 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PrometheusError(f"prometheus exited with {proc.returncode}; from {log}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise PrometheusError(f"prometheus at {url} not ready within {timeout:.0f}s ({last}); from {log}:\n{_tail(log)}")


def start(binary: Path, home: Path, log: Path, pidfile: Path, timeout: float = 30.0) -> tuple[str, int]:
    """Write the config (and an empty targets file unless the runner wrote one), start Prometheus in
    its own session, record its pid, wait for ``/-/ready``. Returns (URL, pid); the caller stops it."""
    targets = home / TARGETS_FILE
    targets.parent.mkdir(parents=True, exist_ok=True)
    (home / DATA_DIR).mkdir(parents=True, exist_ok=True)
    try:  # exclusive create: never overwrite what the runner already wrote (it renames over ours anyway)
        with open(targets, "x") as fh:
            fh.write("[]\n")
    except FileExistsError:
        pass
    import yaml  # the sandbox's dependency; kept local so the pure parts import with the stdlib only

    (home / CONFIG_FILE).write_text(yaml.safe_dump(prometheus_config(targets), sort_keys=False))
    port = _free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(command(binary, home, port), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=home, start_new_session=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(str(proc.pid))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log, timeout)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise
    return url, proc.pid
