"""A regression guard on API load: the requests of one ModelDeployment's create -> Ready path.

Counted in the sandbox API server's audit log (modeldeploy/sandbox/audit.py), by verb and resource, for
the operator's requests (ours and Kopf's) about objects in the test's namespace, from the create until
the operator has been quiet for a while after Ready. The budget is what the restructured operator
(watch cache, work queue, AppliedMemo) makes today, measured as in docs/benchmarks.md; the test fails
when any line grows past it or a new kind of request appears. It is not a timing: the counts do not
depend on the CPU, except that the number of status writes depends on how many distinct Deployment
progress states a reconcile happens to see (at most three for one replica: created, replica counted,
available), so the budget holds that maximum.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from modeldeploy.api import constants as c
from modeldeploy.sandbox import audit

from .conftest import wait_for

pytestmark = pytest.mark.integration

SPEC = {
    "model": {"uri": "s3://bench/model.onnx", "format": "onnx"},
    "serving": {"maxBatchSize": 8},
    "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}},  # kwok nodes: Ready without Triton
    "replicas": 1,
}

#: (verb, resource) -> the most requests allowed, and what each one is.
BUDGET = {
    ("create", "secrets"): (1, "the agent token Secret <name>-agent-token, created once (never re-applied)"),
    ("get", "secrets"): (1, "ownership check of <name>-stable-model on the cache miss (Secrets are not watched)"),
    ("patch", "secrets"): (1, "server-side apply of <name>-stable-model (the model source the pods read)"),
    ("get", "configmaps"): (1, "ownership check of the config ConfigMap on the cache miss (a new name)"),
    ("patch", "configmaps"): (1, "server-side apply of <name>-config-<revision> (config.pbtxt)"),
    ("get", "deployments"): (1, "ownership check of the Deployment on the cache miss"),
    ("patch", "deployments"): (1, "server-side apply of the Deployment <name>-stable"),
    ("get", "services"): (1, "ownership check of the Service on the cache miss"),
    ("patch", "services"): (1, "server-side apply of the Service"),
    ("patch", "modeldeployments/status"): (3, "status: Progressing, replica counts, Ready (one per distinct state)"),
    ("create", "events"): (2, "Events of the phase transitions: Progressing, Ready"),
}
QUIET_SECONDS = 3.0  # after Ready: no further request for this long ends the count


def _ready(api, namespace: str, name: str):
    md = client.CustomObjectsApi(api).get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, name)
    return (md.get("status") or {}).get("phase") == "Ready" and md


def test_create_to_ready_requests_stay_within_budget(api, sandbox, operator, namespace):
    cursor = audit.Cursor.mark(audit.log_dir(sandbox))
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL,
        {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": "budget"}, "spec": SPEC})
    wait_for(lambda: _ready(api, namespace, "budget"), 90, what="ModelDeployment budget Ready")
    wait_for(lambda: any(e.reason == "Ready" for e in client.CoreV1Api(api).list_namespaced_event(namespace).items),
             30, what="the Ready Event")

    # Trailing events (the Deployment's last status updates) are reconciled after Ready; any request
    # they cost belongs to the path. Count until the operator has been quiet for QUIET_SECONDS.
    def quiet():
        requests = audit.operator_requests(cursor.read(), namespace)
        last = max(r.at for r in requests).timestamp()
        return time.time() - last >= QUIET_SECONDS and requests
    requests = wait_for(quiet, 60, interval=0.5, what=f"{QUIET_SECONDS}s without operator requests")

    counts = audit.by_verb_and_resource(requests)
    print(f"\noperator requests, create -> Ready of one ModelDeployment ({sum(counts.values())}):\n"
          + audit.table(counts))
    over = {key: (n, BUDGET.get(key, (0, "not in the budget"))) for key, n in counts.items()
            if n > BUDGET.get(key, (0,))[0]}
    assert not over, f"requests past the budget: {over}\nall:\n{audit.table(counts)}"
    assert sum(counts.values()) <= sum(n for n, _ in BUDGET.values())
    # Only our client: Kopf makes no request about the object (event handlers only, no annotations).
    assert all(r.user_agent.startswith("modeldeploy-operator/") for r in requests), \
        sorted({r.user_agent for r in requests})
