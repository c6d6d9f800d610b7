"""Leader election end to end: two operators on one Lease, the leader SIGKILLed, the standby takes over.

Two ``modeldeploy operator`` processes (identities op-a and op-b) watch the test's namespace and elect
through a Lease in it. The session's cluster-wide operator fixture is stopped meanwhile (it would
reconcile this namespace too) and started again afterwards.

What is checked, from the API server's audit log (every request of an operator process carries its
identity in the user agent, see modeldeploy/cli.py) and the processes' logs:
- while op-a leads, op-b makes no request but Lease reads, and starts no watch;
- after op-a's SIGKILL, op-b takes the Lease only once it has seen no renewal for a lease duration,
  then reconciles a ModelDeployment created after the kill to Ready;
- at no time do both write: every write of op-a (children, status, Events) comes before the first
  write of op-b; Kopf itself (whose requests cannot be attributed) writes nothing;
- a clean stop (SIGTERM) of op-b releases the Lease.
The measured times (kill -> Lease taken -> first write -> Ready) are printed; docs/benchmarks.md
has them at N=1,000.
"""

from __future__ import annotations

import signal
from datetime import datetime, timezone

import pytest
from kubernetes import client

from modeldeploy.api import constants as c
from modeldeploy.policy.leader import Timing
from modeldeploy.sandbox import audit

from .conftest import OperatorProcess, wait_for

pytestmark = pytest.mark.integration

LEASE = "modeldeploy-operator"
SPEC = {
    "model": {"uri": "s3://bench/model.onnx", "format": "onnx"},
    "serving": {"maxBatchSize": 8},
    "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}},  # kwok nodes: Ready without Triton
    "replicas": 1,
}
TIMING = Timing()
#: Goal of the issue: a standby reconciles within 15 s of the leader's death.
FAILOVER_GOAL_SECONDS = 15.0


def lease_holder(api, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return lease.spec.holder_identity


def create_md(api, namespace: str, name: str) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL,
        {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name}, "spec": SPEC})


def is_ready(api, namespace: str, name: str) -> bool:
    md = client.CustomObjectsApi(api).get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, name)
    return (md.get("status") or {}).get("phase") == "Ready"


def of(identity: str, requests):
    return [r for r in requests if f"({identity})" in r.user_agent]


def test_standby_takes_over_after_the_leader_is_killed_and_never_writes_alongside_it(
        api, sandbox, kubeconfig, crd_installed, operator, namespace, tmp_path):
    logs = audit.log_dir(sandbox)
    operator.stop()  # the session's cluster-wide operator would reconcile this namespace as well
    procs: list[OperatorProcess] = []

    def elected(identity: str) -> OperatorProcess:
        proc = OperatorProcess(kubeconfig, tmp_path / f"{identity}.log")
        proc.extra_args = ["--namespace", namespace, "--lease-namespace", namespace, "--identity", identity]
        proc.start()
        procs.append(proc)
        return proc

    try:
        cursor = audit.Cursor.mark(logs)
        a = elected("op-a")
        wait_for(lambda: lease_holder(api, namespace) == "op-a", 60, what="op-a holding the Lease")
        b = elected("op-b")
        wait_for(lambda: "standing by: held by op-a" in b.log_since(0), 60, what="op-b standing by")
        create_md(api, namespace, "before")
        wait_for(lambda: is_ready(api, namespace, "before"), 60, what="'before' Ready (reconciled by op-a)")

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        killed = datetime.now(timezone.utc)
        create_md(api, namespace, "after")
        wait_for(lambda: is_ready(api, namespace, "after"), 120, interval=0.1,
                 what="'after' Ready (reconciled by op-b after the kill)")
        ready = datetime.now(timezone.utc)
        assert lease_holder(api, namespace) == "op-b"

        b.stop(signal.SIGTERM)
        assert b.proc.returncode == 0, b.log_tail()
        assert lease_holder(api, namespace) == "", "a clean stop releases the Lease"
        b_log = b.log_since(0)
    finally:
        for proc in procs:
            proc.stop(signal.SIGKILL)
        operator.start()

    # The API server logs a request before it answers (blocking audit backend): all of it is there.
    requests = [r for r in audit.operator_requests(cursor.read(("ResponseStarted", "ResponseComplete")))
                if r.received <= ready]
    complete = [r for r in requests if r.stage == "ResponseComplete"]
    lease_writes = [r for r in complete if r.resource == "leases" and r.write and r.code < 300]
    a_renewals = of("op-a", lease_writes)
    b_acquire = min(r.received for r in of("op-b", lease_writes))
    writes = [r for r in complete if r.write and r.resource != "leases" and r.namespace == namespace]
    a_writes, b_writes = of("op-a", writes), of("op-b", writes)

    # The standby did nothing but read the Lease until it held it, and started no watch before.
    b_before = [r for r in of("op-b", requests) if r.received < b_acquire]
    assert b_before and all((r.verb, r.resource) == ("get", "leases") for r in b_before), \
        sorted({(r.verb, r.resource) for r in b_before})
    assert b_log.index("leading: acquire") < b_log.index("Starting the watch-stream"), "a standby runs no watches"

    # It waited a whole lease duration after the last renewal it could have seen.
    last_renewal = max(r.received for r in a_renewals)
    assert (b_acquire - last_renewal).total_seconds() >= TIMING.lease_duration

    # Never both: op-a's last write precedes op-b's first; Kopf wrote nothing it could not be blamed for.
    assert a_writes and b_writes
    assert max(r.at for r in a_writes) < min(r.received for r in b_writes), \
        [(r.verb, r.resource, r.name, str(r.at)) for r in sorted(a_writes + b_writes, key=lambda r: r.at)]
    assert {r.name for r in a_writes if r.resource == "modeldeployments"} <= {"before"}
    assert not [r for r in writes if r.user_agent.startswith("kopf/")]

    took = (b_acquire - killed).total_seconds()
    first_write = (min(r.received for r in b_writes) - killed).total_seconds()
    print(f"\nfailover: SIGKILL -> Lease taken {took:.1f}s -> first write {first_write:.1f}s -> "
          f"'after' Ready {(ready - killed).total_seconds():.1f}s")
    assert took <= TIMING.takeover_bound() + 1.0  # a standby's look is a sleep and one GET: no CPU to wait for
    assert first_write <= FAILOVER_GOAL_SECONDS
