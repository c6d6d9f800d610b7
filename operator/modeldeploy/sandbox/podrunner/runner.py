"""The I/O half of the pod runner: the kubelet loop for one node, over plain processes.

Every ``period`` seconds (level-based, like the rest of modeldeploy): list the pods bound to the
runner's node, and for each one materialise its volumes, start what :func:`lifecycle.next_starts`
says, reap exits, run due probes, and merge-patch ``status`` when :func:`lifecycle.pod_status`
differs from what is stored. Every ``heartbeat`` seconds: renew the node's Lease and Ready condition,
so the node lifecycle controller keeps the node Ready.

The network, as a CNI plugin would do it: with a pod range (``--pod-cidr``, the sandbox's claim; see
sandbox/podnet.py) each pod gets the next free address of the range, put on ``lo`` before its first
container starts and written as ``status.podIP``; its processes bind that address on their real container
ports, and the address is removed once the pod's processes are gone. Without a range (the fallback when
addresses cannot be added) pods are 127.0.0.1 with free loopback ports mapped per container port.

Deletion, in the kubelet's order: the pod's endpoint leaves the EndpointSlices the moment the API server
sets ``deletionTimestamp`` (the EndpointSlice controller's doing, not ours); each container's preStop hook
runs (``sleep``, ``httpGet``), then SIGTERM; readiness is still probed and status still written while the
pod terminates; SIGKILL at the end of the grace period; then the pod is removed with
``gracePeriodSeconds=0`` (the kubelet's last step) and its address released.

All decisions are in :mod:`.lifecycle`, :mod:`.plan`, :mod:`.claim` and :mod:`.triton`; this module
only carries them out. It talks to the API server with the sandbox's small REST client (dicts in and
out, the shapes the pure functions take) and polls rather than watches: a sandbox node has a handful
of pods, and a list every half second against a local API server costs nothing next to Triton.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from modeldeploy.sandbox import podnet
from modeldeploy.sandbox.kubeapi import KubeHttp, KubeHttpError
from modeldeploy.sandbox.podrunner import claim, lifecycle, plan, triton
from modeldeploy.sandbox.podrunner.lifecycle import Run

MERGE = "application/merge-patch+json"
#: Seconds between two refreshes of a running pod's Secret/ConfigMap volumes (the kubelet's sync is ~1 min).
VOLUME_SYNC_SECONDS = 10.0
LEASE_SECONDS = 40


@dataclass
class PodState:
    pod: dict[str, Any]
    first_seen: float
    runs: dict[str, Run] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)
    volumes_ready: bool = False
    volumes_synced: float = 0.0  # when API-backed volumes were last written (the kubelet refreshes them too)
    kill_deadline: float | None = None
    ip: str | None = None
    """The pod's address (pod network), None until given or in the loopback fallback."""
    term_at: dict[str, float] = field(default_factory=dict)
    """Terminating: when each container gets SIGTERM (after its preStop hook)."""
    termed: set[str] = field(default_factory=set)

    @property
    def address(self) -> str:
        return self.ip or "127.0.0.1"


def _free_ports() -> Any:
    """Loopback ports free right now, never the same one twice in this runner's life."""
    given: set[int] = set()
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in given:
            given.add(port)
            yield port


def _pdeathsig() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child get SIGTERM when the runner's thread dies (Linux
    ``PR_SET_PDEATHSIG``), so a killed runner does not leave Triton holding the pod's ports. ``prctl`` is
    resolved here, in the parent: the child only calls it (no imports between fork and exec). The signal
    follows the *thread* that started the child: call ``sync_once`` from one long-lived thread."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    term = int(signal.SIGTERM)
    return lambda: prctl(1, term)  # PR_SET_PDEATHSIG = 1


def _tail(path: Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - size))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


class PodRunner:
    def __init__(self, api: KubeHttp, config: plan.HostConfig, node_name: str = "local-0", gpus: int = 1,
                 period: float = 0.5, heartbeat: float = 10.0, clock: Callable[[], float] = time.time,
                 out: TextIO | None = None, pod_range: podnet.PodRange | None = None,
                 addresses: podnet.Addresses | None = None):
        self.api, self.config, self.node_name, self.gpus = api, config, node_name, gpus
        # The pod network (None: loopback fallback with mapped ports) and who puts addresses on lo.
        self.pod_range = pod_range
        self.addresses = addresses or (podnet.addresses_for(pod_range) if pod_range else podnet.NoAddresses())
        self._last_ip: str | None = None
        self.period, self.heartbeat_every, self.clock = period, heartbeat, clock
        self.out = out or sys.stderr
        self.pods: dict[str, PodState] = {}
        self._last_heartbeat = 0.0
        self._ports = _free_ports()
        self._preexec = _pdeathsig()

    def say(self, msg: str) -> None:
        print(f"podrunner: {msg}", file=self.out, flush=True)

    # --- node --------------------------------------------------------------------------------------
    def register_node(self) -> None:
        node = claim.runner_node(self.node_name, self.gpus, self.pod_range.cidr if self.pod_range else None)
        code, existing = self.api.request("POST", "/api/v1/nodes", node, ok=(409,))
        if code == 409:
            existing = self.api.get(f"/api/v1/nodes/{self.node_name}")
            if (existing.get("spec") or {}).get("podCIDR") != node["spec"].get("podCIDR"):
                # spec.podCIDR is immutable once set: a node left by a runner of another range is replaced.
                self.api.request("DELETE", f"/api/v1/nodes/{self.node_name}", ok=(404,))
                self._wait_node_gone()
                self.api.request("POST", "/api/v1/nodes", node)
            else:
                self.api.request("PATCH", f"/api/v1/nodes/{self.node_name}",
                                 {"metadata": {"labels": node["metadata"]["labels"]},
                                  "spec": {"taints": node["spec"]["taints"]}}, content_type=MERGE)
        self.api.request("PATCH", f"/api/v1/nodes/{self.node_name}/status",
                         {"status": {k: node["status"][k] for k in ("capacity", "allocatable", "addresses",
                                                                    "nodeInfo")}}, content_type=MERGE)
        self.heartbeat(force=True)

    def heartbeat(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_heartbeat < self.heartbeat_every:
            return
        self._last_heartbeat = now
        stamp = lifecycle.iso(now)
        conds = [{"type": t, "status": "False", "reason": f"KubeletHas{r}", "lastHeartbeatTime": stamp}
                 for t, r in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                              ("PIDPressure", "SufficientPID"))]
        conds.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                      "message": "modeldeploy pod runner is posting ready status", "lastHeartbeatTime": stamp})
        node = self.api.get(f"/api/v1/nodes/{self.node_name}")
        old = {c["type"]: c for c in (node.get("status") or {}).get("conditions") or []}
        for c in conds:
            prev = old.get(c["type"])
            c["lastTransitionTime"] = (prev["lastTransitionTime"] if prev and prev.get("status") == c["status"]
                                       else stamp)
        self.api.request("PATCH", f"/api/v1/nodes/{self.node_name}/status",
                         {"status": {"conditions": conds}}, content_type=MERGE)
        micro = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now))
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_SECONDS,
                          "renewTime": micro}}
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        code, _ = self.api.request("PATCH", path, {"spec": lease["spec"]}, content_type=MERGE, ok=(404,))
        if code == 404:
            self.api.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)

    def _wait_node_gone(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.api.request("GET", f"/api/v1/nodes/{self.node_name}", ok=(404,))[0] == 404:
                return
            time.sleep(0.2)
        raise KubeHttpError("DELETE", f"/api/v1/nodes/{self.node_name}", None, "node still there after 30 s")

    # --- loop --------------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        if self.pod_range:  # a runner that died hard may have left pod addresses; none belongs to a process now
            gone = podnet.flush(self.pod_range, self.addresses, keep=[self.pod_range.gateway])
            if gone:
                self.say(f"removed {len(gone)} address(es) left on lo by an earlier runner: {', '.join(gone)}")
        self.register_node()
        network = (f"pod IPs from {self.pod_range.cidr}" if self.pod_range
                   else "no pod network: pods on 127.0.0.1 with mapped ports")
        self.say(f"node {self.node_name} registered ({network}); running pods under {self.config.pods_root}")
        try:
            while not should_stop():
                started = self.clock()
                try:
                    self.heartbeat()
                    self.sync_once()
                except KubeHttpError as exc:
                    self.say(f"API call failed, retrying: {exc}")
                time.sleep(max(0.0, self.period - (self.clock() - started)))
        finally:
            self.shutdown()

    def sync_once(self) -> None:
        selector = urllib.parse.quote(f"spec.nodeName={self.node_name}")
        pods = self.api.get(f"/api/v1/pods?fieldSelector={selector}").get("items", [])
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            state = self.pods.setdefault(uid, PodState(pod, self.clock()))
            state.pod = pod
            try:
                if pod["metadata"].get("deletionTimestamp"):
                    self._sync_deleting(state)
                else:
                    self._sync_pod(state)
            except KubeHttpError as exc:
                self.say(f"pod {self._name(pod)}: {exc}")
        for uid in set(self.pods) - seen:  # gone from the API (force-deleted): stop what is left
            state = self.pods.pop(uid)
            self._kill_all(state, grace=0)
            self._release_ip(state)
            self.say(f"pod {self._name(state.pod)} is gone; its processes are stopped")

    @staticmethod
    def _name(pod: dict[str, Any]) -> str:
        return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"

    # --- one pod -----------------------------------------------------------------------------------
    def _lookup(self, namespace: str) -> plan.Lookup:
        def lookup(kind: str, name: str) -> dict[str, Any] | None:
            if kind == "ServiceAccountToken":
                body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "spec": {"expirationSeconds": 3600}}
                code, resp = self.api.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                                              body, ok=(404, 403))
                return {"token": resp["status"]["token"]} if code in (200, 201) else None
            plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
            code, obj = self.api.request("GET", f"/api/v1/namespaces/{namespace}/{plural}/{name}", ok=(404,))
            return obj if code == 200 else None
        return lookup

    def _sync_pod(self, state: PodState) -> None:
        pod, now = state.pod, self.clock()
        spec = pod.get("spec") or {}
        all_containers = {c["name"]: c for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}
        init_names = {c["name"] for c in spec.get("initContainers") or []}
        if not self._ensure_network(state, list(all_containers)):
            self._write_status(state)
            return
        lookup = self._lookup(pod["metadata"]["namespace"])
        if state.volumes_ready and now - state.volumes_synced >= VOLUME_SYNC_SECONDS:
            # Like the kubelet's periodic sync: a changed Secret or ConfigMap reaches running pods (a rotated
            # agent token, say); subPath files excepted on a cluster, immutable here anyway.
            try:
                self._materialise_volumes(pod, lookup, state.address)
            except plan.PlanError:
                pass  # keep what the pod has; the next sync tries again
            state.volumes_synced = now
        if not state.volumes_ready:
            try:
                self._materialise_volumes(pod, lookup, state.address)
                state.volumes_ready = True
                state.volumes_synced = now
            except plan.PlanError as exc:
                for name in all_containers:
                    state.runs[name] = lifecycle.cannot_start(state.runs.get(name, Run(name)), exc.reason, exc.message)
        if state.volumes_ready:
            for name, r in list(state.runs.items()):
                if r.waiting and r.waiting[0] == "CreateContainerConfigError":
                    state.runs[name] = dataclasses.replace(r, waiting=None)
        self._reap(state, init_names)
        self._probe(state)
        for name in lifecycle.next_starts(pod, state.runs, now):
            self._start(state, all_containers[name], lookup)
        self._write_status(state)

    def _ensure_network(self, state: PodState, containers: list[str]) -> bool:
        """The pod's address on lo (pod network) or its mapped ports (fallback); False when it cannot have
        one yet (the containers then wait, as behind a failed CNI call)."""
        if self.pod_range is None:
            self._ensure_ports(state)
            return True
        if state.ip is None:
            recorded = (state.pod.get("status") or {}).get("podIP")
            taken = {s.ip for s in self.pods.values() if s.ip}
            ip = (recorded if self.pod_range.contains(recorded) and recorded not in taken
                  and recorded != self.pod_range.gateway else podnet.next_address(self.pod_range, taken, self._last_ip))
            try:
                if ip is None:
                    raise podnet.AddressError(f"no free address left in the pod range {self.pod_range.cidr}")
                self.addresses.add(ip)
            except podnet.AddressError as exc:
                for name in containers:
                    state.runs[name] = lifecycle.cannot_start(state.runs.get(name, Run(name)),
                                                              "ContainerCreating", f"pod network: {exc}")
                self.say(f"pod {self._name(state.pod)}: no address: {exc}")
                return False
            state.ip, self._last_ip = ip, ip
            for name, r in list(state.runs.items()):
                if r.waiting and r.waiting[1].startswith("pod network:"):
                    state.runs[name] = dataclasses.replace(r, waiting=None)
            self.say(f"pod {self._name(state.pod)} has address {ip}")
        state.ports = {port: port for port in plan.wanted_ports(state.pod)}
        return True

    def _release_ip(self, state: PodState) -> None:
        if state.ip is None or self.pod_range is None:
            return
        try:
            self.addresses.remove(state.ip)
        except podnet.AddressError as exc:
            self.say(f"pod {self._name(state.pod)}: could not remove address {state.ip}: {exc}")
        state.ip = None

    def _ensure_ports(self, state: PodState) -> None:
        annotations = state.pod["metadata"].get("annotations") or {}
        recorded = annotations.get(claim.PORTS_ANNOTATION)
        state.ports = plan.assign_ports(plan.wanted_ports(state.pod), recorded, self._ports)
        value = plan.ports_annotation(state.ports)
        if value != recorded:
            meta = state.pod["metadata"]
            patch = {"metadata": {"annotations": {claim.PORTS_ANNOTATION: value}}}
            state.pod = self.api.request("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                         patch, content_type=MERGE)[1]

    def _materialise_volumes(self, pod: dict[str, Any], lookup: plan.Lookup, pod_ip: str) -> None:
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            files = plan.volume_files(pod, volume, lookup, pod_ip)
            host = Path(plan.volume_host_path(self.config, pod, volume))
            host.mkdir(parents=True, exist_ok=True)
            for rel, content in (files or {}).items():
                target = host / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.name == "config.pbtxt":
                    content = triton.adapt_config_pbtxt(content.decode()).encode()
                if target.is_file() and target.read_bytes() == content:
                    continue
                staged = target.with_name(f".{target.name}.tmp")
                staged.write_bytes(content)
                staged.replace(target)  # atomic: a reader never sees half a file

    def _reap(self, state: PodState, init_names: set[str]) -> None:
        policy = (state.pod.get("spec") or {}).get("restartPolicy") or "Always"
        containers = {c["name"]: c for c in [*((state.pod.get("spec") or {}).get("initContainers") or []),
                                            *((state.pod.get("spec") or {}).get("containers") or [])]}
        for name, proc in list(state.procs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del state.procs[name]
            code = 128 - rc if rc < 0 else rc  # killed by signal N -> 128+N, as a runtime reports it
            term_file = plan.pod_dir(self.config, state.pod) / "containers" / name / "termination-log"
            text = term_file.read_text(errors="replace") if term_file.is_file() else ""
            message = lifecycle.termination_message(
                text, _tail(state.logs[name]), code,
                containers[name].get("terminationMessagePolicy") or "File")
            with contextlib.suppress(OSError):
                term_file.unlink()
            reason = "Completed" if code == 0 else "Error"
            state.runs[name] = lifecycle.exited(state.runs[name], code, reason, message, self.clock(), policy,
                                                init=name in init_names)
            self.say(f"pod {self._name(state.pod)} container {name} exited {code}"
                     + (f": {message.strip()[:200]}" if message.strip() else ""))

    def _probe(self, state: PodState, kinds: tuple[str, ...] = ("startup", "liveness", "readiness")) -> None:
        now = self.clock()
        for c in (state.pod.get("spec") or {}).get("containers") or []:
            run = state.runs.get(c["name"])
            if run is None:
                continue
            for kind in kinds:
                if lifecycle.probe_due(c, run, kind, now):
                    run = lifecycle.probed(c, run, kind, self._check(state, c, c[f"{kind}Probe"]), now)
            state.runs[c["name"]] = run
            reason = lifecycle.must_kill(c, run) if "liveness" in kinds else None
            if reason and c["name"] in state.procs:
                self.say(f"pod {self._name(state.pod)} container {c['name']}: {reason}; restarting it")
                self._stop_proc(state.procs[c["name"]], grace=float(state.pod["spec"].get(
                    "terminationGracePeriodSeconds", 30)))

    def _check(self, state: PodState, container: dict[str, Any], probe: dict[str, Any]) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                port = state.ports[plan.named_port(state.pod, container, get["port"])]
                url = f"http://{state.address}:{port}{get.get('path', '/')}"
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    return 200 <= resp.status < 400
            if "tcpSocket" in probe:
                port = state.ports[plan.named_port(state.pod, container, probe["tcpSocket"]["port"])]
                with socket.create_connection((state.address, port), timeout=timeout):
                    return True
        except (OSError, urllib.error.URLError, KeyError, plan.PlanError):
            return False
        return False  # exec and grpc probes are not supported: never succeed, visibly

    def _start(self, state: PodState, container: dict[str, Any], lookup: plan.Lookup) -> None:
        name = container["name"]
        run = state.runs.get(name, Run(name))
        try:
            p = plan.plan_container(self.config, state.pod, container, state.ports, lookup, state.address)
        except plan.PlanError as exc:
            state.runs[name] = lifecycle.cannot_start(run, exc.reason, exc.message)
            return
        for folder in p.folders:
            Path(folder).mkdir(parents=True, exist_ok=True)
        for link, target in p.links:
            link_path = Path(link)
            link_path.parent.mkdir(parents=True, exist_ok=True)
            if link_path.is_symlink() or link_path.exists():
                link_path.unlink()
            link_path.symlink_to(target)
        if p.kind == claim.TRITON:
            self._add_onnx_shims(p)
        log = plan.pod_dir(self.config, state.pod) / "logs" / f"{name}-{run.restart_count + (1 if run.terminated else 0)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fh:
            proc = subprocess.Popen(p.argv, env=p.env, cwd=p.cwd, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=self._preexec)
        state.procs[name], state.logs[name] = proc, log
        state.runs[name] = lifecycle.started(run, self.clock(), pid=proc.pid)
        self.say(f"pod {self._name(state.pod)} container {name} started (pid {proc.pid}, log {log})")

    @staticmethod
    def _add_onnx_shims(p: plan.ProcessPlan) -> None:
        repo = next((a.split("=", 1)[1] for a in p.argv if a.startswith("--model-repository=")), None)
        if not repo or not Path(repo).is_dir():
            return
        for model_dir in Path(repo).iterdir():
            cfg = model_dir / "config.pbtxt"
            if not cfg.is_file() or 'backend: "python"' not in cfg.read_text(errors="replace"):
                continue
            listing = {v.name: os.listdir(v) for v in model_dir.iterdir() if v.is_dir()}
            for rel in triton.shim_files(listing):
                shutil.copyfile(triton.SHIM_MODEL, model_dir / rel)

    def _write_status(self, state: PodState) -> None:
        status = lifecycle.pod_status(state.pod, state.runs, self.clock(), state.first_seen,
                                      state.ip if self.pod_range else "127.0.0.1")
        if not lifecycle.status_differs(state.pod.get("status") or {}, status):
            return
        meta = state.pod["metadata"]
        state.pod = self.api.request("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                                     {"status": status}, content_type=MERGE)[1]

    # --- stopping ----------------------------------------------------------------------------------
    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _stop_proc(self, proc: subprocess.Popen, grace: float) -> None:
        self._signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=max(grace, 0.1))
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            proc.wait(timeout=10)

    def _kill_all(self, state: PodState, grace: float) -> None:
        for proc in state.procs.values():
            self._signal(proc, signal.SIGTERM)
        end = time.monotonic() + grace
        for proc in state.procs.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        state.procs.clear()

    def _sync_deleting(self, state: PodState) -> None:
        """preStop hooks, then SIGTERM, SIGKILL at the grace deadline; status kept current meanwhile; then the
        pod object is deleted for good and its address released."""
        meta, spec = state.pod["metadata"], state.pod.get("spec") or {}
        now = self.clock()
        containers = {c["name"]: c for c in spec.get("containers") or []}
        if state.kill_deadline is None:
            state.kill_deadline = lifecycle.kill_deadline(state.pod, now)
            for name in state.procs:
                state.term_at[name] = lifecycle.sigterm_at(containers.get(name, {}), now, state.kill_deadline)
                self._run_pre_stop(state, containers.get(name, {}))
        for name, proc in state.procs.items():
            if name not in state.termed and now >= state.term_at.get(name, now):
                self._signal(proc, signal.SIGTERM)
                state.termed.add(name)
        self._reap(state, {c["name"] for c in spec.get("initContainers") or []})
        self._probe(state, kinds=("readiness",))
        self._write_status(state)
        alive = [p for p in state.procs.values() if p.poll() is None]
        if alive and now < state.kill_deadline:
            return
        for proc in alive:
            self._signal(proc, signal.SIGKILL)
            proc.wait(timeout=10)
        state.procs.clear()
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": meta["uid"]}}
        self.api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body,
                         ok=(404, 409))
        self._release_ip(state)
        shutil.rmtree(plan.pod_dir(self.config, state.pod), ignore_errors=True)
        self.pods.pop(meta["uid"], None)
        self.say(f"pod {self._name(state.pod)} stopped and deleted")

    def _run_pre_stop(self, state: PodState, container: dict[str, Any]) -> None:
        """An ``httpGet`` preStop hook is called now (bounded by the grace period); ``sleep`` needs nothing
        here (:func:`lifecycle.sigterm_at` delays the SIGTERM); ``exec`` cannot run in a process: said, skipped
        (the kubelet would record a FailedPreStopHook event and go on too)."""
        hook = lifecycle.pre_stop(container)
        if not hook or "sleep" in hook:
            return
        name = container.get("name", "?")
        if "httpGet" in hook:
            get = hook["httpGet"]
            try:
                port = state.ports[plan.named_port(state.pod, container, get["port"])]
                timeout = max(0.1, min(10.0, (state.kill_deadline or 0) - self.clock()))
                url = f"http://{state.address}:{port}{get.get('path', '/')}"
                with urllib.request.urlopen(url, timeout=timeout):
                    pass
            except (OSError, urllib.error.URLError, KeyError, plan.PlanError) as exc:
                self.say(f"pod {self._name(state.pod)} container {name}: preStop httpGet failed: {exc}")
            return
        self.say(f"pod {self._name(state.pod)} container {name}: preStop {next(iter(hook))} is not supported; "
                 "SIGTERM without it")

    def shutdown(self, delete_node: bool = True) -> None:
        """Stop every process; remove the node (its pods are then garbage-collected and their
        controllers replace them), so a stopped runner leaves no Ready node behind."""
        for state in self.pods.values():
            self._kill_all(state, grace=10)
            self._release_ip(state)
        if self.pod_range:
            podnet.flush(self.pod_range, self.addresses, keep=[self.pod_range.gateway])
        if delete_node:
            with contextlib.suppress(KubeHttpError):
                self.api.request("DELETE", f"/api/v1/nodes/{self.node_name}", ok=(404,))
        self.say("stopped")


def host_config(root: Path, triton_prefix: str | None = None, python: str | None = None) -> plan.HostConfig:
    """A HostConfig under ``root`` using the tritonserver of the venv ``triton_prefix`` (default: the
    running one). The venv's bin goes first on PATH so the python backend imports its packages."""
    prefix = triton_prefix or sys.prefix
    wheel = triton.find_wheel(prefix)
    backends = triton.prepare_backend_dir(wheel, root / "backends")
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER")}
    env["PATH"] = f"{prefix}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = prefix
    operator_src = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = operator_src
    return plan.HostConfig(pods_root=root / "pods", pvc_root=root / "pvc", triton_binary=wheel / "bin" / "tritonserver",
                           backend_dir=backends, python=python or sys.executable, base_env=env)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m modeldeploy.sandbox.podrunner",
                                     description="Run the pods bound to a local node as processes (sandbox only).")
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--root", type=Path, default=Path("/tmp/modeldeploy-podrunner"))
    parser.add_argument("--node", default="local-0")
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--triton-prefix", help="venv holding nvidia-pytriton (default: this one)")
    parser.add_argument("--pod-cidr", default=None,
                        help="pod range (e.g. 10.244.3.0/24; .1 is left to the gateway): each pod gets an address "
                             "of it on lo; without it pods listen on 127.0.0.1 with mapped ports")
    args = parser.parse_args(argv)
    pod_range = podnet.PodRange.parse(args.pod_cidr) if args.pod_cidr else None
    runner = PodRunner(KubeHttp(args.kubeconfig), host_config(args.root, args.triton_prefix), args.node, args.gpus,
                       pod_range=pod_range)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        runner.run(lambda: bool(stop))
    except KeyboardInterrupt:
        pass
    return 0
