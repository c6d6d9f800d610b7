"""Fixtures for tests against the real sandbox control plane with the operator running.

The sandbox (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) is brought up once
per session if it is not already up, and left running when it was already up before the tests.
The operator runs as a subprocess (``python -m modeldeploy operator``), as a user would run it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(session, config, items):
    """test_helm.py first: it must be the only operator that reconciles its namespace, so it runs before
    any test starts the session-wide operator fixture (which watches every namespace)."""
    items.sort(key=lambda item: 0 if item.module.__name__.endswith("test_helm") else 1)


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


@pytest.fixture(scope="session")
def sandbox():
    from modeldeploy.sandbox.cluster import Sandbox

    box = Sandbox()
    started_here = not box.is_up()
    if started_here:
        box.up()
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


def load_example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())
