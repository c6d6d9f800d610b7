"""helm install onto the sandbox, then the operator runs with the chart's ServiceAccount and RBAC.

The chart's RBAC is also checked as the API server sees it: ``kubectl auth can-i --list`` as the chart's
ServiceAccount, in a watched namespace and in kube-system, in both install modes, must list exactly the
rules the operator uses (tests/unit/test_chart.py ties those to the rendered chart) and nothing else.

kwok does not run containers, so the chart's operator pod is only scheduled and marked Running; the
operator process itself runs here with a kubeconfig holding that ServiceAccount's token. That is the
point of the test: the chart's least-privilege RBAC is enough for a full reconcile, and any missing
permission shows up as a Forbidden error in the operator log or a ModelDeployment that never gets Ready.

This file runs before every other integration test (conftest.py sorts it first), so the shared
cluster-wide operator fixture is not running yet and only the namespaced operator started here
reconciles; the test checks that in the operator's log.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from modeldeploy.api import constants as c

from ..unit.test_chart import CLUSTER_RULES, NAMESPACE_RULES, NAMESPACED_RULES
from .conftest import ROOT, OperatorProcess, load_example, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def helm(kubeconfig):
    from modeldeploy.sandbox.tools import ensure_helm

    binary = str(ensure_helm())

    def run(*args: str) -> str:
        out = subprocess.run([binary, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True,
                             timeout=180)
        assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr}"
        return out.stdout
    return run


def token_kubeconfig(admin_kubeconfig: str, token: str, path: Path) -> str:
    cfg = yaml.safe_load(Path(admin_kubeconfig).read_text())
    ctx_name = cfg["current-context"]
    ctx = next(x for x in cfg["contexts"] if x["name"] == ctx_name)["context"]
    cluster = next(x for x in cfg["clusters"] if x["name"] == ctx["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [cluster],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": ctx["cluster"], "user": "sa"}}],
    }))
    return str(path)


#: What every authenticated user may do (system:basic-user, system:discovery): not the chart's doing.
BASELINE_RESOURCES = {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}


def rights(kubectl, sa_kubeconfig: str, namespace: str) -> set[tuple[str, str, str]]:
    """(api group, resource, verb) the ServiceAccount holds in ``namespace``, cluster-wide rules included,
    from ``kubectl auth can-i --list`` (the API server's SelfSubjectRulesReview)."""
    out = kubectl("--kubeconfig", sa_kubeconfig, "auth", "can-i", "--list", "-n", namespace).stdout
    found = set()
    for line in out.splitlines()[1:]:
        if not line.strip() or line.startswith(" ") or "[" not in line:
            continue
        resource = line.split()[0]
        verbs = line[line.rindex("[") + 1:line.rindex("]")].split()
        if resource.startswith("/") or "[" in resource:
            continue  # non-resource URLs
        base, _, sub = resource.partition("/")  # e.g. modeldeployments.modeldeploy.io/status
        name, _, group = base.partition(".")
        name = f"{name}/{sub}" if sub else name
        if name in BASELINE_RESOURCES:
            continue
        found |= {(group, name, verb) for verb in verbs}
    return found


def can_i(kubectl, sa_kubeconfig: str, *args: str) -> str:
    return kubectl("--kubeconfig", sa_kubeconfig, "auth", "can-i", *args, check=False).stdout.strip()


#: Rights the review found in kube-system with the cluster-wide install, and more an attacker would want.
SENSITIVE = [("get", "secrets"), ("create", "deployments"), ("delete", "configmaps"), ("create", "jobs"),
             ("list", "secrets"), ("delete", "secrets"), ("update", "secrets"), ("delete", "deployments"),
             ("create", "pods"), ("create", "pods/exec"), ("patch", "events"), ("create", "serviceaccounts/token")]


def service_account_kubeconfig(kubectl, kubeconfig, release_ns, tmp_path, name="modeldeploy") -> str:
    token = kubectl("create", "token", name, "-n", release_ns, "--duration=1h").stdout.strip()
    return token_kubeconfig(kubeconfig, token, tmp_path / f"{name}.kubeconfig")


def test_helm_install_and_operator_reconciles_with_chart_rbac(api, kubectl, helm, namespace, kubeconfig,
                                                               tmp_path, crd_installed):
    # crd_installed: the CRD in the cluster is this checkout's, so Helm's server-side apply of the
    # chart's identical copy changes nothing (it would conflict with an older copy applied by kubectl).
    release_ns = f"{namespace}-sys"
    kubectl("create", "namespace", release_ns)
    try:
        helm("install", "modeldeploy", str(ROOT / "charts" / "modeldeploy"), "-n", release_ns,
             "--set", f"watchNamespaces[0]={namespace}", "--wait", "--timeout", "120s")
        apps = client.AppsV1Api(api)
        dep = apps.read_namespaced_deployment("modeldeploy", release_ns)
        assert dep.spec.strategy.type == "RollingUpdate" and dep.status.ready_replicas == 2

        sa = dep.spec.template.spec.service_account_name
        token = kubectl("create", "token", sa, "-n", release_ns, "--duration=1h").stdout.strip()
        sa_kubeconfig = token_kubeconfig(kubeconfig, token, tmp_path / "sa.kubeconfig")
        # The ServiceAccount may not touch namespaces it was not given, and in its own only what it uses.
        assert rights(kubectl, sa_kubeconfig, namespace) == NAMESPACED_RULES | CLUSTER_RULES | NAMESPACE_RULES
        assert rights(kubectl, sa_kubeconfig, "kube-system") == CLUSTER_RULES | NAMESPACE_RULES
        for verb, resource in SENSITIVE:
            assert can_i(kubectl, sa_kubeconfig, verb, resource, "-n", "kube-system") == "no", (verb, resource)
            assert can_i(kubectl, sa_kubeconfig, verb, resource, "-n", "default") == "no", (verb, resource)
        assert can_i(kubectl, sa_kubeconfig, "get", "secrets", "-n", namespace) == "yes"

        proc = OperatorProcess(sa_kubeconfig, tmp_path / "operator.log")
        # Elects through the chart's Lease with the chart's Role (the kwok pods run no process).
        proc.extra_args = ["--namespace", namespace, "--lease-namespace", release_ns, "--lease-name", "modeldeploy",
                           "--identity", "helm-test"]
        proc.start()
        try:
            body = copy.deepcopy(load_example("digits.yaml"))
            body["spec"]["replicas"] = 1
            client.CustomObjectsApi(api).create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL,
                                                                         body)

            def ready():
                md = client.CustomObjectsApi(api).get_namespaced_custom_object(c.GROUP, c.VERSION, namespace,
                                                                               c.PLURAL, "digits")
                return (md.get("status") or {}).get("phase") == "Ready"
            wait_for(ready, 60, what="digits Ready under the chart's RBAC")
            # Kopf posts Events from a queue after the handler returns: wait for it, do not race it.
            wait_for(lambda: any(e.reason == "Ready" and e.involved_object.name == "digits"
                                 for e in client.CoreV1Api(api).list_namespaced_event(namespace).items),
                     30, what="the Ready Event posted with the chart's RBAC")
        finally:
            proc.stop()
        log = proc.log_path.read_text()
        assert f"reconciled {namespace}/digits: phase Ready" in log, proc.log_tail(60)
        assert "leading: create" in log and "released the Lease" in log, proc.log_tail(60)
        assert "Forbidden" not in log and "forbidden" not in log, proc.log_tail(60)
    finally:
        helm("uninstall", "modeldeploy", "-n", release_ns, "--wait")
        kubectl("delete", "namespace", release_ns, "--wait=false")


def test_clusterwide_install_grants_exactly_what_the_operator_uses(kubectl, helm, namespace, kubeconfig, tmp_path,
                                                                   crd_installed):
    """Watching every namespace needs the operator's rules in every namespace (kube-system included: RBAC
    has no "all namespaces but"); nothing beyond them. docs/security.md says to prefer watchNamespaces."""
    release_ns = f"{namespace}-cw"
    kubectl("create", "namespace", release_ns)
    try:
        helm("install", "modeldeploy-cw", str(ROOT / "charts" / "modeldeploy"), "-n", release_ns, "--skip-crds",
             "--set", "replicaCount=0", "--wait", "--timeout", "120s")
        sa_kubeconfig = service_account_kubeconfig(kubectl, kubeconfig, release_ns, tmp_path, "modeldeploy-cw")
        for ns in ("kube-system", namespace):
            assert rights(kubectl, sa_kubeconfig, ns) == NAMESPACED_RULES | CLUSTER_RULES
        used = {(verb, resource) for _, resource, verb in NAMESPACED_RULES}
        for verb, resource in SENSITIVE:
            expected = "yes" if (verb, resource) in used else "no"
            assert can_i(kubectl, sa_kubeconfig, verb, resource, "-n", "kube-system") == expected, (verb, resource)
        for verb, resource in (("create", "clusterroles"), ("create", "clusterrolebindings"), ("impersonate", "users"),
                               ("escalate", "roles"), ("bind", "roles"), ("create", "namespaces"),
                               ("delete", "customresourcedefinitions"), ("patch", "nodes")):
            assert can_i(kubectl, sa_kubeconfig, verb, resource, "-A") == "no", (verb, resource)
    finally:
        helm("uninstall", "modeldeploy-cw", "-n", release_ns, "--wait")
        kubectl("delete", "namespace", release_ns, "--wait=false")
