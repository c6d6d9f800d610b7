"""Fixtures for tests against the real sandbox control plane with the operator running.

The tests have a sandbox of their own (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kwok, the pod runner, Prometheus), never the one ``make demo`` leaves running: its state folder is
``$MODELDEPLOY_TEST_SANDBOX_DIR``, else ``$MODELDEPLOY_SANDBOX_DIR`` when set to anything but the demo's
default folder, else ``$MODELDEPLOY_CACHE/sandbox-tests`` (see ``sandbox_dir_for_tests``). The session
fixture brings it up and takes it down (``MODELDEPLOY_KEEP_SANDBOX=1`` keeps it). A sandbox in that
folder that is already up is reused only when no operator of this machine reconciles it: two operators
applying the same children with one field manager undo each other, and the session stops at once
with the pid of the other one.

The operator runs as a subprocess (``python -m modeldeploy operator``), as a user would run it. Every
test works in a namespace of its own (the ``namespace`` fixture); none uses ``default``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Mapping

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def sandbox_dir_for_tests(environ: Mapping[str, str], demo_default: Path) -> Path:
    """The tests' sandbox folder: never ``demo_default``, the folder ``make demo`` uses.

    >>> d = Path("/c/sandbox")
    >>> str(sandbox_dir_for_tests({}, d)), str(sandbox_dir_for_tests({"MODELDEPLOY_SANDBOX_DIR": "/tmp/s"}, d))
    ('/c/sandbox-tests', '/tmp/s')
    >>> str(sandbox_dir_for_tests({"MODELDEPLOY_SANDBOX_DIR": "/c/sandbox"}, d))
    '/c/sandbox-tests'
    >>> str(sandbox_dir_for_tests({"MODELDEPLOY_TEST_SANDBOX_DIR": "/t", "MODELDEPLOY_SANDBOX_DIR": "/tmp/s"}, d))
    '/t'
    """
    if environ.get("MODELDEPLOY_TEST_SANDBOX_DIR"):
        return Path(environ["MODELDEPLOY_TEST_SANDBOX_DIR"]).expanduser()
    chosen = environ.get("MODELDEPLOY_SANDBOX_DIR")
    if chosen and Path(chosen).expanduser().resolve() != demo_default.resolve():
        return Path(chosen).expanduser()
    return demo_default.with_name(demo_default.name + "-tests")


def wait_for(predicate: Callable[[], object], timeout: float = 60, interval: float = 0.5, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - the API may be briefly unavailable; keep polling
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def refuse_foreign_operators(state_dir: Path, others: list) -> None:
    """Stop the session (a usage error, exit code 4) when operators the tests did not start reconcile the
    sandbox the tests would use."""
    if others:
        pytest.exit(f"refusing to run the integration tests: the sandbox in {state_dir} is reconciled by an "
                    f"operator the tests did not start: {'; '.join(o.describe() for o in others)}. Stop it "
                    "(e.g. `make down` for the demo's) or give the tests their own folder with "
                    "MODELDEPLOY_TEST_SANDBOX_DIR", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def sandbox():
    from modeldeploy.sandbox import binaries
    from modeldeploy.sandbox.cluster import Sandbox
    from modeldeploy.sandbox.operators import foreign_operators

    box = Sandbox(sandbox_dir_for_tests(os.environ, binaries.cache_dir() / "sandbox"))
    started_here = not box.is_up()
    if started_here:
        box.up()
    else:
        refuse_foreign_operators(box.state_dir, foreign_operators(box.kubeconfig_path))
    yield box
    if started_here and not os.environ.get("MODELDEPLOY_KEEP_SANDBOX"):
        box.down()


@pytest.fixture(scope="session")
def kubeconfig(sandbox) -> str:
    return str(sandbox.kubeconfig_path)


@pytest.fixture(scope="session")
def kubectl(kubeconfig):
    from modeldeploy.sandbox.tools import ensure_kubectl

    binary = str(ensure_kubectl())

    def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([binary, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True,
                              check=check, input=input, timeout=120)

    return run


@pytest.fixture(scope="session")
def api(kubeconfig):
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    return api_client


@pytest.fixture(scope="session")
def crd_installed(kubeconfig):
    from modeldeploy.sandbox.crd import install_crd

    install_crd(kubeconfig)
    return True


class OperatorProcess:
    """The operator as a subprocess; ``restart()`` kills it hard, as a node failure would."""

    def __init__(self, kubeconfig: str, log_path: Path, extra_env: dict[str, str] | None = None):
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.extra_args: list[str] = []
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONPATH": str(ROOT / "operator"),
               "MODELDEPLOY_PROGRESS_DEADLINE_SECONDS": "30", **self.extra_env}
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator", "--verbose",
                                      *self.extra_args],
                                     env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop(signal.SIGKILL)
        self.start()

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


@pytest.fixture(scope="session")
def operator(sandbox, kubeconfig, crd_installed, tmp_path_factory):
    env = {"MODELDEPLOY_PROMETHEUS_URL": sandbox.prometheus_url} if sandbox.prometheus_url else {}
    if sandbox.operator_metrics_address:  # where the sandbox's Prometheus scrapes the operator (alerts)
        env["MODELDEPLOY_METRICS_ADDRESS"] = sandbox.operator_metrics_address
    proc = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log", extra_env=env)
    proc.extra_args = ["--no-leader-election"]  # the session's only cluster-wide operator
    proc.start()
    yield proc
    proc.stop()
    print("\n--- operator log tail ---\n" + proc.log_tail())


@pytest.fixture
def namespace(api):
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory):
    from modeldeploy.models.digits import build

    out = tmp_path_factory.mktemp("digits")
    report = build(out)
    return out, report


@pytest.fixture(scope="session")
def runner_node(api, sandbox):
    from kubernetes import client

    node = client.CoreV1Api(api).read_node("local-0")
    assert any(cnd.type == "Ready" and cnd.status == "True" for cnd in node.status.conditions), \
        "the sandbox's pod runner (node local-0) is not Ready: is nvidia-pytriton installed (pip install '.[sandbox]')?"
    return node.metadata.name


def need_pod_network(sandbox) -> dict:
    """The sandbox's pod network, or skip with the reason it has none; under CI=true, fail instead (CI on these
    machines runs as root: the network must be there)."""
    net = sandbox.network() or {}
    if net.get("mode") == "pod-ips":
        return net
    reason = f"the sandbox has no pod network ({net.get('reason') or 'it was started before pod networks'})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI=true network tests must run, not skip")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pod_network(sandbox) -> dict:
    return need_pod_network(sandbox)


@pytest.fixture(scope="session")
def gateway_url(sandbox, pod_network) -> str:
    """The sandbox gateway's URL (``http://<range>.1``)."""
    url = sandbox.gateway_url
    if not url:
        reason = f"the sandbox runs no gateway (is haproxy installed? see {sandbox.log_path('gateway')})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


def load_example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())
