"""The integration tests' sandbox is their own, and they refuse to share it with an operator they did not start."""

import doctest
import os
import subprocess
import sys
import time
from pathlib import Path

from modeldeploy.sandbox import operators
from tests.integration import conftest as integration


def test_worked_examples():
    assert doctest.testmod(operators).failed == 0
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(integration.sandbox_dir_for_tests, globs=vars(integration)):
        runner.run(test)
    assert runner.tries >= 4 and runner.failures == 0


def test_the_tests_never_use_the_demos_folder(tmp_path):
    demo = tmp_path / "cache" / "sandbox"
    for env in ({}, {"MODELDEPLOY_SANDBOX_DIR": str(demo)}, {"MODELDEPLOY_SANDBOX_DIR": str(demo) + "/"},
                {"MODELDEPLOY_SANDBOX_DIR": str(tmp_path / "mine")}, {"MODELDEPLOY_TEST_SANDBOX_DIR": str(tmp_path / "t")}):
        assert integration.sandbox_dir_for_tests(env, demo).resolve() != demo.resolve(), env


def test_a_running_operator_is_found_by_its_kubeconfig(tmp_path):
    """A real process that looks like `python -m modeldeploy operator` to /proc (it only sleeps)."""
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text("{}")
    other = tmp_path / "other.yaml"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "modeldeploy", "operator"],
                          env={**os.environ, "KUBECONFIG": str(kubeconfig)}) as mine, \
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "modeldeploy", "operator"],
                             env={**os.environ, "KUBECONFIG": str(other)}) as theirs:
        try:
            deadline = time.monotonic() + 10
            found = []
            while time.monotonic() < deadline and not found:  # until the child has exec'd python
                found = operators.foreign_operators(kubeconfig)
                time.sleep(0.05)
            assert [p.pid for p in found] == [mine.pid]
            assert f"pid {mine.pid}" in found[0].describe() and str(kubeconfig) in found[0].describe()
            assert theirs.pid not in [p.pid for p in operators.foreign_operators(kubeconfig)]
        finally:
            mine.kill()
            theirs.kill()
    assert operators.foreign_operators(kubeconfig) == []


def test_the_session_stops_with_a_usage_error_naming_the_other_operator(tmp_path):
    import pytest

    other = operators.OperatorProcess(4242, ("python", "-m", "modeldeploy", "operator"), str(tmp_path / "k.yaml"))
    integration.refuse_foreign_operators(tmp_path, [])  # nobody else: the session goes on
    with pytest.raises(pytest.exit.Exception) as stop:
        integration.refuse_foreign_operators(tmp_path, [other])
    assert stop.value.returncode == pytest.ExitCode.USAGE_ERROR
    assert "pid 4242" in stop.value.msg and str(tmp_path) in stop.value.msg
