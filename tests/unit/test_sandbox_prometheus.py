"""The sandbox's Prometheus: rendered config and file_sd targets (pure, table-driven), the runner's targets
hook, the Sandbox's bookkeeping, and (when Debian's prometheus is installed) the real binary accepting
our config and starting/stopping in well under a second."""

import io
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from modeldeploy.api import constants as c
from modeldeploy.sandbox import cluster
from modeldeploy.sandbox import prometheus as prom
from modeldeploy.sandbox.podrunner import claim
from modeldeploy.sandbox.podrunner.runner import PodRunner, PodState

LABELS = {c.LABEL_MODEL: "digits", c.LABEL_REVISION: "d5ad467431", c.LABEL_DEPLOYMENT: "digits",
          c.LABEL_TRACK: "stable", c.LABEL_NAME: "triton", "pod-template-hash": "855f6fc9c8"}


def pod(name="digits-stable-1", ns="t-1", phase="Running", ports='{"8000": 41001, "8001": 41002, "8002": 41003}',
        labels=None, node="local-0", deleting=False):
    meta = {"namespace": ns, "name": name, "uid": f"uid-{name}", "labels": dict(LABELS if labels is None else labels),
            "annotations": {} if ports is None else {claim.PORTS_ANNOTATION: ports}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-28T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": node}, "status": {"phase": phase} if phase else {}}


FULL = {"namespace": "t-1", "pod": "digits-stable-1", "node": "local-0", "modeldeploy_model": "digits",
        "revision": "d5ad467431", "modeldeployment": "digits", "track": "stable"}


@pytest.mark.parametrize("pods, expected", [
    ([], []),
    ([pod()], [{"targets": ["127.0.0.1:41003"], "labels": FULL}]),
    # not Running (yet, or any more): not a target
    ([pod(phase="Pending")], []),
    ([pod(phase="Succeeded")], []),
    ([pod(phase="Failed")], []),
    ([pod(phase=None)], []),
    # Running but no ports recorded yet, no metrics port, or a broken annotation: not a target
    ([pod(ports=None)], []),
    ([pod(ports='{"8000": 41001}')], []),
    ([pod(ports="{not json")], []),
    ([pod(ports='["8002"]')], []),
    # terminating but still Running: kept while Triton drains (as kubernetes_sd does)
    ([pod(deleting=True)], [{"targets": ["127.0.0.1:41003"], "labels": FULL}]),
    # only our labels, renamed; absent ones left out; unrelated pod labels ignored
    ([pod(labels={c.LABEL_REVISION: "r1", "app": "x"})],
     [{"targets": ["127.0.0.1:41003"], "labels": {"namespace": "t-1", "pod": "digits-stable-1", "node": "local-0",
                                                   "revision": "r1"}}]),
    ([pod(labels={c.LABEL_TRACK: "canary", c.LABEL_MODEL: ""})],
     [{"targets": ["127.0.0.1:41003"], "labels": {"namespace": "t-1", "pod": "digits-stable-1", "node": "local-0",
                                                   "track": "canary"}}]),
    # several pods: one group each, sorted by namespace then pod, whatever the input order
    ([pod("b", ports='{"8002": 2}'), pod("a", ns="z", ports='{"8002": 3}'), pod("a", ports='{"8002": 1}'),
      pod("c", phase="Pending", ports='{"8002": 4}')],
     [["t-1", "a", "127.0.0.1:1"], ["t-1", "b", "127.0.0.1:2"], ["z", "a", "127.0.0.1:3"]]),
], ids=["none", "running", "pending", "succeeded", "failed", "no-status", "no-annotation", "no-metrics-port",
        "bad-json", "not-an-object", "terminating", "partial-labels", "empty-label", "sorted"])
def test_file_sd_groups(pods, expected):
    groups = prom.file_sd_groups(pods)
    if expected and isinstance(expected[0], list):
        groups = [[g["labels"]["namespace"], g["labels"]["pod"], g["targets"][0]] for g in groups]
    assert groups == expected


def test_target_labels_never_clash_with_tritons_own():
    """Triton labels its series `model` and `version`: ours must not reuse them, or Prometheus would rename
    Triton's to `exported_model` (honor_labels: false) or drop ours (honor_labels: true)."""
    ours = {"namespace", "pod", "node", *prom.TARGET_LABELS.values()}
    assert not ours & prom.TRITON_SERIES_LABELS
    assert {"model", "version"} <= prom.TRITON_SERIES_LABELS
    assert set(prom.TARGET_LABELS) == {c.LABEL_MODEL, c.LABEL_REVISION, c.LABEL_DEPLOYMENT, c.LABEL_TRACK}
    assert prom.prometheus_config("/t.json")["scrape_configs"][0]["honor_labels"] is False


def test_render_file_sd_is_stable_json():
    a = prom.render_file_sd([pod("b"), pod("a", ports='{"8002": 9}')])
    assert a == prom.render_file_sd([pod("a", ports='{"8002": 9}'), pod("b")])
    assert json.loads(a)[0]["targets"] == ["127.0.0.1:9"] and a.endswith("\n")
    assert json.loads(prom.render_file_sd([])) == []


def test_config():
    cfg = prom.prometheus_config(Path("/s/prometheus/targets/triton.json"))
    assert cfg["global"] == {"scrape_interval": "2s", "evaluation_interval": "2s", "scrape_timeout": "2s"}
    (job,) = cfg["scrape_configs"]
    assert job["job_name"] == "triton" and job["metrics_path"] == "/metrics"
    assert job["file_sd_configs"] == [{"files": ["/s/prometheus/targets/triton.json"], "refresh_interval": "2s"}]


def test_command():
    argv = prom.command("/usr/bin/prometheus", Path("/s/p"), 9099)
    assert argv[0] == "/usr/bin/prometheus"
    for arg in ("--config.file=/s/p/prometheus.yml", "--storage.tsdb.path=/s/p/data",
                "--web.listen-address=127.0.0.1:9099", "--web.enable-lifecycle"):
        assert arg in argv


def test_write_atomic_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "targets" / "triton.json"
    prom.write_atomic(target, "[]\n")
    prom.write_atomic(target, '[{"targets": []}]\n')
    assert target.read_text() == '[{"targets": []}]\n'
    assert [p.name for p in target.parent.iterdir()] == ["triton.json"]


# --- the runner's hook ------------------------------------------------------------------------------
def bare_runner(targets):
    return PodRunner(api=None, config=None, prometheus_targets=targets, out=io.StringIO())  # type: ignore[arg-type]


def test_runner_publishes_targets_only_when_they_change(tmp_path, monkeypatch):
    targets = tmp_path / "prometheus" / "targets" / "triton.json"
    runner = bare_runner(targets)
    writes = []
    real = prom.write_atomic
    monkeypatch.setattr(prom, "write_atomic", lambda path, text: (writes.append(text), real(path, text)))
    runner.publish_targets()
    assert json.loads(targets.read_text()) == []  # written at once, so Prometheus has a file to read
    runner.pods["u1"] = PodState(pod(phase="Pending"), 0.0)
    runner.publish_targets()
    assert len(writes) == 1  # a Pending pod changes nothing
    runner.pods["u1"].pod = pod()
    runner.publish_targets()
    runner.publish_targets()
    assert len(writes) == 2 and json.loads(targets.read_text())[0]["targets"] == ["127.0.0.1:41003"]
    runner.pods["u1"].pod = pod(labels={**LABELS, c.LABEL_TRACK: "canary"})  # a label change is a change
    runner.publish_targets()
    assert len(writes) == 3 and json.loads(targets.read_text())[0]["labels"]["track"] == "canary"
    runner.pods.clear()
    runner.publish_targets()
    assert len(writes) == 4 and json.loads(targets.read_text()) == []


def test_runner_without_targets_flag_writes_nothing(tmp_path):
    runner = bare_runner(None)
    runner.pods["u1"] = PodState(pod(), 0.0)
    runner.publish_targets()
    assert list(tmp_path.iterdir()) == []


def test_runner_survives_an_unwritable_targets_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    runner = bare_runner(blocker / "triton.json")  # parent is a file: every write fails
    runner.pods["u1"] = PodState(pod(), 0.0)
    runner.publish_targets()  # says so, does not raise


def test_runner_cli_flag(monkeypatch, tmp_path):
    from modeldeploy.sandbox.podrunner import runner as runner_mod

    seen = {}

    class Stop(Exception):
        pass

    def fake_init(self, api, config, node, gpus, prometheus_targets=None):
        seen["targets"] = prometheus_targets
        raise Stop

    monkeypatch.setattr(runner_mod.PodRunner, "__init__", fake_init)
    monkeypatch.setattr(runner_mod, "host_config", lambda *a: None)
    monkeypatch.setattr(runner_mod, "KubeHttp", lambda *a: None)
    with pytest.raises(Stop):
        runner_mod.main(["--kubeconfig", "/k", "--prometheus-targets", str(tmp_path / "t.json")])
    assert seen["targets"] == tmp_path / "t.json"
    with pytest.raises(Stop):
        runner_mod.main(["--kubeconfig", "/k"])
    assert seen["targets"] is None


# --- the Sandbox's bookkeeping ---------------------------------------------------------------------
def test_sandbox_reports_prometheus_only_while_it_runs(tmp_path):
    sb = cluster.Sandbox(state_dir=tmp_path)
    assert sb.prometheus_url is None
    assert sb.env() == f"export KUBECONFIG={sb.kubeconfig_path}"
    assert sb.status()["prometheus"]["running"] is False
    sb.prometheus_dir.mkdir(parents=True)
    (sb.prometheus_dir / "url").write_text("http://127.0.0.1:9999")
    sb.prometheus_pidfile.parent.mkdir(parents=True)
    with subprocess.Popen(["sleep", "30"]) as proc:
        sb.prometheus_pidfile.write_text(str(proc.pid))
        assert sb.prometheus_url == "http://127.0.0.1:9999"
        assert sb.env().splitlines() == [f"export KUBECONFIG={sb.kubeconfig_path}",
                                         "export MODELDEPLOY_PROMETHEUS_URL=http://127.0.0.1:9999"]
        info = sb.status()["prometheus"]
        assert info["running"] and info["pid"] == proc.pid and info["url"] == "http://127.0.0.1:9999"
        sb._stop_prometheus()
        assert proc.poll() is not None and not sb.prometheus_pidfile.exists()
    assert sb.prometheus_url is None


def test_sandbox_without_prometheus_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(prom, "find_binary", lambda: None)
    message = cluster.Sandbox(state_dir=tmp_path)._start_prometheus(deadline=0)
    assert "not installed" in message


# --- the real binary (skipped without Debian's prometheus) --------------------------------------------
needs_prometheus = pytest.mark.skipif(prom.find_binary() is None, reason="prometheus not installed")


@needs_prometheus
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_config_and_targets(tmp_path):
    targets = tmp_path / "triton.json"
    targets.write_text(prom.render_file_sd([pod(), pod("x", labels={})]))
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prom.prometheus_config(targets)))
    proc = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_prometheus
def test_start_ready_and_stop(tmp_path):
    home, log, pidfile = tmp_path / "prom", tmp_path / "logs" / "prometheus.log", tmp_path / "pids" / "p.pid"
    url, pid = prom.start(prom.find_binary(), home, log, pidfile, timeout=30)
    sb = cluster.Sandbox(state_dir=tmp_path / "sb")
    try:
        assert int(pidfile.read_text()) == pid
        assert json.loads((home / prom.TARGETS_FILE).read_text()) == []
        with urllib.request.urlopen(f"{url}/api/v1/status/config", timeout=5) as resp:
            loaded = yaml.safe_load(json.load(resp)["data"]["yaml"])
        assert loaded["scrape_configs"][0]["file_sd_configs"][0]["files"] == [str(home / prom.TARGETS_FILE)]
    finally:
        assert sb._stop_pids({"prometheus": pid}) == []
