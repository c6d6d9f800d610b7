"""The sandbox's Prometheus: the scrape config users copy (kubernetes_sd, role pod) with the label contract
that render/promql.py queries; Prometheus' least-privilege identity; the docs showing exactly that config;
the Sandbox's bookkeeping; and (once built) promtool accepting the config and the binary starting."""

import doctest
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from modeldeploy.api import constants as c
from modeldeploy.render import promql
from modeldeploy.sandbox import cluster
from modeldeploy.sandbox import prometheus as prom

ROOT = Path(__file__).resolve().parents[2]


def test_docstring_examples():
    assert doctest.testmod(prom).failed == 0


def test_label_contract_is_what_promql_and_canary_analysis_query():
    assert prom.CONTRACT_LABELS == ("namespace", "pod", "node", "revision", "track", "modeldeployment",
                                    "modeldeploy_model")
    selector = promql.selector("ns", "md", revision="r", track="canary")
    assert {m.split("=")[0] for m in selector.split(",")} <= set(prom.CONTRACT_LABELS)


def test_target_labels_never_clash_with_tritons_own():
    """Triton labels its series `model` and `version`: ours must not reuse them, or Prometheus would rename
    Triton's to `exported_model` (honor_labels: false) or drop ours (honor_labels: true)."""
    assert not set(prom.CONTRACT_LABELS) & prom.TRITON_SERIES_LABELS
    assert {"model", "version"} <= prom.TRITON_SERIES_LABELS
    assert prom.scrape_config()["honor_labels"] is False


def test_relabeling_keeps_running_modeldeploy_pods_metrics_port_and_maps_each_contract_label():
    rules = prom.relabel_configs()
    keeps = [r for r in rules if r.get("action") == "keep"]
    assert keeps == [
        {"source_labels": ["__meta_kubernetes_pod_label_modeldeploy_io_modeldeployment"], "regex": ".+", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"}]
    targets = {r["target_label"]: r["source_labels"][0] for r in rules if "target_label" in r}
    assert targets == {
        "namespace": "__meta_kubernetes_namespace", "pod": "__meta_kubernetes_pod_name",
        "node": "__meta_kubernetes_pod_node_name",
        "revision": "__meta_kubernetes_pod_label_modeldeploy_io_revision",
        "track": "__meta_kubernetes_pod_label_modeldeploy_io_track",
        "modeldeployment": "__meta_kubernetes_pod_label_modeldeploy_io_modeldeployment",
        "modeldeploy_model": "__meta_kubernetes_pod_label_modeldeploy_io_model"}
    assert set(targets) == set(prom.CONTRACT_LABELS)


def test_the_metrics_port_the_config_keeps_is_the_one_the_operator_names():
    from modeldeploy.api.spec import parse_spec
    from modeldeploy.render.triton import Owner, RenderOptions, render_children

    spec = parse_spec("d", {"model": {"uri": "s3://b/m.onnx", "format": "onnx", "name": "d"}})
    deployment = next(o for o in render_children(Owner("d", "ns", "u"), spec, "r", RenderOptions())
                      if o["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    assert ports[prom.METRICS_PORT_NAME] == c.METRICS_PORT
    assert all(key in template["metadata"]["labels"] for key in prom.TARGET_LABELS), template["metadata"]["labels"]


def test_sandbox_config_points_discovery_at_the_sandbox_api_server():
    cfg = prom.prometheus_config("https://127.0.0.1:6443", "/p/ca.crt", "/p/token")
    assert cfg["global"] == {"scrape_interval": "2s", "evaluation_interval": "2s", "scrape_timeout": "2s"}
    (job,) = cfg["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "api_server": "https://127.0.0.1:6443",
                                             "tls_config": {"ca_file": "/p/ca.crt"},
                                             "authorization": {"credentials_file": "/p/token"}}]
    assert {k: v for k, v in job.items() if k != "kubernetes_sd_configs"} == \
        {k: v for k, v in prom.scrape_config().items() if k != "kubernetes_sd_configs"}


def test_prometheus_may_only_list_and_watch_pods():
    objects = {o["kind"]: o for o in prom.access_objects()}
    assert objects["ClusterRole"]["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]
    binding = objects["ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": prom.ACCOUNT, "namespace": prom.NAMESPACE}]
    assert binding["roleRef"]["name"] == objects["ClusterRole"]["metadata"]["name"]
    secret = objects["Secret"]
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": prom.ACCOUNT}


def _doc_yaml_blocks(path: Path, heading: str) -> list:
    text = path.read_text()
    section = text[text.index(heading):]
    nxt = re.search(r"\n## ", section[len(heading):])
    section = section[: len(heading) + nxt.start()] if nxt else section
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]


def test_docs_show_exactly_the_scrape_config_the_sandbox_runs():
    blocks = _doc_yaml_blocks(ROOT / "docs" / "monitoring.md", "## Scraping Triton")
    assert {"scrape_configs": [prom.scrape_config(interval="15s")]} in blocks


def test_chart_pod_monitor_relabels_as_the_scrape_config():
    """The PodMonitor's relabelings are the scrape config's, written the Prometheus Operator's way."""
    template = (ROOT / "charts" / "modeldeploy" / "templates" / "podmonitor.yaml").read_text()
    for rule in prom.relabel_configs():
        if "target_label" in rule:
            assert f"targetLabel: {rule['target_label']}" in template
        for label in rule["source_labels"]:
            assert label in template


def test_promtool_accepts_the_config(tmp_path):
    promtool = prom.find_promtool()
    if promtool is None:
        pytest.skip("Prometheus is not built yet (modeldeploy sandbox up, or make setup, builds it)")
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_text("")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prom.prometheus_config("https://127.0.0.1:6443", tmp_path / "ca.crt",
                                                            tmp_path / "token")))
    proc = subprocess.run([str(promtool), "check", "config", "--syntax-only", str(config)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_debians_prometheus_is_never_picked(monkeypatch, tmp_path):
    """Debian's 2.42 has no Kubernetes discovery: only the sandbox's build (or an explicit override) is used."""
    monkeypatch.setenv("MODELDEPLOY_CACHE", str(tmp_path))
    monkeypatch.delenv("MODELDEPLOY_PROMETHEUS", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert prom.find_binary() is None
    argv, env = prom.build_command("go", tmp_path)
    assert "-tags=remove_all_sd,enable_kubernetes_sd" in argv and env["GOBIN"] == str(tmp_path)
    assert f"{prom.MODULE}/cmd/prometheus@{prom.MODULE_VERSION}" in argv


# --- the Sandbox's bookkeeping ---------------------------------------------------------------------
def test_sandbox_reports_prometheus_and_gateway_only_while_they_run(tmp_path):
    sb = cluster.Sandbox(state_dir=tmp_path)
    assert sb.prometheus_url is None and sb.gateway_url is None
    assert sb.env() == f"export KUBECONFIG={sb.kubeconfig_path}"
    assert sb.status()["prometheus"]["running"] is False
    sb.prometheus_dir.mkdir(parents=True)
    (sb.prometheus_dir / "url").write_text("http://127.0.0.1:9999")
    sb.gateway_dir.mkdir(parents=True)
    (sb.gateway_dir / "url").write_text("http://10.244.9.1")
    sb.prometheus_pidfile.parent.mkdir(parents=True)
    with subprocess.Popen(["sleep", "30"]) as proc:
        sb.prometheus_pidfile.write_text(str(proc.pid))
        sb.gateway_pidfile.write_text(str(proc.pid))
        assert sb.env().splitlines() == [f"export KUBECONFIG={sb.kubeconfig_path}",
                                         "export MODELDEPLOY_PROMETHEUS_URL=http://127.0.0.1:9999",
                                         "export MODELDEPLOY_GATEWAY_URL=http://10.244.9.1"]
        info = sb.status()
        assert info["prometheus"]["pid"] == proc.pid and info["gateway"]["url"] == "http://10.244.9.1"
        sb._stop_prometheus()
        assert proc.poll() is not None and not sb.prometheus_pidfile.exists()
    assert sb.prometheus_url is None and sb.gateway_url is None


def test_without_a_pod_network_the_sandbox_says_so_in_one_line_and_runs_no_prometheus(tmp_path, monkeypatch):
    import io

    monkeypatch.setenv("MODELDEPLOY_POD_NETWORK", "loopback")
    out = io.StringIO()
    sb = cluster.Sandbox(state_dir=tmp_path, out=out)
    sb.workdir.mkdir(parents=True)
    assert sb._pod_network() is None
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pod network: none (MODELDEPLOY_POD_NETWORK=loopback)"), lines
    assert "mapped ports" in lines[0] and "CI=true" in lines[0]
    assert sb.network() == {"mode": "loopback", "reason": "MODELDEPLOY_POD_NETWORK=loopback"}
    assert sb.pod_range() is None
    sb._prometheus_binary = Path("/bin/true")
    assert "no pod network" in sb._start_prometheus(api=None, deadline=0)
    assert "no gateway" in sb._start_gateway(api=None, kubectl=Path("/x"), deadline=0, claimed=None)
