"""The control-plane supervisor: restart decisions with crash-loop back-off (pure, injected clock), and the loop
restarting a real process from the command line kwokctl recorded, as kwokctl would start it."""

import doctest
import io
import os
import signal
import time

import yaml

from modeldeploy.sandbox import supervisor as sup
from modeldeploy.sandbox.podrunner.lifecycle import BACKOFF_RESET_S


def test_docstring_examples():
    assert doctest.testmod(sup).failed == 0


def test_restarts_back_off_like_a_crash_looping_container():
    track, now, starts = sup.Track(started_at=0.0), 0.0, []
    for now in range(0, 80):                      # the component dies again right after every start
        track, go = sup.decide(track, alive=False, now=float(now))
        if go:
            starts.append(now)
    # each exit is noticed one look (1 s) after the start, then waits 0 s, 10 s, 20 s, 40 s
    assert starts == [0, 1 + 10, 12 + 20, 33 + 40]
    assert track.restarts == 4
    alive, go = sup.decide(track, alive=True, now=100.0)
    assert alive == track and not go


def test_a_long_run_resets_the_back_off():
    track = sup.Track(restarts=3, crashes=4, started_at=0.0)
    track, go = sup.decide(track, alive=False, now=BACKOFF_RESET_S + 5)
    assert go and track.crashes == 1


def test_components_come_from_kwokctls_configuration_only():
    docs = [{"kind": "Stage"}, {"kind": "KwokctlConfiguration", "components": [
        {"name": "kube-scheduler", "binary": "/b/s", "args": ["--a=1"], "workDir": "/w"},
        {"name": "etcd", "binary": "/b/e", "workDir": "/w"}, {"name": "no-binary"}]}]
    found = sup.components_from_config(docs, ["kube-scheduler", "etcd", "no-binary", "absent"])
    assert found == {"kube-scheduler": sup.Component("kube-scheduler", ("/b/s", "--a=1"), "/w"),
                     "etcd": sup.Component("etcd", ("/b/e",), "/w")}


def test_the_loop_restarts_a_dead_component_with_its_recorded_command(tmp_path):
    (tmp_path / "pids").mkdir()
    (tmp_path / "logs").mkdir()
    config = {"kind": "KwokctlConfiguration", "components": [
        {"name": "sleeper", "binary": "/bin/sh", "args": ["-c", "echo started; exec sleep 300"],
         "workDir": str(tmp_path)}]}
    (tmp_path / "kwok.yaml").write_text(yaml.safe_dump(config))
    clock = [1000.0]
    loop = sup.Supervisor(tmp_path, ["sleeper"], clock=lambda: clock[0], out=io.StringIO())
    try:
        assert loop.check_once() == ["sleeper"]            # no pid file: not running, started at once
        pid = int((tmp_path / "pids" / "sleeper.pid").read_text())
        assert sup._alive(pid) and loop.check_once() == []
        log = tmp_path / "logs" / "sleeper.log"
        deadline = time.monotonic() + 10
        while "started" not in log.read_text() and time.monotonic() < deadline:   # it ran before it dies
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while sup._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        clock[0] += 1
        assert loop.check_once() == []                     # second exit in a row: 10 s back-off
        clock[0] += 10
        assert loop.check_once() == ["sleeper"]
        new_pid = int((tmp_path / "pids" / "sleeper.pid").read_text())
        assert new_pid != pid and sup._alive(new_pid)
        assert sup.restarts(tmp_path) == {"sleeper": 2}
        deadline = time.monotonic() + 10
        while (tmp_path / "logs" / "sleeper.log").read_text().count("started") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "logs" / "sleeper.log").read_text().count("started") == 2   # the same log, appended
        assert "started it again" in loop.out.getvalue()
    finally:
        for child in loop._children:
            child.kill()
            child.wait()
