"""Benchmark: time for N ModelDeployments to become Ready vs N plain Deployments (the floor).

Both runs use the same pod template (rendered by the operator's own renderer, one GPU per pod) on the
same sandbox, with enough extra kwok H100 nodes added for N pods. Reports:
- time to all-Ready for the floor (kubectl-style creates of Deployments) and for ModelDeployments,
  and their ratio;
- the operator's peak RSS (VmHWM from /proc);
- API requests per ModelDeployment made by the operator (Kopf's and ours), counted in the API server's
  audit log by user agent, so nothing is estimated.

Usage: python tests/bench/bench_ready.py --count 200   (make bench)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

from kubernetes import client, config  # noqa: E402

from modeldeploy.api import constants as c  # noqa: E402
from modeldeploy.api.spec import parse_spec  # noqa: E402
from modeldeploy.render import names  # noqa: E402
from modeldeploy.render.triton import Owner, RenderOptions, render_deployment  # noqa: E402
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


def run_floor(api, count: int) -> float:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = "bench-floor"
    fresh_namespace(core, ns)
    spec = parse_spec("m", SPEC)
    options = RenderOptions()
    rev = names.revision_of(spec, options.triton_image, options.fetcher_image)
    bodies = []
    for i in range(count):
        dep = render_deployment(Owner(f"m{i}", ns, "0"), spec, rev, options)
        dep["metadata"].pop("ownerReferences")
        limits = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        limits.update({k: str(v) for k, v in limits.items()})  # the typed client wants quantity strings
        dep["spec"]["template"]["spec"]["volumes"][1] = {"name": "model-config", "emptyDir": {}}
        bodies.append(dep)
    t0 = time.monotonic()
    create_all(lambda b: apps.create_namespaced_deployment(ns, b), bodies)

    def all_ready():
        items = apps.list_namespaced_deployment(ns).items
        return len(items) == count and all((d.status.available_replicas or 0) == 1 for d in items)
    t1 = wait_until(all_ready, 900, f"{count} Deployments available")
    core.delete_namespace(ns)
    wait_until(lambda: not core.list_namespaced_pod(ns).items, 600, "floor pods gone")
    return t1 - t0


def audit_log(box: Sandbox) -> Path | None:
    for candidate in box.workdir.rglob("audit.log"):
        return candidate
    return None


def count_requests(log: Path, offset: int, agents: tuple[str, ...]) -> Counter:
    counts: Counter = Counter()
    with open(log, "rb") as fh:
        fh.seek(offset)
        for line in fh:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            ua = event.get("userAgent", "")
            # One event per request: ResponseComplete, or ResponseStarted for watches (long-running).
            if event.get("stage") not in ("ResponseComplete",):
                continue
            for agent in agents:
                if ua.startswith(agent):
                    counts[(agent, event.get("verb"), (event.get("objectRef") or {}).get("resource"))] += 1
    return counts


def run_operator(api, box: Sandbox, kubeconfig: str, count: int) -> dict:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = "bench-md"
    fresh_namespace(core, ns)
    log = audit_log(box)
    offset = log.stat().st_size if log else 0
    op_log = open(box.workdir / "bench-operator.log", "w")
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(ROOT / "operator")}
    proc = subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator"], env=env, stdout=op_log,
                            stderr=subprocess.STDOUT)
    time.sleep(3)
    bodies = [{"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": f"m{i}"}, "spec": SPEC}
              for i in range(count)]
    t0 = time.monotonic()
    create_all(lambda b: custom.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL, b), bodies)

    def all_ready():
        items = custom.list_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.PLURAL)["items"]
        return len(items) == count and all((m.get("status") or {}).get("phase") == "Ready" for m in items)
    t1 = wait_until(all_ready, 900, f"{count} ModelDeployments Ready")
    time.sleep(5)  # let trailing status events settle before counting requests
    rss_kib = 0
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss_kib = int(line.split()[1])
    proc.terminate()
    proc.wait(timeout=30)
    result = {"seconds": t1 - t0, "peak_rss_mib": rss_kib / 1024}
    if log:
        counts = count_requests(log, offset, ("kopf/", "modeldeploy-operator/"))
        result["requests"] = sum(counts.values())
        result["by_kind"] = {f"{a.rstrip('/')} {verb} {res}": n for (a, verb, res), n in counts.most_common()}
    core.delete_namespace(ns)
    return result


def other_operators() -> list[int]:
    """Pids of running `modeldeploy operator` processes: their requests would be counted as ours."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"modeldeploy" in argv and b"operator" in argv:
                found.append(int(entry.name))
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    if pids := other_operators():
        raise SystemExit(f"another modeldeploy operator is running (pids {pids}; `make down` stops the demo's): "
                         "it would reconcile the benchmark's objects and its requests would be counted")

    box = Sandbox()
    if not box.is_up():
        box.up()
    kubeconfig = str(box.kubeconfig_path)
    install_crd(kubeconfig)
    api = config.new_client_from_config(config_file=kubeconfig)
    api.configuration.connection_pool_maxsize = 8
    core = client.CoreV1Api(api)
    say(f"adding kwok H100 nodes for {args.count} one-GPU pods")
    add_bench_nodes(kubeconfig, core, args.count)

    say(f"floor: {args.count} plain Deployments (same pod template)")
    floor = run_floor(api, args.count)
    say(f"floor: {floor:.1f}s")
    say(f"operator: {args.count} ModelDeployments")
    op = run_operator(api, box, kubeconfig, args.count)
    say(f"operator: {op['seconds']:.1f}s")

    print()
    print("| N | plain Deployments Ready | ModelDeployments Ready | ratio | operator peak RSS | "
          "operator API requests per ModelDeployment |")
    print("|---|---|---|---|---|---|")
    per_md = f"{op['requests'] / args.count:.1f}" if "requests" in op else "n/a (no audit log)"
    print(f"| {args.count} | {floor:.1f} s | {op['seconds']:.1f} s | {op['seconds'] / floor:.2f} | "
          f"{op['peak_rss_mib']:.0f} MiB | {per_md} |")
    if "by_kind" in op:
        print("\nrequests by client, verb and resource:")
        for key, n in op["by_kind"].items():
            print(f"  {key}: {n} ({n / args.count:.2f} per ModelDeployment)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
