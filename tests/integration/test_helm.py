"""helm install onto the sandbox, then the operator runs with the chart's ServiceAccount and RBAC.

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
        # The ServiceAccount may not touch namespaces it was not given.
        denied = kubectl("--kubeconfig", sa_kubeconfig, "auth", "can-i", "create", "deployments", "-n", "default",
                         check=False)
        assert denied.stdout.strip() == "no"

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
