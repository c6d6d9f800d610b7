"""The Helm chart renders what the operator needs, and not one permission more.

The RBAC tests compare the rendered rules with an explicit set of (apiGroup, resource, verb): adding a
verb or a resource to the chart fails here, so every widening is a deliberate edit of this file too.
The expected set is derived from operator/modeldeploy/adapters/kube.py and handlers/modeldeployment.py;
the leader-election Role (its own template) from operator/modeldeploy/adapters/lease.py.

helm comes from modeldeploy.sandbox.tools (unpacked from a PyPI wheel on first use).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
KIND_CONFIG = ROOT / "kind-config.yaml"
RELEASE, NAMESPACE = "md", "modeldeploy-system"

try:
    from modeldeploy.sandbox.tools import ensure_helm
except ImportError as exc:  # pragma: no cover - only when the sandbox tools module is missing
    ensure_helm = None
    _IMPORT_ERROR = exc

# What the operator does in a namespace it watches (see the comments in templates/_helpers.tpl).
NAMESPACED_RULES = {
    ("modeldeploy.io", "modeldeployments", "list"),
    ("modeldeploy.io", "modeldeployments", "watch"),
    ("modeldeploy.io", "modeldeployments", "patch"),
    ("apps", "deployments/scale", "patch"),
    ("modeldeploy.io", "modeldeployments/status", "patch"),
    *{("", kind, verb) for kind in ("configmaps", "services")
      for verb in ("get", "list", "watch", "create", "patch", "delete")},
    *{("apps", "deployments", verb) for verb in ("get", "list", "watch", "create", "patch", "delete")},
    ("", "secrets", "get"),
    ("", "secrets", "create"),
    ("", "secrets", "patch"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "create"),
    ("batch", "jobs", "list"),
    ("batch", "jobs", "watch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    *{("gateway.networking.k8s.io", "httproutes", verb)
      for verb in ("get", "list", "watch", "create", "patch", "delete")},
    ("", "events", "create"),
}
# Cluster-scoped, needed in every mode: Kopf's run-time CRD observation.
CLUSTER_RULES = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}
# Cluster-scoped, only when watching some namespaces: Kopf lists/watches Namespaces to find the
# watched ones (without it, each start stalls ~1 min retrying, then assumes they exist).
NAMESPACE_RULES = {
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
}


@pytest.fixture(scope="module")
def helm() -> Path:
    if ensure_helm is None:
        pytest.skip(f"modeldeploy.sandbox.tools not importable ({_IMPORT_ERROR}); cannot get helm")
    return ensure_helm()


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)


def render(helm: Path, *set_args: str) -> list[dict]:
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *set_args)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def rule_set(role: dict) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames/nonResourceURLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), rule
                    out.add((group, resource, verb))
    return out


LEADER_ELECTION_ROLE = f"{RELEASE}-modeldeploy-leader-election"


def watch_rbac(docs: list[dict], kind: str) -> list[dict]:
    """Roles/RoleBindings for watched namespaces (the leader-election pair is tested on its own)."""
    return [d for d in of_kind(docs, kind) if d["metadata"]["name"] != LEADER_ELECTION_ROLE]


def the_deployment(docs: list[dict]) -> dict:
    deployments = of_kind(docs, "Deployment")
    assert len(deployments) == 1
    return deployments[0]


def test_lint_is_clean(helm):
    for extra in ([], ["--set", "watchNamespaces={a,b}"]):
        proc = run_helm(helm, "lint", "--strict", str(CHART), *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_default_render_two_elected_operators_with_their_service_account(helm):
    docs = render(helm)
    dep = the_deployment(docs)
    assert dep["metadata"]["namespace"] == NAMESPACE
    assert dep["spec"]["replicas"] == 2
    # Leader election makes a surge pod harmless (it stands by); never fewer than the replicas asked for.
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = dep["spec"]["template"]["spec"]
    (sa,) = of_kind(docs, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert sa["metadata"]["namespace"] == NAMESPACE
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/modeldeploy/modeldeploy:0.1.0"  # tag defaults to appVersion
    assert container["args"] == ["operator", "--liveness", "http://0.0.0.0:8080/healthz",
                                 "--metrics-address", "0.0.0.0:8081"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env == {"MODELDEPLOY_TRITON_IMAGE": "nvcr.io/nvidia/tritonserver:25.10-py3",
                   "MODELDEPLOY_FETCHER_IMAGE": "ghcr.io/modeldeploy/modeldeploy:0.1.0",
                   "MODELDEPLOY_PROGRESS_DEADLINE_SECONDS": "600", "MODELDEPLOY_WORKERS": "8",
                   "MODELDEPLOY_IDENTITY": {"fieldRef": {"fieldPath": "metadata.name"}},
                   "MODELDEPLOY_LEASE_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                   "MODELDEPLOY_LEASE_NAME": f"{RELEASE}-modeldeploy"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {"name": "healthz", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert {d["kind"] for d in docs} >= {"Deployment"} and not {"Service", "ServiceMonitor"} & {d["kind"] for d in docs}


def test_pod_meets_restricted_pod_security(helm):
    pod = the_deployment(render(helm))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_operator_deployment_is_not_watched_by_the_operator(helm):
    # Kopf watches Deployments labelled managed-by=modeldeploy; the operator's own must not be one.
    dep = the_deployment(render(helm))
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "modeldeploy"


def test_clusterwide_rbac_is_exactly_what_the_code_uses(helm):
    docs = render(helm)
    assert watch_rbac(docs, "Role") == [] and watch_rbac(docs, "RoleBinding") == []
    (role,) = of_kind(docs, "ClusterRole")
    assert rule_set(role) == NAMESPACED_RULES | CLUSTER_RULES
    (binding,) = of_kind(docs, "ClusterRoleBinding")
    (sa,) = of_kind(docs, "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": NAMESPACE}]


def test_namespaced_mode_renders_a_role_per_namespace_and_a_read_only_cluster_role(helm):
    docs = render(helm, "--set", "watchNamespaces={team-a,team-b}")
    (sa,) = of_kind(docs, "ServiceAccount")
    roles = watch_rbac(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rule_set(role) == NAMESPACED_RULES
    bindings = watch_rbac(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                        "namespace": NAMESPACE}]
    (cluster_role,) = of_kind(docs, "ClusterRole")
    assert rule_set(cluster_role) == CLUSTER_RULES | NAMESPACE_RULES
    (cluster_binding,) = of_kind(docs, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    args = the_deployment(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[5:] == ["--namespace", "team-a", "--namespace", "team-b"]


def test_values_reach_the_pod(helm):
    docs = render(helm, "--set", "logLevel=debug", "--set", "image.tag=dev", "--set", "workers=3",
                  "--set", "extraEnv[0].name=HTTPS_PROXY", "--set", "extraEnv[0].value=http://proxy:3128",
                  "--set", "imagePullSecrets[0].name=regcred", "--set", "podAnnotations.team=ml",
                  "--set", "nodeSelector.pool=system", "--set", "serviceAccount.name=op")
    pod_template = the_deployment(docs)["spec"]["template"]
    pod = pod_template["spec"]
    container = pod["containers"][0]
    assert container["args"][-1] == "--verbose"
    assert container["image"].endswith(":dev")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELDEPLOY_WORKERS"] == "3" and env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["MODELDEPLOY_FETCHER_IMAGE"] == container["image"]  # the fetcher defaults to the operator image
    fetcher = render(helm, "--set", "fetcherImage=registry.local/fetch:1")
    fcontainer = the_deployment(fetcher)["spec"]["template"]["spec"]["containers"][0]
    fenv = {e["name"]: e.get("value") for e in fcontainer["env"]}
    assert fenv["MODELDEPLOY_FETCHER_IMAGE"] == "registry.local/fetch:1"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod_template["metadata"]["annotations"] == {"team": "ml"}
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["serviceAccountName"] == "op"
    assert of_kind(docs, "ServiceAccount")[0]["metadata"]["name"] == "op"


def test_operator_metrics_endpoint_and_service_monitor(helm):
    """docs/monitoring.md: the operator serves /metrics on a named port; the ServiceMonitor scrapes it with
    honorLabels, which keeps the ModelDeployment's namespace label the alert rules join on."""
    docs = render(helm, "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.port=9100",
                  "--set", "metrics.serviceMonitor.labels.release=kps")
    container = the_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][3:5] == ["--metrics-address", "0.0.0.0:9100"]
    (service,) = of_kind(docs, "Service")
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == the_deployment(docs)["spec"]["selector"]["matchLabels"]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s",
                                             "honorLabels": True}]
    off = the_deployment(render(helm, "--set", "metrics.port=0", "--set", "metrics.serviceMonitor.enabled=true"))
    container = off["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-address" not in container["args"]
    assert [p["name"] for p in container["ports"]] == ["healthz"]


def test_rbac_and_service_account_can_be_left_out(helm):
    docs = render(helm, "--set", "rbac.create=false", "--set", "serviceAccount.create=false",
                  "--set", "serviceAccount.name=existing")
    assert {d["kind"] for d in docs} == {"Deployment", "PodDisruptionBudget"}
    assert the_deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


@pytest.mark.parametrize("bad, why", [
    (["--set-string", "replicaCount=1"], "'/replicaCount': got string, want integer"),
    (["--set", "replicaCount=-1"], "'/replicaCount': minimum"),
    (["--set", "unknownKey=1"], "additional properties 'unknownKey' not allowed"),
    (["--set", "image.unknown=1"], "additional properties 'unknown' not allowed"),
    (["--set", "logLevel=trace"], "'/logLevel'"),
    (["--set", "watchNamespaces={Team_A}"], "'/watchNamespaces/0'"),
    (["--set", "serviceAccount.create=false"], "serviceAccount.name is required"),
    (["--set", "metrics.port=70000"], "'/metrics/port'"),
    (["--set", "prometheusRule.enable=true"], "additional properties 'enable' not allowed"),
    (["--set", "grafanaDashboard.namespace=Mon_itoring"], "'/grafanaDashboard/namespace'"),
])
def test_invalid_values_fail_to_render(helm, bad, why):
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *bad)
    assert proc.returncode != 0, f"{bad} rendered:\n{proc.stdout[:500]}"
    assert why in proc.stderr, proc.stderr


def test_cluster_older_than_kube_version_is_refused(helm):
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--kube-version", "1.29.0")
    assert proc.returncode != 0 and "incompatible with Kubernetes v1.29.0" in proc.stderr, proc.stderr


def test_valid_values_still_render(helm):
    # Guards the test above: the same keys with valid values do render.
    for good in (["--set", "replicaCount=0"], ["--set", "replicaCount=3"], ["--set", "image.tag=x"],
                 ["--set", "logLevel=debug"],
                 ["--set", "watchNamespaces={team-a}"],
                 ["--set", "serviceAccount.create=false", "--set", "serviceAccount.name=x"]):
        render(helm, *good)


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["version"], str(chart["appVersion"])) == \
        ("v2", "modeldeploy", "0.1.0", "0.1.0")
    assert chart["kubeVersion"] == ">=1.30.0-0"


def test_kind_config_has_a_control_plane_and_a_gpu_labelled_worker():
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    nodes = config["nodes"]
    assert [n["role"] for n in nodes] == ["control-plane", "worker"]
    for node in nodes:
        repo, _, rest = node["image"].partition(":")
        tag, _, digest = rest.partition("@sha256:")
        assert repo == "kindest/node" and tag.startswith("v1.35.")
        assert len(digest) == 64 and int(digest, 16) >= 0
    worker = nodes[1]
    assert worker["labels"]["nvidia.com/gpu.present"] == "true"
    assert worker["labels"]["nvidia.com/gpu.product"]
    assert all(isinstance(v, str) for v in worker["labels"].values())  # kind wants string labels
    assert {"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/all"} \
        in worker["extraMounts"]
    assert "labels" not in nodes[0]


def test_works_as_a_dependency_of_an_umbrella_chart_with_global_values(helm, tmp_path):
    """Helm gives every subchart the umbrella's `global` values; a schema that refuses unknown top-level keys
    must still accept that one ("additional properties 'global' not allowed" otherwise)."""
    umbrella = tmp_path / "platform"
    umbrella.mkdir()
    (umbrella / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": "modeldeploy", "version": "0.1.0", "repository": f"file://{CHART}"}]}))
    (umbrella / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "registry.example.com", "labels": {"team": "ml"}},
        "modeldeploy": {"workers": 4, "watchNamespaces": ["serving"]}}))
    built = run_helm(helm, "dependency", "build", str(umbrella))
    assert built.returncode == 0, built.stderr
    proc = run_helm(helm, "template", "platform", str(umbrella), "--namespace", NAMESPACE)
    assert proc.returncode == 0, proc.stderr
    docs = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    env = {e["name"]: e.get("value") for e in the_deployment(docs)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELDEPLOY_WORKERS"] == "4"  # the umbrella's values reach the subchart
    assert [r["metadata"]["namespace"] for r in of_kind(docs, "Role")
            if not r["metadata"]["name"].endswith("-leader-election")] == ["serving"]
    # and the schema still refuses what it should, inside the umbrella too
    (umbrella / "values.yaml").write_text(yaml.safe_dump({"global": {}, "modeldeploy": {"workers": 0}}))
    refused = run_helm(helm, "template", "platform", str(umbrella), "--namespace", NAMESPACE)
    assert refused.returncode != 0 and "workers" in refused.stderr, refused.stderr


def test_pod_monitor_is_off_by_default_and_relabels_like_the_documented_scrape_config(helm):
    from modeldeploy.sandbox import prometheus as prom

    assert of_kind(render(helm), "PodMonitor") == []
    docs = render(helm, "--set", "podMonitor.enabled=true", "--set", "podMonitor.labels.release=kps",
                  "--set", "podMonitor.interval=30s")
    (monitor,) = of_kind(docs, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["metadata"]["namespace"] == NAMESPACE and monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["interval"], endpoint["honorLabels"]) == ("metrics", "30s", False)
    as_operator_writes_it = [{{"source_labels": "sourceLabels", "target_label": "targetLabel"}.get(k, k): v
                              for k, v in rule.items()} for rule in prom.relabel_configs()]
    assert endpoint["relabelings"] == as_operator_writes_it
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--set", "podMonitor.interval=often")
    assert proc.returncode != 0 and "/podMonitor/interval" in proc.stderr, proc.stderr
def test_leader_election_role_is_only_the_release_lease(helm):
    """get/update on the one Lease (by name); create cannot be limited by name, so it is the only
    rule without resourceNames; all in the release namespace, whatever namespaces are watched."""
    for extra in ([], ["--set", "watchNamespaces={team-a}"]):
        docs = render(helm, *extra)
        (role,) = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] == LEADER_ELECTION_ROLE]
        assert role["metadata"]["namespace"] == NAMESPACE
        lease = f"{RELEASE}-modeldeploy"
        assert role["rules"] == [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [lease],
             "verbs": ["get", "update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        ]
        (binding,) = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"] == LEADER_ELECTION_ROLE]
        (sa,) = of_kind(docs, "ServiceAccount")
        assert binding["metadata"]["namespace"] == NAMESPACE
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": LEADER_ELECTION_ROLE}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                        "namespace": NAMESPACE}]
        container = the_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MODELDEPLOY_LEASE_NAME"] == lease  # the name the Role grants


@pytest.mark.parametrize("replicas, pdb", [(2, True), (3, True), (1, False), (0, False)])
def test_pod_disruption_budget_keeps_one_operator_when_there_is_a_standby(helm, replicas, pdb):
    docs = render(helm, "--set", f"replicaCount={replicas}")
    budgets = of_kind(docs, "PodDisruptionBudget")
    assert bool(budgets) == pdb
    if pdb:
        (budget,) = budgets
        selector = the_deployment(docs)["spec"]["selector"]
        assert budget["spec"] == {"minAvailable": 1, "selector": selector}
        assert budget["metadata"]["namespace"] == NAMESPACE


def test_replicas_prefer_different_nodes_unless_affinity_is_given(helm):
    pod = the_deployment(render(helm))["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == \
        the_deployment(render(helm))["spec"]["selector"]["matchLabels"]
    given = the_deployment(render(helm, "--set", "affinity.nodeAffinity.x=y"))["spec"]["template"]["spec"]
    assert given["affinity"] == {"nodeAffinity": {"x": "y"}}
