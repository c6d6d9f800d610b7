"""The `sandbox` subcommand wiring: actions, defaults, exit codes."""

import argparse

import pytest

from modeldeploy.sandbox import commands


def parse(*argv):
    parser = argparse.ArgumentParser(prog="modeldeploy")
    sub = parser.add_subparsers(dest="command")
    commands.register(sub)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("action, func", [
    ("up", commands.cmd_up), ("down", commands.cmd_down),
    ("status", commands.cmd_status), ("env", commands.cmd_env),
])
def test_actions_dispatch(action, func):
    args = parse("sandbox", action)
    assert args.command == "sandbox" and args.func is func


def test_action_required():
    with pytest.raises(SystemExit):
        parse("sandbox")


def test_state_dir_and_timeout():
    args = parse("sandbox", "--state-dir", "/tmp/x", "up", "--timeout", "30")
    assert args.state_dir == "/tmp/x" and args.timeout == 30.0


def test_env_without_sandbox_fails(tmp_path, capsys):
    assert commands.cmd_env(parse("sandbox", "--state-dir", str(tmp_path), "env")) == 1
    assert "sandbox up" in capsys.readouterr().err


def test_status_down_exit_code(tmp_path, capsys):
    assert commands.cmd_status(parse("sandbox", "--state-dir", str(tmp_path), "status")) == 3
    assert "sandbox: down" in capsys.readouterr().out


def test_down_when_nothing_exists_is_ok(tmp_path):
    assert commands.cmd_down(parse("sandbox", "--state-dir", str(tmp_path), "down")) == 0


def test_up_failure_is_reported(monkeypatch, capsys):
    from modeldeploy.sandbox.cluster import Sandbox, SandboxError

    def boom(self, timeout):
        raise SandboxError("etcd exited", component="etcd")

    monkeypatch.setattr(Sandbox, "up", boom)
    assert commands.cmd_up(parse("sandbox", "up")) == 1
    assert "sandbox up failed (etcd): etcd exited" in capsys.readouterr().err
