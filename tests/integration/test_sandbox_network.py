"""A second sandbox beside the session's: its own pod range, a control plane that survives an API-server pause
(the supervisor restarts what exits), and a `down` that leaves no address on lo and frees its range.

It costs a second control plane (tens of seconds) and a 30 s pause, so it lives apart from the tests that use
the session's sandbox and does not touch it.
"""

from __future__ import annotations

import os
import signal
import ssl
import time
import urllib.request

import pytest

from modeldeploy.sandbox import podnet, supervisor
from modeldeploy.sandbox.cluster import Sandbox

from .conftest import need_pod_network, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def second(sandbox, tmp_path_factory):
    need_pod_network(sandbox)
    box = Sandbox(state_dir=tmp_path_factory.mktemp("second-sandbox"))
    box.up()
    yield box
    box.down(quiet=True)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, context=ssl._create_unverified_context(), timeout=3) as resp:  # noqa: S323
            return resp.status == 200
    except OSError:
        return False


def test_each_sandbox_takes_its_own_pod_range(sandbox, second):
    mine, other = sandbox.pod_range(), second.pod_range()
    assert mine is not None and other is not None
    assert not mine.network.overlaps(other.network), (mine, other)
    lo = podnet.Loopback().addresses()
    assert mine.gateway in lo and other.gateway in lo
    assert podnet.is_claimed(other) and podnet.is_claimed(mine)


def test_control_plane_comes_back_after_a_30s_api_server_pause(second):
    """kube-controller-manager and kube-scheduler exit when they lose their lease (renew deadline 10 s); the
    supervisor starts them again, as a kubelet restarts its static pods."""
    ports = second.status()["ports"]
    watched = ("kube-controller-manager", "kube-scheduler")
    before = {c: second.running_components()[c] for c in watched}
    apiserver = second.running_components()["kube-apiserver"]
    os.kill(apiserver, signal.SIGSTOP)
    try:
        time.sleep(30)          # the fault under test is the pause itself
    finally:
        os.kill(apiserver, signal.SIGCONT)
    resumed = time.monotonic()

    def back():
        now = second.running_components()
        return all(now[c] is not None and now[c] != before[c] for c in watched) and \
            healthy(f"https://127.0.0.1:{ports['controller_manager']}/healthz") and \
            healthy(f"https://127.0.0.1:{ports['scheduler']}/healthz")
    wait_for(back, 180, interval=1, what=f"{watched} restarted and healthy (log: {second.log_path('supervisor')})")
    print(f"\n{watched} restarted and healthy {time.monotonic() - resumed:.1f}s after the API server resumed")
    restarts = supervisor.restarts(second.workdir)
    assert all(restarts.get(c, 0) >= 1 for c in watched), restarts
    assert "started it again" in second.log_path("supervisor").read_text()

    # and the restarted ones work: a Deployment gets its pod created (controller-manager) and bound (scheduler)
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(second.kubeconfig_path))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "after-pause"}})
    apps.create_namespaced_deployment("after-pause", {
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"nodeSelector": {"modeldeploy.io/sandbox-pool": "cpu"},
                                       "containers": [{"name": "web", "image": "nginx"}]}}}})
    wait_for(lambda: [p for p in core.list_namespaced_pod("after-pause").items if p.spec.node_name], 60,
             what="a pod created and scheduled after the pause")


def test_down_leaves_no_address_behind_and_frees_the_range(second):
    pod_range = second.pod_range()
    second.down()
    assert [ip for ip in podnet.Loopback().addresses() if pod_range.contains(ip)] == []
    assert not podnet.is_claimed(pod_range)
