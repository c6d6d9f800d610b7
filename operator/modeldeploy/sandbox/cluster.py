"""The local sandbox cluster: real control plane, kwok nodes, everything on 127.0.0.1.

What runs: etcd, kube-apiserver, kube-controller-manager, kube-scheduler (all v1.35, built from
source by `binaries`) and kwok-controller, started as plain processes by `kwokctl --runtime binary`.
kwokctl does the fiddly parts we would otherwise own: a CA plus admin certificate, the
service-account signing key and issuer (so TokenRequest / `kubectl create token` work), the flag
sets per component, pid files and log files. We give it only local binary paths, so it never
downloads anything, and explicit free loopback ports, so two sandboxes (different
MODELDEPLOY_SANDBOX_DIR) can run side by side.

What this module adds on top: readiness that means "usable" (apiserver /readyz, every component's
health endpoint, the fake GPU nodes Ready, the default ServiceAccount present), errors that name the
failing component with the tail of its log, and a `down` that verifies no process is left behind.

Beside the control plane, as a cluster's nodes and add-ons would be: a pod network (a claimed /24 of
10.244.0.0/16 whose addresses go on `lo`; sandbox/podnet.py), the pod runner (the kubelet of node
`local-0`), the gateway (a dev-only Gateway API controller driving HAProxy on the range's first address;
sandbox/gateway/), Prometheus discovering pods through the API server, and a supervisor that restarts a
control-plane component when it exits (sandbox/supervisor.py). Without the privilege to add addresses the
sandbox falls back to pods on 127.0.0.1 with mapped ports, and says so in one line.

Layout under the state dir (default `$MODELDEPLOY_CACHE/sandbox`):
    kwokctl.yaml                          the configuration we hand to kwokctl
    kwok/clusters/modeldeploy/            kwokctl's cluster workdir
        kubeconfig.yaml                   admin kubeconfig (KUBECONFIG)
        logs/<component>.log              one log per component
        pids/<component>.pid              one pid file per component
        podnet.json                       the pod network: mode, range, gateway address (or why none)
        prometheus/                       Prometheus config, its token and CA, TSDB, url (when installed)
        gateway/                          haproxy.cfg, HAProxy's sockets and log, url
        supervisor.json                   restarts per component
        pki/, etcd/                       certificates and etcd data
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, TextIO

import yaml

from . import binaries, nodes, podnet, processes, supervisor, tools
from . import alertmanager as alerting
from . import prometheus as prom
from .gateway import crds as gateway_crds
from .gateway import haproxy as gateway_haproxy
from .gateway.model import CONTROLLER_NAME as GATEWAY_CONTROLLER
from .podrunner import claim
from .podrunner.triton import TritonNotFound, find_wheel
from .kubeapi import KubeHttp, KubeHttpError

CLUSTER_NAME = "modeldeploy"
CONTEXT_NAME = f"kwok-{CLUSTER_NAME}"
RUNNER_NODE = "local-0"
RUNNER_GPUS = 8
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")
"""Start order; kwokctl names pid and log files after these."""
ADVERTISE_ADDRESS = "192.0.2.1"
"""RFC 5737 documentation address (TEST-NET-1): never routed, never a real host's."""
SERVICE_CIDR = "10.96.0.0/16"


class SandboxError(RuntimeError):
    """Bringing the sandbox up or down failed; `component` names the culprit when known."""

    def __init__(self, message: str, component: str | None = None, log_path: Path | None = None):
        super().__init__(message)
        self.component = component
        self.log_path = log_path


@dataclass(frozen=True)
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


def sandbox_dir() -> Path:
    """`$MODELDEPLOY_SANDBOX_DIR`, default `$MODELDEPLOY_CACHE/sandbox`."""
    value = os.environ.get("MODELDEPLOY_SANDBOX_DIR")
    return Path(value).expanduser() if value else binaries.cache_dir() / "sandbox"


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports the kernel reports free on `host` right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


#: Metadata-level audit of every API request (health probes excluded). The audit log is how the
#: benchmarks count the operator's API requests by user agent, without instrumenting the operator.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version"]},
        {"level": "Metadata"},
    ],
}


def kwokctl_config(bin_dir: Path, kubectl: Path, ports: Ports, kube_version: str,
                   cache_dir: Path, audit_policy: Path | None = None) -> dict[str, Any]:
    """The KwokctlConfiguration we pass with `--config`: local binaries only, loopback, our ports.

    Every binary path is local, which is what keeps kwokctl from downloading (it only fetches when
    a binary option is a URL). QPS limits are lifted because this is a single-user test cluster.
    With ``audit_policy``, the apiserver writes an audit log (logs/audit.log).
    """
    config = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {
            "runtime": "binary",
            "kubeVersion": kube_version,
            "bindAddress": "127.0.0.1",
            "securePort": True,
            "kubeAuthorization": True,
            "kubeAdmission": True,
            "disableQPSLimits": True,
            "quietPull": True,
            "cacheDir": str(cache_dir),
            "etcdBinary": str(bin_dir / "etcd"),
            "kubeApiserverBinary": str(bin_dir / "kube-apiserver"),
            "kubeControllerManagerBinary": str(bin_dir / "kube-controller-manager"),
            "kubeSchedulerBinary": str(bin_dir / "kube-scheduler"),
            "kwokControllerBinary": str(bin_dir / "kwok"),
            "kubectlBinary": str(kubectl),
            "etcdPort": ports.etcd,
            "etcdPeerPort": ports.etcd_peer,
            "kubeApiserverPort": ports.apiserver,
            "kubeControllerManagerPort": ports.controller_manager,
            "kubeSchedulerPort": ports.scheduler,
            "kwokControllerPort": ports.kwok,
        },
        "componentsPatches": [
            {
                "name": "kube-apiserver",
                "extraArgs": [
                    # kube-apiserver derives its advertise address from the default route and
                    # refuses to start without one (e.g. fully offline); loopback is not allowed
                    # in the `kubernetes` Endpoints. Nothing connects to this address: pods are
                    # simulated and clients use the loopback URL in the kubeconfig.
                    {"key": "advertise-address", "value": ADVERTISE_ADDRESS},
                    # kubeadm's default range; the implicit 10.0.0.0/24 is deprecated and overlaps
                    # the pod IPs kwok hands out.
                    {"key": "service-cluster-ip-range", "value": SERVICE_CIDR},
                ],
            },
        ],
    }
    # kwok manages only the annotated (simulated) nodes; the pod runner's node is left to the runner.
    config["componentsPatches"].append(claim.kwok_controller_patch())
    if audit_policy is not None:
        config["options"]["kubeAuditPolicy"] = str(audit_policy)
    return config


def kwokctl_create_args(kwokctl: Path, config_path: Path) -> list[str]:
    """`kwokctl create cluster` without touching ~/.kube/config (`--kubeconfig ""`)."""
    return [str(kwokctl), "--name", CLUSTER_NAME, "--config", str(config_path),
            "create", "cluster", "--runtime", "binary", "--kubeconfig", "", "--timeout", "5m"]


def kwokctl_delete_args(kwokctl: Path, cluster_kubeconfig: Path) -> list[str]:
    """`kwokctl delete cluster`. It insists on a kubeconfig to remove its context from (an empty
    value is an error there), so we name the cluster's own, which the delete removes anyway."""
    return [str(kwokctl), "--name", CLUSTER_NAME, "delete", "cluster",
            "--kubeconfig", str(cluster_kubeconfig)]


def format_kwokctl_line(line: str) -> str:
    """kwokctl logs JSON when not on a terminal; keep the message and the useful fields.

    >>> format_kwokctl_line('{"level":"INFO","msg":"Cluster is started","elapsed":{"human":"1.5s"}}')
    'Cluster is started (1.5s)'
    >>> format_kwokctl_line('plain text')
    'plain text'
    """
    line = line.rstrip()
    try:
        rec = json.loads(line)
    except ValueError:
        return line
    if not isinstance(rec, dict) or "msg" not in rec:
        return line
    text = str(rec["msg"])
    level = rec.get("level", "INFO")
    if level not in ("INFO", "DEBUG"):
        text = f"{level}: {text}"
    elapsed = rec.get("elapsed")
    if isinstance(elapsed, dict) and elapsed.get("human"):
        text += f" ({elapsed['human']})"
    for key in ("err", "component"):
        if rec.get(key):
            text += f" {key}={rec[key]}"
    return text


def kwokctl_env(state_dir: Path, tools_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for kwokctl: its workdir under our state dir, our kubectl first on PATH."""
    env = dict(os.environ if base is None else base)
    env["KWOK_WORKDIR"] = str(state_dir / "kwok")
    env["PATH"] = f"{tools_dir}{os.pathsep}{env.get('PATH', '')}"
    # Stop any user-level kwok settings from leaking in; everything comes from our --config.
    for key in [k for k in env if k.startswith("KWOK_") and k != "KWOK_WORKDIR"]:
        del env[key]
    return env


def export_line(kubeconfig: Path) -> str:
    return f"export KUBECONFIG={kubeconfig}"


_ERROR_LINE = re.compile(
    r'^\s*(error|fatal|panic|invalid)\b|unknown flag|^[EF]\d{4} |"level":"(error|fatal|panic)"|\blevel=(error|fatal)',
    re.IGNORECASE,
)


def log_excerpt(lines: list[str], tail: int = 15, errors: int = 5) -> str:
    """The last `tail` lines, preceded by the last few error-looking lines found before them.

    Components often print a long usage text after the one line that matters (`Error: unknown
    flag`), or keep logging after the first fatal error; this keeps both in view.
    """
    last = lines[-tail:]
    earlier = [l for l in lines[-400:-tail] if _ERROR_LINE.search(l)][-errors:]
    tail_errors = [l for l in last if _ERROR_LINE.search(l)]
    parts = []
    if tail_errors or earlier:
        parts.append("error lines:\n" + "".join((earlier + tail_errors)[-errors:]))
    parts.append("last lines:\n" + "".join(last))
    return "".join(parts)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as fh:
            return log_excerpt(list(deque(fh, maxlen=400)), tail=lines)
    except OSError as exc:
        return f"(no log: {exc})"


_pid_alive = processes.pid_alive


class Sandbox:
    """The sandbox cluster under one state dir. `up`, `down`, `status`, `is_up`."""

    def __init__(self, state_dir: Path | None = None, out: TextIO | None = None):
        self.state_dir = Path(state_dir) if state_dir else sandbox_dir()
        self.out = out or sys.stderr
        self._prometheus_binary: Path | None = None
        self._prometheus_missing = ""

    # --- paths -------------------------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        return self.state_dir / "kwok" / "clusters" / CLUSTER_NAME

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "kubeconfig.yaml"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "kwokctl.yaml"

    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def _pid(self, component: str) -> int | None:
        try:
            return int((self.workdir / "pids" / f"{component}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _ports(self) -> Ports | None:
        try:
            opts = yaml.safe_load(self.config_path.read_text())["options"]
            return Ports(opts["etcdPort"], opts["etcdPeerPort"], opts["kubeApiserverPort"],
                         opts["kubeControllerManagerPort"], opts["kubeSchedulerPort"],
                         opts["kwokControllerPort"])
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            return None

    def _say(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    # --- queries -----------------------------------------------------------------------------
    def running_components(self) -> dict[str, int | None]:
        """Component -> pid if its process is alive, else None."""
        result = {}
        for comp in COMPONENTS:
            pid = self._pid(comp)
            result[comp] = pid if pid is not None and _pid_alive(pid) else None
        return result

    def _api(self, timeout: float = 5.0) -> KubeHttp:
        return KubeHttp(self.kubeconfig_path, timeout=timeout)

    def is_up(self) -> bool:
        """All component processes alive and the apiserver answers /readyz with ok."""
        if not self.kubeconfig_path.is_file():
            return False
        if any(pid is None for pid in self.running_components().values()):
            return False
        try:
            return self._api(timeout=3).request("GET", "/readyz")[1] == "ok"
        except (KubeHttpError, OSError, ValueError, KeyError, StopIteration):
            return False

    def status(self) -> dict[str, Any]:
        """A whole picture: up?, where things live, each component's pid, nodes and their readiness."""
        running = self.running_components()
        info: dict[str, Any] = {
            "up": False,
            "state_dir": str(self.state_dir),
            "kubeconfig": str(self.kubeconfig_path),
            "logs_dir": str(self.logs_dir),
            "exists": self.workdir.is_dir(),
            "components": {
                comp: {"pid": pid, "running": pid is not None, "log": str(self.log_path(comp))}
                for comp, pid in running.items()
            },
        }
        ports = self._ports()
        if ports:
            info["ports"] = asdict(ports)
        # Add-ons, reported beside the components (each is optional, so not one of COMPONENTS).
        prom_pid = self._prometheus_pid()
        info["prometheus"] = {"url": self.prometheus_url, "pid": prom_pid, "running": prom_pid is not None,
                              "log": str(self.log_path("prometheus"))}
        info["network"] = self.network()
        gw_pid = self._alive_pid(self.gateway_pidfile)
        info["gateway"] = {"url": self.gateway_url, "pid": gw_pid, "running": gw_pid is not None,
                           "gateway": f"{gateway_crds.NAMESPACE}/{gateway_crds.GATEWAY}",
                           "log": str(self.log_path("gateway"))}
        sup_pid = self._alive_pid(self.supervisor_pidfile)
        info["supervisor"] = {"pid": sup_pid, "running": sup_pid is not None,
                              "restarts": supervisor.restarts(self.workdir), "log": str(self.log_path("supervisor"))}
        if not self.kubeconfig_path.is_file() or running["kube-apiserver"] is None:
            return info
        try:
            api = self._api(timeout=3)
            info["server"] = api.server
            info["readyz"] = api.request("GET", "/readyz", ok=(500,))[1]
            info["version"] = api.get("/version").get("gitVersion")
            node_list = api.get("/api/v1/nodes").get("items", [])
            info["nodes"] = {
                n["metadata"]["name"]: {
                    "ready": nodes.node_is_ready(n),
                    "gpus": n.get("status", {}).get("allocatable", {}).get(nodes.GPU_RESOURCE, "0"),
                    "product": n["metadata"].get("labels", {}).get("nvidia.com/gpu.product"),
                }
                for n in node_list
            }
        except (KubeHttpError, OSError, ValueError, KeyError, StopIteration, AttributeError) as exc:
            info["error"] = str(exc)
        info["up"] = (all(pid is not None for pid in running.values())
                      and info.get("readyz") == "ok")
        return info

    # --- up ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise up/down on one state dir (two `up`s at once would both create a cluster)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def up(self, timeout: float = 240.0) -> None:
        """Start the sandbox and wait until it is usable; a no-op (that says so) when already up.

        Progress goes to `self.out` (stderr); the final `export KUBECONFIG=...` line goes to
        stdout, so `eval "$(modeldeploy sandbox up)"` works.
        """
        with self._locked():
            self._up(timeout)

    def _up(self, timeout: float) -> None:
        if self.is_up():
            self._say(f"sandbox already up (state {self.state_dir})")
            print(self.env(), flush=True)
            return
        started = time.monotonic()
        bin_dir = binaries.ensure_control_plane(self.out)
        self._prometheus_binary, self._prometheus_missing = None, ""
        try:  # built once, like the control plane (Debian's has no Kubernetes discovery)
            self._prometheus_binary = prom.ensure_binary(self.out)
        except (prom.PrometheusError, OSError, subprocess.SubprocessError) as exc:
            self._prometheus_missing = str(exc)
        kubectl = tools.ensure_kubectl()
        if self.workdir.exists():
            self._say(f"found a stopped or broken sandbox in {self.workdir}; removing it first")
            self._down(quiet=True)

        ports = Ports(*free_ports(6))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        audit_policy = self.state_dir / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
        config = kwokctl_config(bin_dir, kubectl, ports, binaries.k8s_version(),
                                self.state_dir / "kwok-cache", audit_policy)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._say(f"starting sandbox control plane {binaries.k8s_version()} "
                  f"(apiserver https://127.0.0.1:{ports.apiserver}, logs in {self.logs_dir})")

        deadline = time.monotonic() + timeout  # builds above are not counted
        try:
            self._kwokctl_create(bin_dir, deadline)
            self._wait_ready(ports, deadline)
            api = self._api()
            nodes.apply_nodes(api, nodes.default_nodes())
            self._wait_nodes(api, [n["metadata"]["name"] for n in nodes.default_nodes()], deadline)
            self._wait_default_service_account(api, deadline)
            claimed = self._pod_network()
            try:
                runner = self._start_runner(api, deadline, claimed)
                runner += self._start_gateway(api, kubectl, deadline, claimed)
                runner += self._start_alerting(deadline)
                runner += self._start_prometheus(api, deadline)
                self._start_supervisor(claimed)
            finally:
                if claimed is not None:  # from here on the supervisor, runner and gateway controller hold it
                    claimed.release()
        except BaseException:
            self._stop_supervisor()
            self._stop_prometheus()
            self._stop_alerting()
            self._stop_gateway()
            self._stop_runner()
            left = self._stop_pids({c: p for c in COMPONENTS if (p := self._pid(c)) is not None})
            self._release_pod_network(self.network())
            self._say(f"sandbox did not come up; stopped its processes{' except ' + ', '.join(left) if left else ''}."
                      f" Component logs are kept in {self.logs_dir} until the next `up` or `down`")
            raise
        self._say(f"sandbox up in {time.monotonic() - started:.1f}s: 4 simulated nodes Ready "
                  f"(gpu-h100-0, gpu-h100-1, gpu-a100-0, cpu-0); {runner}; logs in {self.logs_dir}")
        print(self.env(), flush=True)

    # --- pod runner ------------------------------------------------------------------------
    @property
    def runner_pidfile(self) -> Path:
        return self.workdir / "pids" / "podrunner.pid"

    # --- pod network ------------------------------------------------------------------------
    @property
    def network_file(self) -> Path:
        return self.workdir / "podnet.json"

    def network(self) -> dict[str, Any] | None:
        """``{"mode": "pod-ips", "range", "gateway", "lock"}``, or ``{"mode": "loopback", "reason"}``; None before
        ``up`` decided."""
        try:
            return json.loads(self.network_file.read_text())
        except (OSError, ValueError):
            return None

    def pod_range(self) -> podnet.PodRange | None:
        net = self.network() or {}
        return podnet.PodRange.parse(net["range"]) if net.get("mode") == "pod-ips" else None

    def _pod_network(self) -> podnet.RangeClaim | None:
        """Claim a pod range and put its gateway address on lo; or decide the fallback and say why, once."""
        reason = None
        claimed = None
        if os.environ.get(podnet.MODE_ENV) == "loopback":
            reason = f"{podnet.MODE_ENV}=loopback"
        else:
            try:
                claimed = podnet.claim_range(str(self.state_dir))
                lo = podnet.addresses_for(claimed.pod_range)
                left = podnet.flush(claimed.pod_range, lo)  # a dead sandbox's leftovers: its claim was free
                if left:
                    self._say(f"pod network: removed {len(left)} address(es) a stopped sandbox left in "
                              f"{claimed.pod_range.cidr}")
                lo.add(claimed.pod_range.gateway)
            except (podnet.RangeBusy, podnet.AddressError) as exc:
                if claimed is not None:
                    claimed.release()
                claimed, reason = None, str(exc)
        if claimed is None:
            self.network_file.write_text(json.dumps({"mode": "loopback", "reason": reason}) + "\n")
            self._say(f"pod network: none ({reason}): pods listen on 127.0.0.1 with mapped ports; no gateway, no "
                      "Prometheus discovery; tests that need the network are skipped (and fail when CI=true)")
            return None
        rng = claimed.pod_range
        self.network_file.write_text(json.dumps({"mode": "pod-ips", "range": rng.cidr, "gateway": rng.gateway,
                                                 "lock": str(claimed.path)}) + "\n")
        return claimed

    def _release_pod_network(self, net: dict[str, Any] | None) -> list[str]:
        """Remove every address of the range ``net`` (read before kwokctl deleted the cluster folder) from lo,
        under the range's claim (taken again now that its holders are gone) so that a sandbox claiming it
        meanwhile loses nothing. Returns addresses still there."""
        net = net or {}
        if net.get("mode") != "pod-ips":
            return []
        rng, lock = podnet.PodRange.parse(net["range"]), Path(net["lock"])
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # already claimed by another sandbox: it removed our leftovers on claiming
                return []
            lo = podnet.addresses_for(rng)
            podnet.flush(rng, lo)
            return [ip for ip in lo.addresses() if rng.contains(ip)]

    # --- pod runner ------------------------------------------------------------------------
    def _start_runner(self, api: KubeHttp, deadline: float, claimed: podnet.RangeClaim | None = None) -> str:
        """Start the local pod runner (the kubelet of node local-0) when Triton is installed, on the claimed
        pod range (it inherits the claim) or, without one, with mapped loopback ports.

        Without the nvidia-pytriton wheel the sandbox still works, with simulated nodes only.
        """
        try:
            find_wheel(sys.prefix)
        except TritonNotFound:
            return (f"no pod runner: nvidia-pytriton is not installed in {sys.prefix} "
                    "(pip install '.[sandbox]' to run Triton pods for real)")
        log = open(self.logs_dir / "podrunner.log", "ab")
        cmd = [sys.executable, "-m", "modeldeploy.sandbox.podrunner", "--kubeconfig", str(self.kubeconfig_path),
               "--root", str(self.workdir / "podrunner"), "--node", RUNNER_NODE, "--gpus", str(RUNNER_GPUS)]
        if claimed is not None:
            cmd += ["--pod-cidr", claimed.pod_range.cidr]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                pass_fds=(claimed.fileno(),) if claimed is not None else ())
        self.runner_pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.runner_pidfile.write_text(str(proc.pid))
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SandboxError(f"pod runner exited with {proc.returncode}:\n{_tail(self.logs_dir / 'podrunner.log')}",
                                   component="podrunner", log_path=self.logs_dir / "podrunner.log")
            code, node = api.request("GET", f"/api/v1/nodes/{RUNNER_NODE}", ok=(404,))
            if code == 200 and nodes.node_is_ready(node):
                where = (f"pod IPs from {claimed.pod_range.cidr}" if claimed is not None
                         else "on 127.0.0.1, mapped ports")
                return f"pod runner on node {RUNNER_NODE} (pid {proc.pid}) runs Triton pods for real ({where})"
            time.sleep(0.2)
        raise SandboxError("pod runner did not register its node in time", component="podrunner",
                           log_path=self.logs_dir / "podrunner.log")

    def _stop_runner(self) -> None:
        try:
            pid = int(self.runner_pidfile.read_text())
        except (OSError, ValueError):
            return
        left = self._stop_pids({"podrunner": pid})
        if left:
            raise SandboxError(f"pod runner (pid {pid}) did not stop", component="podrunner")
        self.runner_pidfile.unlink(missing_ok=True)

    # --- Prometheus (optional: Debian's `prometheus`; see sandbox/prometheus.py) --------------------
    @property
    def prometheus_dir(self) -> Path:
        return self.workdir / "prometheus"

    @property
    def prometheus_pidfile(self) -> Path:
        return self.workdir / "pids" / "prometheus.pid"

    def _prometheus_pid(self) -> int | None:
        try:
            pid = int(self.prometheus_pidfile.read_text())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    @property
    def prometheus_url(self) -> str | None:
        """`http://127.0.0.1:PORT` of the sandbox's Prometheus while it runs, else None."""
        if self._prometheus_pid() is None:
            return None
        try:
            return (self.prometheus_dir / "url").read_text().strip() or None
        except OSError:
            return None

    def _start_prometheus(self, api: KubeHttp, deadline: float) -> str:
        binary = self._prometheus_binary or prom.find_binary()
        if binary is None:
            return f"; no Prometheus: {self._prometheus_missing or 'not built'}"
        if self.pod_range() is None:
            return "; no Prometheus: pods have no addresses of their own to scrape (no pod network)"
        try:
            token = prom.grant_access(api, timeout=max(5.0, deadline - time.monotonic()))
            url, pid = prom.start(binary, self.prometheus_dir, self.log_path("prometheus"), self.prometheus_pidfile,
                                  api.server, self._ca_pem(), token, timeout=max(5.0, deadline - time.monotonic()),
                                  extra=self._alerting_config())
        except (prom.PrometheusError, KubeHttpError) as exc:
            raise SandboxError(str(exc), component="prometheus", log_path=self.log_path("prometheus")) from exc
        (self.prometheus_dir / "url").write_text(url)
        return (f"; Prometheus {url} (pid {pid}) finds Triton pods through the API server "
                f"(ServiceAccount {prom.NAMESPACE}/{prom.ACCOUNT})")

    # --- alerting (Alertmanager + a webhook receiver; the rules and the operator's scrape in Prometheus) -----
    @property
    def alerting_dir(self) -> Path:
        return self.workdir / "alerting"

    def _read(self, path: Path) -> str | None:
        try:
            return path.read_text().strip() or None
        except OSError:
            return None

    @property
    def alertmanager_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` of the sandbox's Alertmanager while it runs, else None."""
        return self._read(self.alerting_dir / "alertmanager.url") if \
            self._alive_pid(self.alerting_dir / "alertmanager.pid") else None

    @property
    def alert_webhook_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` of the webhook receiver (``GET /notifications``) while it runs, else None."""
        return self._read(self.alerting_dir / "webhook.url") if self._alive_pid(self.alerting_dir / "webhook.pid") \
            else None

    @property
    def operator_metrics_address(self) -> str | None:
        """``127.0.0.1:PORT`` that the sandbox's Prometheus scrapes for the operator's own metrics: an operator
        run against this sandbox (the demo's, the tests') serves ``--metrics-address`` there."""
        return self._read(self.alerting_dir / "operator-metrics")

    def _start_alerting(self, deadline: float) -> str:
        """The webhook receiver and Alertmanager, and a port reserved for the operator's metrics."""
        binary = alerting.find_binary()
        if binary is None or prom.find_binary() is None:
            return "; no Alertmanager (make setup installs prometheus-alertmanager)"
        home = self.alerting_dir
        home.mkdir(parents=True, exist_ok=True)
        (home / "operator-metrics").write_text(f"127.0.0.1:{processes.free_port()}")
        port = processes.free_port()
        log = open(self.log_path("webhook"), "ab")
        proc = subprocess.Popen([sys.executable, "-m", "modeldeploy.sandbox.webhook", "--port", str(port),
                                 "--log", str(home / "notifications.jsonl")], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                                start_new_session=True)
        (home / "webhook.pid").write_text(str(proc.pid))
        webhook = f"http://127.0.0.1:{port}"
        (home / "webhook.url").write_text(webhook)
        try:
            url, pid = alerting.start(binary, home, self.log_path("alertmanager"), home / "alertmanager.pid",
                                      f"{webhook}/alerts", timeout=max(5.0, deadline - time.monotonic()))
        except alerting.AlertmanagerError as exc:
            raise SandboxError(str(exc), component="alertmanager", log_path=self.log_path("alertmanager")) from exc
        (home / "alertmanager.url").write_text(url)
        return f"; Alertmanager {url} (pid {pid}) notifies {webhook}"

    def _alerting_config(self) -> dict[str, Any] | None:
        """prometheus.yml additions when Alertmanager runs: the rules (``for`` capped), alerting, the operator job."""
        am_url, target = self.alertmanager_url, self.operator_metrics_address
        if am_url is None or target is None:
            return None
        rules = alerting.write_rules(self.alerting_dir / "rules" / "modeldeploy.yaml")
        return {"rule_files": [str(rules)], "alerting": alerting.prometheus_alerting(am_url.split("://", 1)[1]),
                "scrape_configs": [alerting.operator_scrape_config(target)]}

    def _stop_alerting(self) -> None:
        for name in ("alertmanager", "webhook"):
            pidfile = self.alerting_dir / f"{name}.pid"
            try:
                pid = int(pidfile.read_text())
            except (OSError, ValueError):
                continue
            if not alerting.stop(pid):
                raise SandboxError(f"{name} (pid {pid}) did not stop", component=name)
            pidfile.unlink(missing_ok=True)

    def _ca_pem(self) -> str:
        """The API server's CA, from the kubeconfig (file or inline data)."""
        cluster = yaml.safe_load(self.kubeconfig_path.read_text())["clusters"][0]["cluster"]
        if cluster.get("certificate-authority-data"):
            import base64

            return base64.b64decode(cluster["certificate-authority-data"]).decode()
        return Path(cluster["certificate-authority"]).read_text()

    def _stop_prometheus(self) -> None:
        try:
            pid = int(self.prometheus_pidfile.read_text())
        except (OSError, ValueError):
            return
        if self._stop_pids({"prometheus": pid}):
            raise SandboxError(f"prometheus (pid {pid}) did not stop", component="prometheus")
        self.prometheus_pidfile.unlink(missing_ok=True)

    # --- gateway (Gateway API CRDs, GatewayClass + Gateway, the dev-only controller; sandbox/gateway/) --------
    @property
    def gateway_dir(self) -> Path:
        return self.workdir / "gateway"

    @property
    def gateway_pidfile(self) -> Path:
        return self.workdir / "pids" / "gateway.pid"

    @staticmethod
    def _alive_pid(pidfile: Path) -> int | None:
        try:
            pid = int(pidfile.read_text())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    @property
    def gateway_url(self) -> str | None:
        """``http://<gateway address>`` while the gateway runs, else None."""
        if self._alive_pid(self.gateway_pidfile) is None:
            return None
        try:
            return (self.gateway_dir / "url").read_text().strip() or None
        except OSError:
            return None

    def _start_gateway(self, api: KubeHttp, kubectl: Path, deadline: float,
                       claimed: podnet.RangeClaim | None) -> str:
        if claimed is None:
            return "; no gateway (no pod network)"
        if gateway_haproxy.find_binary() is None:
            return "; no gateway: `haproxy` is not installed (apt-get install haproxy, or make setup)"
        log_path = self.log_path("gateway")
        try:
            gateway_crds.install(kubectl, self.kubeconfig_path, gateway_crds.ensure_crds())
            for obj in gateway_crds.gateway_objects(GATEWAY_CONTROLLER):
                plural = {"GatewayClass": "gatewayclasses", "Gateway": "gateways", "Namespace": "namespaces"}[obj["kind"]]
                ns = obj["metadata"].get("namespace")
                base = "/api/v1" if obj["kind"] == "Namespace" else "/apis/gateway.networking.k8s.io/v1"
                api.request("POST", f"{base}{f'/namespaces/{ns}' if ns else ''}/{plural}", obj, ok=(409,))
        except (gateway_crds.CrdError, KubeHttpError, OSError) as exc:
            raise SandboxError(f"gateway: {exc}", component="gateway") from exc
        address = claimed.pod_range.gateway
        self.gateway_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "modeldeploy.sandbox.gateway", "--kubeconfig", str(self.kubeconfig_path),
               "--gateway", f"{gateway_crds.NAMESPACE}/{gateway_crds.GATEWAY}", "--address", address,
               "--pod-cidr", claimed.pod_range.cidr, "--dir", str(self.gateway_dir)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    pass_fds=(claimed.fileno(),))
        self.gateway_pidfile.write_text(str(proc.pid))
        try:
            gateway_crds.wait_programmed(api, max(5.0, deadline - time.monotonic()))
        except (gateway_crds.CrdError, KubeHttpError) as exc:
            raise SandboxError(f"gateway: {exc}; from {log_path}:\n{_tail(log_path)}", component="gateway",
                               log_path=log_path) from exc
        url = f"http://{address}" + ("" if gateway_crds.LISTENER_PORT == 80 else f":{gateway_crds.LISTENER_PORT}")
        (self.gateway_dir / "url").write_text(url)
        return f"; gateway {url} (Gateway {gateway_crds.NAMESPACE}/{gateway_crds.GATEWAY}, HAProxy, pid {proc.pid})"

    def _stop_gateway(self) -> None:
        pid = self._alive_pid(self.gateway_pidfile)
        if pid is not None and self._stop_pids({"gateway": pid}):
            raise SandboxError(f"gateway controller (pid {pid}) did not stop", component="gateway")
        self.gateway_pidfile.unlink(missing_ok=True)

    # --- supervisor ------------------------------------------------------------------------------
    @property
    def supervisor_pidfile(self) -> Path:
        return self.workdir / "pids" / "supervisor.pid"

    def _start_supervisor(self, claimed: podnet.RangeClaim | None = None) -> None:
        """Start the supervisor; it also holds the pod range's claim for as long as the sandbox lives (the runner
        and the gateway controller hold it too, but either may be absent)."""
        cmd = [sys.executable, "-m", "modeldeploy.sandbox.supervisor", "--workdir", str(self.workdir),
               *(arg for comp in COMPONENTS for arg in ("--component", comp))]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        with open(self.log_path("supervisor"), "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    pass_fds=(claimed.fileno(),) if claimed is not None else ())
        self.supervisor_pidfile.write_text(str(proc.pid))

    def _stop_supervisor(self) -> None:
        pid = self._alive_pid(self.supervisor_pidfile)
        if pid is not None and self._stop_pids({"supervisor": pid}):
            raise SandboxError(f"supervisor (pid {pid}) did not stop", component="supervisor")
        self.supervisor_pidfile.unlink(missing_ok=True)

    def _kwokctl_create(self, bin_dir: Path, deadline: float) -> None:
        """Run `kwokctl create cluster`, echoing its log; stop early if a component dies.

        kwokctl itself waits up to two minutes for the apiserver to answer and does not notice a
        component that exited, so we watch the pid files it writes while it runs.
        """
        cmd = kwokctl_create_args(bin_dir / "kwokctl", self.config_path)
        env = kwokctl_env(self.state_dir, tools.tools_dir())
        tail: deque[str] = deque(maxlen=30)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, start_new_session=True)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line)
                self._say("  kwokctl: " + format_kwokctl_line(line))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        dead = None
        while proc.poll() is None:
            dead = self._first_dead_started_component()
            if dead or time.monotonic() > deadline:
                proc.kill()
                break
            time.sleep(0.2)
        rc = proc.wait()
        reader.join(timeout=5)
        dead = dead or self._first_dead_started_component()
        if dead:
            raise self._component_error(dead, "sandbox start failed")
        if rc != 0:
            if time.monotonic() > deadline:
                raise SandboxError("kwokctl create cluster did not finish before the deadline:\n"
                                   + "".join(tail))
            raise SandboxError(f"kwokctl create cluster failed (exit {rc}):\n" + "".join(tail))

    def _first_dead_started_component(self) -> str | None:
        """A component whose pid file exists but whose process is gone (it crashed)."""
        for comp in COMPONENTS:
            pid = self._pid(comp)
            if pid is not None and not _pid_alive(pid):
                return comp
        return None

    def _first_dead_component(self) -> str | None:
        for comp, pid in self.running_components().items():
            if pid is None:
                return comp
        return None

    def _component_error(self, component: str, what: str) -> SandboxError:
        log = self.log_path(component)
        return SandboxError(f"{what}: {component} is not running; from {log}:\n{_tail(log)}",
                            component=component, log_path=log)

    def _check_alive(self) -> None:
        dead = self._first_dead_component()
        if dead:
            raise self._component_error(dead, "sandbox start failed")

    def _wait_ready(self, ports: Ports, deadline: float) -> None:
        """apiserver /readyz, then each component's own health endpoint."""
        api = self._api(timeout=5)
        last = ""
        while True:
            self._check_alive()
            try:
                code, body = api.request("GET", "/readyz?verbose", ok=(500, 503))
                if code == 200:
                    break
                last = "\n".join(l for l in str(body).splitlines() if l.startswith("[-]"))
            except KubeHttpError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                log = self.log_path("kube-apiserver")
                raise SandboxError(
                    f"kube-apiserver not ready before the deadline; failing checks:\n{last}\n"
                    f"last lines of {log}:\n{_tail(log)}", component="kube-apiserver", log_path=log)
            time.sleep(0.5)
        health = {
            "kube-controller-manager": f"https://127.0.0.1:{ports.controller_manager}/healthz",
            "kube-scheduler": f"https://127.0.0.1:{ports.scheduler}/healthz",
        }
        insecure = ssl._create_unverified_context()  # noqa: S323 - self-signed serving certs
        for comp, url in health.items():
            while True:
                self._check_alive()
                try:
                    with urllib.request.urlopen(url, context=insecure, timeout=3) as resp:
                        if resp.status == 200:
                            break
                except OSError as exc:
                    last = str(exc)
                if time.monotonic() > deadline:
                    log = self.log_path(comp)
                    raise SandboxError(f"{comp} not healthy before the deadline ({url}: {last}); "
                                       f"last lines of {log}:\n{_tail(log)}", component=comp, log_path=log)
                time.sleep(0.5)

    def _wait_nodes(self, api: KubeHttp, names: list[str], deadline: float) -> None:
        pending = set(names)
        while True:
            self._check_alive()
            items = api.get("/api/v1/nodes").get("items", [])
            ready = {n["metadata"]["name"] for n in items if nodes.node_is_ready(n)}
            pending = set(names) - ready
            if not pending:
                return
            if time.monotonic() > deadline:
                log = self.log_path("kwok-controller")
                raise SandboxError(f"nodes not Ready before the deadline: {sorted(pending)}; "
                                   f"last lines of {log}:\n{_tail(log)}",
                                   component="kwok-controller", log_path=log)
            time.sleep(0.5)

    def _wait_default_service_account(self, api: KubeHttp, deadline: float) -> None:
        """Pods are refused until kube-controller-manager creates `default` in the namespace."""
        while True:
            self._check_alive()
            code, _ = api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default", ok=(404,))
            if code == 200:
                return
            if time.monotonic() > deadline:
                log = self.log_path("kube-controller-manager")
                raise SandboxError("ServiceAccount default/default not created before the deadline; "
                                   f"last lines of {log}:\n{_tail(log)}",
                                   component="kube-controller-manager", log_path=log)
            time.sleep(0.5)

    # --- down --------------------------------------------------------------------------------
    def down(self, quiet: bool = False) -> None:
        """Stop every component and remove the cluster's state; verify no process is left."""
        if not self.state_dir.exists():
            if not quiet:
                self._say(f"sandbox not running (nothing in {self.state_dir})")
            return
        with self._locked():
            self._down(quiet)

    def _down(self, quiet: bool) -> None:
        if not self.workdir.exists() and not self.config_path.exists():
            if not quiet:
                self._say(f"sandbox not running (nothing in {self.state_dir})")
            return
        network = self.network()  # before kwokctl removes the cluster folder
        self._stop_supervisor()  # first: it would start what we stop
        self._stop_prometheus()
        self._stop_alerting()
        self._stop_gateway()
        self._stop_runner()
        pids = {comp: pid for comp in COMPONENTS if (pid := self._pid(comp)) is not None}
        pids.update({f"other:{pid}": pid for pid in self._processes_using_workdir()})
        kwokctl = binaries.control_plane_dir() / "kwokctl"
        if kwokctl.is_file() and self.workdir.exists():
            env = kwokctl_env(self.state_dir, tools.tools_dir())
            proc = subprocess.run(kwokctl_delete_args(kwokctl, self.kubeconfig_path),
                                  env=env, capture_output=True, text=True)
            if proc.returncode != 0 and not quiet:
                self._say(f"kwokctl delete cluster exited {proc.returncode}; stopping processes directly\n"
                          + proc.stdout[-1000:] + proc.stderr[-1000:])
        left = self._stop_pids(pids)
        left += [f"pid {pid}" for pid in self._processes_using_workdir()]
        if left:
            raise SandboxError(f"processes still running after down: {', '.join(sorted(set(left)))}")
        addresses = self._release_pod_network(network)
        if addresses:
            raise SandboxError(f"addresses still on lo after down: {', '.join(addresses)}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.config_path.unlink()
        if not quiet:
            self._say(f"sandbox down; no component process left (state {self.state_dir} cleared)")

    def _stop_pids(self, pids: dict[str, int]) -> list[str]:
        """SIGTERM, wait, SIGKILL whatever kwokctl did not stop. Returns what survived."""
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            alive = {c: p for c, p in pids.items() if _pid_alive(p)}
            if not alive:
                return []
            for pid in alive.values():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            end = time.monotonic() + wait_s
            while time.monotonic() < end and any(_pid_alive(p) for p in alive.values()):
                time.sleep(0.1)
        return [f"{c} (pid {p})" for c, p in pids.items() if _pid_alive(p)]

    def _processes_using_workdir(self) -> list[int]:
        """Pids whose command line mentions this sandbox's workdir (catches lost pid files)."""
        needle = str(self.workdir).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline and _pid_alive(int(entry.name)):
                found.append(int(entry.name))
        return found

    def env(self) -> str:
        """`export KUBECONFIG=...`, plus `export MODELDEPLOY_PROMETHEUS_URL=...` while Prometheus runs and
        `export MODELDEPLOY_GATEWAY_URL=...` while the gateway does."""
        lines = [export_line(self.kubeconfig_path)]
        if (url := self.prometheus_url):
            lines.append(f"export MODELDEPLOY_PROMETHEUS_URL={url}")
        if (url := self.gateway_url):
            lines.append(f"export MODELDEPLOY_GATEWAY_URL={url}")
        if (url := self.alertmanager_url):
            lines.append(f"export MODELDEPLOY_ALERTMANAGER_URL={url}")
        if (address := self.operator_metrics_address) and url:
            lines.append(f"export MODELDEPLOY_METRICS_ADDRESS={address}")
        return "\n".join(lines)
