"""kwokctl configuration and arguments: local binaries only, loopback, our ports, our workdir."""

from pathlib import Path

import pytest

from modeldeploy.sandbox import binaries, cluster

PORTS = cluster.Ports(etcd=2001, etcd_peer=2002, apiserver=2003, controller_manager=2004,
                      scheduler=2005, kwok=2006)


def make_config():
    return cluster.kwokctl_config(Path("/c/bin/k8s-v1.35.4"), Path("/c/bin/tools/kubectl"), PORTS,
                                  "v1.35.4", Path("/s/kwok-cache"))


def test_every_binary_is_a_local_path():
    opts = make_config()["options"]
    binary_keys = [k for k in opts if k.endswith("Binary")]
    assert sorted(binary_keys) == sorted([
        "etcdBinary", "kubeApiserverBinary", "kubeControllerManagerBinary",
        "kubeSchedulerBinary", "kwokControllerBinary", "kubectlBinary",
    ])
    for key in binary_keys:
        assert opts[key].startswith("/"), key
        assert "://" not in opts[key], key
    assert opts["kwokControllerBinary"] == "/c/bin/k8s-v1.35.4/kwok"


def test_ports_loopback_and_security():
    opts = make_config()["options"]
    assert opts["bindAddress"] == "127.0.0.1"
    assert (opts["etcdPort"], opts["etcdPeerPort"], opts["kubeApiserverPort"],
            opts["kubeControllerManagerPort"], opts["kubeSchedulerPort"],
            opts["kwokControllerPort"]) == (2001, 2002, 2003, 2004, 2005, 2006)
    # Secure port + authorization are what give kube-apiserver the service-account issuer and keys.
    assert opts["securePort"] and opts["kubeAuthorization"] and opts["kubeAdmission"]
    assert opts["runtime"] == "binary" and opts["kubeVersion"] == "v1.35.4"


def test_config_header():
    cfg = make_config()
    assert cfg["apiVersion"] == "config.kwok.x-k8s.io/v1alpha1"
    assert cfg["kind"] == "KwokctlConfiguration"


def test_create_args_do_not_touch_user_kubeconfig():
    args = cluster.kwokctl_create_args(Path("/b/kwokctl"), Path("/s/kwokctl.yaml"))
    assert args[0] == "/b/kwokctl"
    assert args[args.index("--kubeconfig") + 1] == ""
    assert args[args.index("--runtime") + 1] == "binary"
    assert args[args.index("--config") + 1] == "/s/kwokctl.yaml"
    assert args[args.index("--name") + 1] == cluster.CLUSTER_NAME


def test_kwokctl_env_isolates_workdir_and_prefers_our_kubectl():
    env = cluster.kwokctl_env(Path("/s"), Path("/t"), base={"PATH": "/usr/bin", "KWOK_RUNTIME": "docker"})
    assert env["KWOK_WORKDIR"] == "/s/kwok"
    assert env["PATH"].split(":")[0] == "/t"
    assert "KWOK_RUNTIME" not in env


def test_free_ports_distinct():
    ports = cluster.free_ports(6)
    assert len(set(ports)) == 6 and all(p > 0 for p in ports)


def test_sandbox_paths_follow_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MODELDEPLOY_SANDBOX_DIR", raising=False)
    monkeypatch.setenv("MODELDEPLOY_CACHE", str(tmp_path / "cache"))
    sb = cluster.Sandbox()
    assert sb.state_dir == tmp_path / "cache" / "sandbox"
    assert sb.kubeconfig_path == tmp_path / "cache/sandbox/kwok/clusters/modeldeploy/kubeconfig.yaml"
    monkeypatch.setenv("MODELDEPLOY_SANDBOX_DIR", str(tmp_path / "sb"))
    assert cluster.Sandbox().logs_dir == tmp_path / "sb/kwok/clusters/modeldeploy/logs"
    assert cluster.Sandbox().env() == f"export KUBECONFIG={tmp_path}/sb/kwok/clusters/modeldeploy/kubeconfig.yaml"


@pytest.mark.parametrize("value, expected", [(None, Path.home() / ".cache/modeldeploy"), ("/x/y", Path("/x/y"))])
def test_cache_dir(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("MODELDEPLOY_CACHE", raising=False)
    else:
        monkeypatch.setenv("MODELDEPLOY_CACHE", value)
    assert binaries.cache_dir() == expected
    monkeypatch.delenv("K8S_VERSION", raising=False)
    assert binaries.control_plane_dir() == expected / "bin" / "k8s-v1.35.4"


def test_ensure_control_plane_skips_build_when_complete(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELDEPLOY_CACHE", str(tmp_path))
    monkeypatch.delenv("K8S_VERSION", raising=False)
    bin_dir = tmp_path / "bin" / "k8s-v1.35.4"
    bin_dir.mkdir(parents=True)
    for name in binaries.COMPONENTS:
        (bin_dir / name).write_text("")
    (bin_dir / ".complete").write_text("")
    monkeypatch.setattr(binaries, "_run_build", lambda out: pytest.fail("must not build"))
    assert binaries.ensure_control_plane() == bin_dir


def test_status_of_absent_sandbox(tmp_path):
    info = cluster.Sandbox(state_dir=tmp_path).status()
    assert info["up"] is False and info["exists"] is False
    assert set(info["components"]) == set(cluster.COMPONENTS)
    assert not cluster.Sandbox(state_dir=tmp_path).is_up()


def test_delete_args_name_the_clusters_own_kubeconfig():
    args = cluster.kwokctl_delete_args(Path("/b/kwokctl"), Path("/s/kubeconfig.yaml"))
    assert args[-2:] == ["--kubeconfig", "/s/kubeconfig.yaml"]
    assert args[1:5] == ["--name", cluster.CLUSTER_NAME, "delete", "cluster"]


@pytest.mark.parametrize("line, expected", [
    ('{"level":"INFO","msg":"Cluster is creating","cluster":"modeldeploy"}', "Cluster is creating"),
    ('{"level":"INFO","msg":"Cluster is started","elapsed":{"human":"1.5s"}}', "Cluster is started (1.5s)"),
    ('{"level":"ERROR","msg":"Execute exit","err":"empty path"}\n', "ERROR: Execute exit err=empty path"),
    ("not json\n", "not json"),
    ("[1, 2]", "[1, 2]"),
])
def test_format_kwokctl_line(line, expected):
    assert cluster.format_kwokctl_line(line) == expected


def test_docstring_examples():
    import doctest

    from modeldeploy.sandbox import nodes

    for module in (cluster, nodes):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_log_excerpt_surfaces_the_error_above_usage_text():
    lines = ["I1128 start\n", "Error: unknown flag: --bogus\n"] + [f"usage {i}\n" for i in range(40)]
    text = cluster.log_excerpt(lines, tail=5)
    assert text.startswith("error lines:\nError: unknown flag: --bogus\n")
    assert text.endswith("usage 39\n") and "usage 34" not in text


def test_log_excerpt_plain_tail_when_no_errors():
    assert cluster.log_excerpt(["a\n", "b\n"], tail=5) == "last lines:\na\nb\n"


def test_log_excerpt_klog_severity():
    lines = ["I1128 ok\n", 'E1128 02:20:20 run.go:72] "command failed"\n', "x\n"]
    assert 'E1128 02:20:20 run.go:72] "command failed"' in cluster.log_excerpt(lines, tail=1)


def test_build_failure_streams_output_and_reports_tail(monkeypatch, tmp_path):
    import io

    script = tmp_path / "build.sh"
    script.write_text('echo "[build] step one"\necho "go: cannot find module" >&2\nexit 3\n')
    monkeypatch.setattr(binaries, "BUILD_SCRIPT", script)
    monkeypatch.setenv("MODELDEPLOY_CACHE", str(tmp_path / "cache"))
    out = io.StringIO()
    with pytest.raises(binaries.BinariesError, match="exit 3") as err:
        binaries.ensure_control_plane(out)
    assert "[build] step one" in out.getvalue()
    assert "go: cannot find module" in str(err.value)


def test_build_that_leaves_folder_incomplete_is_an_error(monkeypatch, tmp_path):
    import io

    script = tmp_path / "build.sh"
    script.write_text("exit 0\n")
    monkeypatch.setattr(binaries, "BUILD_SCRIPT", script)
    monkeypatch.setenv("MODELDEPLOY_CACHE", str(tmp_path / "cache"))
    with pytest.raises(binaries.BinariesError, match="incomplete"):
        binaries.ensure_control_plane(io.StringIO())


def test_audit_policy_is_passed_to_kwokctl_when_given():
    with_audit = cluster.kwokctl_config(Path("/c/bin/k8s-v1.35.4"), Path("/c/bin/tools/kubectl"), PORTS,
                                        "v1.35.4", Path("/c/cache"), Path("/s/audit-policy.yaml"))
    assert with_audit["options"]["kubeAuditPolicy"] == "/s/audit-policy.yaml"
    assert "kubeAuditPolicy" not in make_config()["options"]
    assert cluster.AUDIT_POLICY["rules"][-1] == {"level": "Metadata"}
