"""A real Prometheus in the sandbox, finding Triton pods the way it does on a cluster.

Why: canary analysis and autoscaling read Triton's metrics through Prometheus; kwok's simulated pods
have none, but the pod runner's pods are real tritonservers listening on their own pod IPs. So the
sandbox runs Debian's ``prometheus`` binary with ``kubernetes_sd_configs`` (role ``pod``) against the
sandbox's API server, with its own ServiceAccount token and a ClusterRole that may only list and watch
pods, and the same relabeling a user puts in a cluster's Prometheus: :func:`scrape_config` is the one
source of both, and docs/monitoring.md ("Scraping Triton") shows it (a unit test keeps them equal). What
works in the sandbox is what users copy.

The label choice (the trade-off). Triton labels its own series ``model`` (the Triton model name) and
``version``. A target label of the same name would, with the default ``honor_labels: false``, push
Triton's into ``exported_model``; with ``honor_labels: true`` ours would be dropped instead. We keep
Triton's labels untouched (they say which model *in the server* a series is about; a Triton pod can
serve several) and name ours ``modeldeploy_model`` (the pod label ``modeldeploy.io/model``).
:data:`TARGET_LABELS` never overlaps :data:`TRITON_SERIES_LABELS`, so no renaming ever happens and
``honor_labels`` stays at its default. The label names are a contract: render/promql.py queries them.

Which Prometheus. Debian's package (2.42) is built without Kubernetes service discovery (its NEWS.Debian:
"Kubernetes support has been completely removed"), so the sandbox builds Prometheus 3.16 once from the Go
module proxy (``github.com/prometheus/prometheus`` v0.316.0, ``cmd/prometheus`` and ``cmd/promtool``) with the
build tags its README gives for a binary with only the service discoveries one needs
(``remove_all_sd,enable_kubernetes_sd``), into ``$MODELDEPLOY_CACHE/bin/prometheus-3.16.0/``, as the
control plane is built (a few minutes the first time; :func:`ensure_binary`). The web UI's assets are not
embedded (they need npm); the HTTP API, which is all the operator and the tests use, is complete.

Pure: :func:`scrape_config`, :func:`prometheus_config`, :func:`meta_label`, :func:`access_objects`,
:func:`command`. I/O: :func:`grant_access`, :func:`ensure_binary`, :func:`find_binary`, :func:`start`,
:func:`wait_ready`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from modeldeploy.api import constants as c

from modeldeploy.sandbox import processes

JOB = "triton"
SCRAPE_INTERVAL = "2s"
#: Pod label -> target label (besides ``namespace``, ``pod``, ``node``), attached by relabeling.
TARGET_LABELS: dict[str, str] = {
    c.LABEL_REVISION: "revision",
    c.LABEL_TRACK: "track",
    c.LABEL_DEPLOYMENT: "modeldeployment",
    c.LABEL_MODEL: "modeldeploy_model",
}
#: The target labels every Triton series carries (render/promql.py and adapters/prometheus.py read them).
CONTRACT_LABELS = ("namespace", "pod", "node", *TARGET_LABELS.values())
#: Labels Triton 2.51 puts on its own series (see FACTS.md); target labels must not reuse them.
TRITON_SERIES_LABELS = frozenset({"model", "version", "reason", "quantile", "gpu_uuid"})
#: The container port Prometheus scrapes, by name (render/triton.py names Triton's metrics port so).
METRICS_PORT_NAME = "metrics"
#: Where each piece lives under the sandbox's Prometheus folder.
CONFIG_FILE, TOKEN_FILE, CA_FILE, DATA_DIR = "prometheus.yml", "token", "ca.crt", "data"
#: The Prometheus the sandbox builds (Go module version v0.X.Y is Prometheus 3.X.Y... as tagged upstream).
MODULE, MODULE_VERSION, VERSION = "github.com/prometheus/prometheus", "v0.316.0", "3.16.0"
BUILD_TAGS = "remove_all_sd,enable_kubernetes_sd"
#: Prometheus' own identity in the sandbox: namespace, ServiceAccount, ClusterRole(Binding), token Secret.
NAMESPACE, ACCOUNT = "monitoring", "prometheus"
ROLE = "modeldeploy-sandbox-prometheus"
TOKEN_SECRET = "prometheus-token"


class PrometheusError(RuntimeError):
    """Prometheus did not start or did not become ready; the message ends with its log's tail."""


# --- pure ------------------------------------------------------------------------------------------
def meta_label(pod_label: str) -> str:
    """The ``__meta_kubernetes_pod_label_*`` name kubernetes_sd gives a pod label (non-alphanumerics -> ``_``).

    >>> meta_label("modeldeploy.io/revision")
    '__meta_kubernetes_pod_label_modeldeploy_io_revision'
    """
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


def relabel_configs() -> list[dict[str, Any]]:
    """Keep the Running modeldeploy pods' ``metrics`` container port; attach :data:`CONTRACT_LABELS`.

    Nothing else survives relabeling (``__meta_*`` labels are dropped after it), so a series carries Triton's
    own labels, ours, and ``job``/``instance`` (``<pod IP>:8002``).
    """
    return [
        {"source_labels": [meta_label(c.LABEL_DEPLOYMENT)], "regex": ".+", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": METRICS_PORT_NAME,
         "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
        *({"source_labels": [meta_label(pod_label)], "target_label": target}
          for pod_label, target in TARGET_LABELS.items()),
    ]


def scrape_config(interval: str | None = None, sd_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``triton`` scrape job. On a cluster (``sd_extra`` None) Prometheus runs in a pod and finds the API
    server and its token itself; the sandbox adds ``api_server``, ``tls_config`` and ``authorization``.

    >>> job = scrape_config()
    >>> job["kubernetes_sd_configs"], job["honor_labels"]
    ([{'role': 'pod'}], False)
    """
    job: dict[str, Any] = {"job_name": JOB}
    if interval:
        job["scrape_interval"] = interval
    job.update({
        "metrics_path": "/metrics",
        "honor_labels": False,  # explicit: target labels win; see the module docstring
        "kubernetes_sd_configs": [{"role": "pod", **(sd_extra or {})}],
        "relabel_configs": relabel_configs(),
    })
    return job


def prometheus_config(api_server: str, ca_file: Path | str, token_file: Path | str,
                      interval: str = SCRAPE_INTERVAL, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sandbox's whole ``prometheus.yml``: :func:`scrape_config` against the sandbox's API server.

    >>> sd = prometheus_config("https://127.0.0.1:6443", "/p/ca.crt", "/p/token")["scrape_configs"][0]
    >>> sd["kubernetes_sd_configs"][0]["authorization"]
    {'credentials_file': '/p/token'}
    """
    sd = {"api_server": api_server, "tls_config": {"ca_file": str(ca_file)},
          "authorization": {"credentials_file": str(token_file)}}
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [scrape_config(sd_extra=sd)],
    }
    # Alerting wiring (sandbox/alertmanager.py): rule_files, alerting, the operator's own scrape job.
    for key, value in (extra or {}).items():
        config[key] = config[key] + list(value) if key == "scrape_configs" else value
    return config


def access_objects() -> list[dict[str, Any]]:
    """Prometheus' identity in the sandbox: a ServiceAccount, a ClusterRole that may only list and watch pods
    (all that kubernetes_sd role ``pod`` does), its binding, and a long-lived token Secret (filled by
    kube-controller-manager) for a Prometheus that runs outside the cluster."""
    meta = {"namespace": NAMESPACE, "labels": {c.LABEL_MANAGED_BY: "modeldeploy-sandbox"}}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": ROLE, "labels": meta["labels"]},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": ROLE, "labels": meta["labels"]},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {"name": TOKEN_SECRET, **meta, "annotations": {"kubernetes.io/service-account.name": ACCOUNT}}},
    ]


def command(binary: Path | str, home: Path, port: int) -> list[str]:
    """The ``prometheus`` command line for a Prometheus folder ``home`` listening on 127.0.0.1:``port``.

    >>> command("/usr/bin/prometheus", Path("/s/prometheus"), 9091)[1:3]
    ['--config.file=/s/prometheus/prometheus.yml', '--storage.tsdb.path=/s/prometheus/data']
    """
    return [str(binary), f"--config.file={home / CONFIG_FILE}", f"--storage.tsdb.path={home / DATA_DIR}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d", "--log.level=info"]


# --- I/O -------------------------------------------------------------------------------------------
class Api(Protocol):
    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                ok: tuple[int, ...] = ()) -> tuple[int, Any]: ...


_PATHS = {"Namespace": "/api/v1/namespaces", "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
          "Secret": "/api/v1/namespaces/{ns}/secrets",
          "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
          "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"}


def grant_access(api: Api, timeout: float = 30.0) -> str:
    """Create :func:`access_objects` (existing ones are kept) and return the token once
    kube-controller-manager has put it into the Secret."""
    for obj in access_objects():
        path = _PATHS[obj["kind"]].format(ns=obj["metadata"].get("namespace", ""))
        api.request("POST", path, obj, ok=(409,))
    deadline = time.monotonic() + timeout
    path = f"/api/v1/namespaces/{NAMESPACE}/secrets/{TOKEN_SECRET}"
    while True:
        code, secret = api.request("GET", path, ok=(404,))
        token = ((secret or {}).get("data") or {}).get("token") if code == 200 else None
        if token:
            return base64.b64decode(token).decode()
        if time.monotonic() > deadline:
            raise PrometheusError(f"Secret {NAMESPACE}/{TOKEN_SECRET} got no token within {timeout:.0f}s "
                                  "(kube-controller-manager's token controller fills it)")
        time.sleep(0.2)


def write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by its owner only, replaced in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def binary_dir() -> Path:
    from modeldeploy.sandbox.binaries import cache_dir

    return cache_dir() / "bin" / f"prometheus-{VERSION}"


def find_binary() -> Path | None:
    """``$MODELDEPLOY_PROMETHEUS`` if set, else the sandbox's build (:func:`ensure_binary`) if made."""
    value = os.environ.get("MODELDEPLOY_PROMETHEUS")
    if value:
        return Path(value) if Path(value).is_file() else None
    built = binary_dir() / "prometheus"
    return built if (binary_dir() / ".complete").is_file() and built.is_file() else None


def find_promtool() -> Path | None:
    built = binary_dir() / "promtool"
    return built if built.is_file() else None


def build_command(go: str, gobin: Path) -> tuple[list[str], dict[str, str]]:
    """``go install`` of prometheus and promtool with only Kubernetes service discovery.

    >>> build_command("go", Path("/c/bin/prometheus-3.16.0"))[0][:3]
    ['go', 'install', '-tags=remove_all_sd,enable_kubernetes_sd']
    """
    ldflags = f"-X github.com/prometheus/common/version.Version={VERSION}"
    argv = [go, "install", f"-tags={BUILD_TAGS}", f"-ldflags={ldflags}",
            f"{MODULE}/cmd/prometheus@{MODULE_VERSION}", f"{MODULE}/cmd/promtool@{MODULE_VERSION}"]
    return argv, {"GOBIN": str(gobin), "GOFLAGS": "-mod=mod", "GO111MODULE": "on", "CGO_ENABLED": "0"}


def ensure_binary(out: Any = None, timeout: float = 3600.0) -> Path:
    """The Prometheus binary, built once (minutes on two cores) under a lock; later calls return at once."""
    import fcntl
    import sys

    found = find_binary()
    if found:
        return found
    folder = binary_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".prometheus-{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / ".complete").is_file():
            return folder / "prometheus"
        go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None)
        if go is None:
            raise PrometheusError("Prometheus with Kubernetes discovery is built with Go, and `go` is not installed")
        print(f"building Prometheus {VERSION} with Kubernetes discovery into {folder} (first time only; minutes)",
              file=out or sys.stderr, flush=True)
        argv, env = build_command(go, folder)
        with tempfile.TemporaryDirectory(prefix="modeldeploy-prometheus-") as tmp:
            proc = subprocess.run(argv, cwd=tmp, env={**os.environ, **env}, capture_output=True, text=True,
                                  timeout=timeout)
        if proc.returncode != 0 or not (folder / "prometheus").is_file():
            raise PrometheusError(f"building Prometheus failed (exit {proc.returncode}): "
                                  f"{(proc.stdout + proc.stderr)[-3000:]}")
        (folder / ".complete").write_text(f"{MODULE}@{MODULE_VERSION} tags {BUILD_TAGS}\n")
    return folder / "prometheus"


_free_port = processes.free_port


def wait_ready(url: str, proc: subprocess.Popen | None, log: Path, timeout: float) -> None:
    """Poll ``/-/ready`` until 200; fail early if the process exits."""
    processes.wait_http_ready(url, proc, log, timeout, "prometheus", PrometheusError)


def start(binary: Path, home: Path, log: Path, pidfile: Path, api_server: str, ca_pem: str, token: str,
          timeout: float = 30.0, extra: dict[str, Any] | None = None) -> tuple[str, int]:
    """Write the CA, token and config under ``home``, start Prometheus in its own session, record its pid,
    wait for ``/-/ready``. Returns (URL, pid); the caller stops it."""
    import yaml  # the sandbox's dependency; kept local so the pure parts import with the stdlib only

    (home / DATA_DIR).mkdir(parents=True, exist_ok=True)
    write_private(home / CA_FILE, ca_pem)
    write_private(home / TOKEN_FILE, token)
    config = prometheus_config(api_server, home / CA_FILE, home / TOKEN_FILE, extra=extra)
    (home / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = processes.start_daemon(command(binary, home, port), home, log, pidfile,
                                  lambda proc: wait_ready(url, proc, log, timeout))
    return url, proc.pid
