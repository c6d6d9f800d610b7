"""Benchmark: N ModelDeployments vs N plain Deployments (the floor), then idle, then a failover.

Both runs use the same pod template (rendered by the operator's own renderer, one GPU per pod) on the
same sandbox, in the same run, with enough extra kwok H100 nodes added for N pods. The operator runs
as the chart runs it: two elected processes (leader and standby, one Lease). Reports:
- time to all-Ready for the floor (Deployments created by 4 client threads) and for the same number
  of ModelDeployments created the same way, and their ratio;
- the CPU seconds each control-plane process (and the operator) used during each phase, from /proc:
  where the time goes on a shared machine, since wall-clock time there depends on the neighbours;
- the leader's peak RSS (VmHWM from /proc) and the standby's;
- API requests per ModelDeployment made by the operator (ours and Kopf's), by client, verb and
  resource, counted in the API server's audit log by user agent, so nothing is estimated;
- idle: with N Ready objects and no change, requests per minute (by kind) and the leader's CPU
  seconds per minute, over ``--idle-seconds``;
- soak (``--soak-seconds``, off by default): one ModelDeployment's spec edited every ``--soak-edit-every``
  seconds (maxBatchSize 8 <-> 16: a new revision, a rolling update of its pod), in turn over all of
  them; the leader's RSS sampled every 10 s: its growth from the start of the soak to its end;
- failover: the leader is SIGKILLed and one more ModelDeployment created at once; the time until
  the standby holds the Lease, makes its first write, and that ModelDeployment is Ready, and the
  requests the new leader makes to catch up.

Usage: python tests/bench/bench_ready.py --count 1000   (make bench)
"""

from __future__ import annotations

import argparse
import signal
import math
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

from kubernetes import client, config  # noqa: E402

from modeldeploy.policy.leader import Timing  # noqa: E402

from modeldeploy.api import constants as c  # noqa: E402
from modeldeploy.api.spec import parse_spec  # noqa: E402
from modeldeploy.render import names  # noqa: E402
from modeldeploy.render.triton import (AGENT_TOKEN_KEY, Owner, RenderOptions, render_children,  # noqa: E402
                                      render_deployment)
from modeldeploy.sandbox import audit  # noqa: E402
from modeldeploy.sandbox.cluster import Sandbox  # noqa: E402
from modeldeploy.sandbox.crd import install_crd  # noqa: E402
from modeldeploy.sandbox.kubeapi import KubeHttp  # noqa: E402
from modeldeploy.sandbox.nodes import H100, apply_nodes, gpu_node  # noqa: E402

SPEC = {
    "model": {"uri": "s3://bench/model.onnx", "format": "onnx"},
    "serving": {"maxBatchSize": 8},
    "resources": {"gpu": {"count": 1, "product": H100.product}},
    "replicas": 1,
}


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.25) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic()
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def add_bench_nodes(kubeconfig: str, core: client.CoreV1Api, count: int) -> list[str]:
    nodes = [gpu_node(f"bench-h100-{i}", H100, pool="bench") for i in range(math.ceil(count / H100.count))]
    apply_nodes(KubeHttp(Path(kubeconfig)), nodes)  # creates them, then sets capacity in their status
    want = {n["metadata"]["name"] for n in nodes}

    def ready():
        ok = set()
        for node in core.list_node(label_selector="modeldeploy.io/sandbox-pool=bench").items:
            if any(cnd.type == "Ready" and cnd.status == "True" for cnd in node.status.conditions or []):
                ok.add(node.metadata.name)
        return want <= ok
    wait_until(ready, 120, "bench nodes Ready")
    return sorted(want)


def fresh_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        core.delete_namespace(name)
        wait_until(lambda: name not in {n.metadata.name for n in core.list_namespace().items}, 300,
                   f"namespace {name} deleted")
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    core.create_namespace({"metadata": {"name": name}})


def create_all(fn, items, workers: int = 4) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fn, items))


CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok-controller")


def control_plane_cpu(box: Sandbox) -> dict[str, float]:
    """CPU seconds used so far by each control-plane process (where the time of a phase goes, whatever
    else the machine runs)."""
    out = {}
    for component in CONTROL_PLANE:
        try:
            out[component] = cpu_seconds(int((box.workdir / "pids" / f"{component}.pid").read_text()))
        except (OSError, ValueError):
            pass
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before if k in after}


def floor_objects(ns: str, i: int, children: bool) -> list[dict]:
    """The objects of one floor entry: the Deployment the operator renders (without owner), and with
    ``children`` also what it renders next to it — model-source Secret, config ConfigMap, Service,
    agent-token Secret — so that the only difference left to the operator run is the operator."""
    spec = parse_spec(f"m{i}", SPEC)
    options = RenderOptions()
    rev = names.revision_of(spec, options.triton_image, options.fetcher_image)
    owner = Owner(f"m{i}", ns, "0")
    objs = render_children(owner, spec, rev, options) if children else [render_deployment(owner, spec, rev, options)]
    if children:
        objs.insert(0, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": names.agent_token_name(owner.name), "namespace": ns},
                        "stringData": {AGENT_TOKEN_KEY: "bench"}})
    for obj in objs:
        obj["metadata"].pop("ownerReferences", None)
        if obj["kind"] == "Deployment":
            limits = obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
            limits.update({k: str(v) for k, v in limits.items()})  # the typed client wants quantity strings
            if not children:  # no ConfigMap to mount
                volumes = obj["spec"]["template"]["spec"]["volumes"]
                volumes[:] = [v if v["name"] != "model-config" else {"name": "model-config", "emptyDir": {}}
                              for v in volumes]
    return objs


def run_floor(api, box: Sandbox, count: int, children: bool = False) -> tuple[float, dict[str, float]]:
    """Create ``count`` floor entries (4 client threads, one create request per object); seconds until
    every Deployment is available, and the control plane's CPU seconds meanwhile."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = "bench-floor"
    fresh_namespace(core, ns)
    creators = {"Deployment": lambda o: apps.create_namespaced_deployment(ns, o),
                "Service": lambda o: core.create_namespaced_service(ns, o),
                "ConfigMap": lambda o: core.create_namespaced_config_map(ns, o),
                "Secret": lambda o: core.create_namespaced_secret(ns, o)}
    entries = [floor_objects(ns, i, children) for i in range(count)]
    cpu0 = control_plane_cpu(box)
    t0 = time.monotonic()
    create_all(lambda objs: [creators[o["kind"]](o) for o in objs], entries)

    def all_ready():
        items = apps.list_namespaced_deployment(ns).items
        return len(items) == count and all((d.status.available_replicas or 0) == 1 for d in items)
    t1 = wait_until(all_ready, 3600, f"{count} Deployments available", interval=1.0)
    cpu = cpu_delta(cpu0, control_plane_cpu(box))
    core.delete_namespace(ns)
    wait_until(lambda: not core.list_namespaced_pod(ns).items, 600, "floor pods gone")
    wait_until(lambda: ns not in {n.metadata.name for n in core.list_namespace().items}, 600, f"{ns} deleted")
    return t1 - t0, cpu


AGENTS = audit.OPERATOR_AGENTS
IDENTITIES = ("bench-a", "bench-b")  # the leader and the standby
LEASE_NS, LEASE = "bench-md", "modeldeploy-operator"
FAILOVER = "zz-failover"


def count_requests(cursor: audit.Cursor, since: float = 0.0, until: float = float("inf")) -> Counter:
    """Operator requests logged since ``cursor`` and answered between ``since`` and ``until``, by
    (client, verb, resource)."""
    counts: Counter = Counter()
    for r in audit.operator_requests(cursor.read()):
        if since <= r.at.timestamp() <= until:
            counts[(audit.client_of(r.user_agent, IDENTITIES), r.verb, r.resource)] += 1
    return counts


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def lease_holder(api) -> str | None:
    try:
        return client.CoordinationV1Api(api).read_namespaced_lease(LEASE, LEASE_NS).spec.holder_identity
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def start_operator(box: Sandbox, kubeconfig: str, identity: str, workers: int) -> subprocess.Popen:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(ROOT / "operator"),
           "MODELDEPLOY_WORKERS": str(workers)}
    log = open(box.workdir / f"bench-operator-{identity}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator", "--lease-namespace", LEASE_NS,
                             "--identity", identity],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def md_body(name: str) -> dict:
    return {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name}, "spec": SPEC}


def all_ready(custom, ns: str, count: int) -> bool:
    items = custom.list_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL)["items"]
    return len(items) == count and all((m.get("status") or {}).get("phase") == "Ready" for m in items)


def log_time(log: Path, text: str) -> float | None:
    """The time of the first line of ``log`` that contains ``text`` (the operator's log format)."""
    for line in log.read_text().splitlines():
        if text in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def soak(custom, ns: str, count: int, pid: int, seconds: float, every: float) -> dict:
    """Edit one ModelDeployment's spec every ``every`` seconds for ``seconds``; the leader's RSS meanwhile."""
    samples: list[tuple[float, float]] = []
    t0 = next_edit = next_sample = time.monotonic()
    edits = 0
    while time.monotonic() - t0 < seconds:
        now = time.monotonic()
        if now >= next_sample:
            samples.append((now - t0, proc_status(pid, "VmRSS") / 1024))
            next_sample += 10.0
        if now >= next_edit:
            batch = 16 if (edits // count) % 2 == 0 else 8
            custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, f"m{edits % count}",
                                                  {"spec": {"serving": {"maxBatchSize": batch}}})
            edits += 1
            next_edit += every
        time.sleep(max(0.0, min(next_edit, next_sample) - time.monotonic()))
    samples.append((time.monotonic() - t0, proc_status(pid, "VmRSS") / 1024))
    return {"edits": edits, "seconds": time.monotonic() - t0, "rss": samples,
            "peak_rss_mib": proc_status(pid, "VmHWM") / 1024}


def run_operator(api, box: Sandbox, kubeconfig: str, count: int, idle_seconds: float, workers: int,
                 soak_seconds: float = 0.0, soak_every: float = 2.0) -> dict:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = LEASE_NS
    fresh_namespace(core, ns)
    logs = audit.log_dir(box)
    cursor = audit.Cursor.mark(logs)
    leader = start_operator(box, kubeconfig, IDENTITIES[0], workers)
    wait_until(lambda: lease_holder(api) == IDENTITIES[0], 120, "the leader holding the Lease")
    standby = start_operator(box, kubeconfig, IDENTITIES[1], workers)
    leader_log = box.workdir / f"bench-operator-{IDENTITIES[0]}.log"
    wait_until(lambda: "modeldeploy operator configured" in leader_log.read_text(), 120, "the leader configured")
    result: dict = {}
    try:
        cpu0, op_cpu0 = control_plane_cpu(box), cpu_seconds(leader.pid)
        t0 = time.monotonic()
        create_all(lambda b: custom.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, b),
                   [md_body(f"m{i}") for i in range(count)])
        t1 = wait_until(lambda: all_ready(custom, ns, count), 3600, f"{count} ModelDeployments Ready", interval=1.0)
        result["seconds"] = t1 - t0
        result["cpu"] = {**cpu_delta(cpu0, control_plane_cpu(box)), "operator": cpu_seconds(leader.pid) - op_cpu0}
        time.sleep(5)  # trailing status events: counted with the create path
        ready_at = time.time()
        result["peak_rss_mib"] = proc_status(leader.pid, "VmHWM") / 1024
        result["standby_rss_mib"] = proc_status(standby.pid, "VmHWM") / 1024
        result["requests"] = count_requests(cursor, until=ready_at)

        say(f"idle: {idle_seconds:.0f}s with {count} Ready ModelDeployments and no change")
        idle_cursor = audit.Cursor.mark(logs)
        cpu0, w0 = cpu_seconds(leader.pid), time.time()
        time.sleep(idle_seconds)
        cpu1, w1 = cpu_seconds(leader.pid), time.time()
        minutes = (w1 - w0) / 60
        result["idle_cpu_per_min"] = (cpu1 - cpu0) / minutes
        result["idle_rss_mib"] = proc_status(leader.pid, "VmRSS") / 1024
        result["idle_requests"] = count_requests(idle_cursor, since=w0, until=w1)
        result["idle_minutes"] = minutes

        if soak_seconds > 0:
            say(f"soak: {soak_seconds:.0f}s, one spec edit every {soak_every:g}s")
            result["soak"] = soak(custom, ns, count, leader.pid, soak_seconds, soak_every)
            wait_until(lambda: all_ready(custom, ns, count), 1800, "every ModelDeployment Ready after the soak",
                       interval=1.0)

        say("failover: SIGKILL the leader, create one more ModelDeployment")
        fail_cursor = audit.Cursor.mark(logs)
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        killed = time.time()
        # Named to sort last: the new leader's first pass over the cache reaches it after every other one.
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, md_body(FAILOVER))
        taken = wait_until(lambda: lease_holder(api) == IDENTITIES[1], 120, "the standby holding the Lease",
                           interval=0.1)
        taken_at = time.time() - (time.monotonic() - taken)

        def failover_ready():
            md = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, FAILOVER)
            return (md.get("status") or {}).get("phase") == "Ready"
        done = wait_until(failover_ready, 1800, "the failover ModelDeployment Ready", interval=0.1)
        ready_at = time.time() - (time.monotonic() - done)
        result["failover_lease_s"] = taken_at - killed
        result["failover_ready_s"] = ready_at - killed
        writes = [r.received.timestamp() for r in audit.operator_requests(fail_cursor.read())
                  if audit.client_of(r.user_agent, IDENTITIES) == IDENTITIES[1] and r.write and r.resource != "leases"]
        result["failover_first_write_s"] = min(writes) - killed if writes else None
        result["failover_requests"] = count_requests(fail_cursor, since=killed, until=ready_at)
        result["new_leader_peak_rss_mib"] = proc_status(standby.pid, "VmHWM") / 1024
        standby_log = box.workdir / f"bench-operator-{IDENTITIES[1]}.log"
        leading, configured = log_time(standby_log, "leading:"), log_time(standby_log, "operator configured")
        result["failover_start_s"] = configured - leading if leading and configured else None
    finally:
        for proc in (leader, standby):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
    core.delete_namespace(ns)
    return result


def other_operators(kubeconfig: str) -> list[int]:
    """Pids of `modeldeploy operator` processes on this sandbox (same KUBECONFIG): their requests would
    be counted as ours. Operators of other sandboxes on the machine do not matter."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"modeldeploy" in argv and b"operator" in argv and f"KUBECONFIG={kubeconfig}".encode() in environ:
                found.append(int(entry.name))
    return found


def per_md_table(counts: Counter, count: int) -> list[str]:
    lines = ["| client | verb | resource | requests | per ModelDeployment |", "|---|---|---|---|---|"]
    for (who, verb, resource), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {who} | {verb} | {resource} | {n} | {n / count:.2f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=8, help="MODELDEPLOY_WORKERS (the chart's default: 8)")
    parser.add_argument("--soak-seconds", type=float, default=0.0, help="a soak with periodic edits (0: none)")
    parser.add_argument("--soak-edit-every", type=float, default=2.0)
    args = parser.parse_args()

    box = Sandbox()
    if not box.is_up():
        box.up()
    kubeconfig = str(box.kubeconfig_path)
    if pids := other_operators(kubeconfig):
        raise SystemExit(f"another modeldeploy operator is running on this sandbox (pids {pids}; `make down` stops "
                         "the demo's): it would reconcile the benchmark's objects and its requests would be counted")
    install_crd(kubeconfig)
    api = config.new_client_from_config(config_file=kubeconfig)
    api.configuration.connection_pool_maxsize = 8
    core = client.CoreV1Api(api)
    say(f"adding kwok H100 nodes for {args.count} one-GPU pods")
    add_bench_nodes(kubeconfig, core, args.count)
    load = os.getloadavg()

    say(f"floor: {args.count} plain Deployments (same pod template)")
    floor, floor_cpu = run_floor(api, box, args.count)
    say(f"floor: {floor:.1f}s")
    say(f"floor with children: {args.count} Deployments + the Service, ConfigMap and Secrets the operator renders")
    with_children, children_cpu = run_floor(api, box, args.count, children=True)
    say(f"floor with children: {with_children:.1f}s")
    say(f"operator: {args.count} ModelDeployments (leader {IDENTITIES[0]}, standby {IDENTITIES[1]}, "
        f"{args.workers} workers)")
    op = run_operator(api, box, kubeconfig, args.count, args.idle_seconds, args.workers, args.soak_seconds,
                      args.soak_edit_every)
    say(f"operator: {op['seconds']:.1f}s")
    n = args.count

    print(f"\nload average before the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; after: "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print("\n| N | plain Deployments Ready | ModelDeployments Ready | ratio | leader peak RSS | standby RSS | "
          "operator API requests per ModelDeployment | the same objects without the operator | ratio to them |")
    print("|---|---|---|---|---|---|---|---|---|")
    requests = op["requests"]
    lease_free = Counter({k: v for k, v in requests.items() if k[2] != "leases"})
    per_md = f"{sum(lease_free.values()) / n:.1f}"
    print(f"| {n} | {floor:.1f} s | {op['seconds']:.1f} s | {op['seconds'] / floor:.2f} | "
          f"{op['peak_rss_mib']:.0f} MiB | {op['standby_rss_mib']:.0f} MiB | {per_md} | {with_children:.1f} s | "
          f"{op['seconds'] / with_children:.2f} |")
    print("\nCPU seconds used during each phase (creates until all Ready), per process:")
    print("| phase | " + " | ".join(CONTROL_PLANE) + " | operator (leader) | total |")
    print("|---|" + "---|" * (len(CONTROL_PLANE) + 2))
    for phase, cpu in (("plain Deployments", floor_cpu), ("the same objects without the operator", children_cpu),
                       ("ModelDeployments", op["cpu"])):
        print(f"| {phase} | " + " | ".join(f"{cpu.get(k, 0):.1f}" for k in CONTROL_PLANE)
              + f" | {cpu.get('operator', 0):.1f} | {sum(cpu.values()):.1f} |")
    if requests:
        print(f"\ncreate -> Ready: requests by client, verb and resource (Lease requests: "
              f"{sum(requests.values()) - sum(lease_free.values())}, not per ModelDeployment):")
        print("\n".join(per_md_table(lease_free, n)))
    print(f"\nidle ({op.get('idle_minutes', args.idle_seconds / 60):.1f} min, {n} Ready): leader CPU "
          f"{op['idle_cpu_per_min']:.2f} s per minute, RSS {op['idle_rss_mib']:.0f} MiB")
    if op["idle_requests"]:
        minutes = op["idle_minutes"]
        print(f"requests per minute: {sum(op['idle_requests'].values()) / minutes:.1f}")
        for (who, verb, resource), k in sorted(op["idle_requests"].items(), key=lambda kv: -kv[1]):
            print(f"  {who} {verb} {resource}: {k / minutes:.1f}/min")
    if "soak" in op:
        sk = op["soak"]
        rss = [r for _, r in sk["rss"]]
        print(f"\nsoak: {sk['edits']} spec edits in {sk['seconds']:.0f} s; leader RSS {rss[0]:.0f} MiB at the start, "
              f"{rss[-1]:.0f} MiB at the end ({100 * (rss[-1] - rss[0]) / rss[0]:+.1f}%), max {max(rss):.0f} MiB; "
              f"peak (VmHWM) {sk['peak_rss_mib']:.0f} MiB")
        print("  RSS every 10 s (MiB): " + " ".join(f"{r:.0f}" for r in rss))
    first = op.get("failover_first_write_s")
    print(f"\nfailover: SIGKILL -> standby holds the Lease {op['failover_lease_s']:.1f} s -> first write "
          f"{'n/a' if first is None else f'{first:.1f} s'} -> new ModelDeployment Ready {op['failover_ready_s']:.1f} s "
          f"(takeover bound {Timing().takeover_bound():.0f} s); new leader's peak RSS "
          f"{op['new_leader_peak_rss_mib']:.0f} MiB; its Kopf start and cache fill took "
          f"{op['failover_start_s'] or float('nan'):.1f} s")
    if op["failover_requests"]:
        print("requests from the kill until that ModelDeployment was Ready:")
        for (who, verb, resource), k in sorted(op["failover_requests"].items(), key=lambda kv: -kv[1]):
            print(f"  {who} {verb} {resource}: {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
