"""Dependencies point one way: the import contracts in .importlinter hold (import-linter, as kopf uses).

The contracts: handlers -> reconcile -> adapters -> (policy, render) -> api as layers; the pure layers
(api, render, policy) import nothing that does I/O (Kubernetes, Prometheus and Triton clients, urllib,
http, socket, subprocess, threading), directly or through another module; only the handlers import Kopf.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the package under ``root/operator`` with ``root/.importlinter``."""
    binary = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(root / "operator")}
    return subprocess.run([binary, str(root / ".importlinter"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_the_contracts_catch_an_io_import_in_a_pure_layer(tmp_path):
    """The checker sees an I/O import a pure module would make through another module (the home-made
    AST walk it replaces missed urllib and http.client)."""
    pkg = tmp_path / "operator" / "modeldeploy"
    shutil.copytree(ROOT / "operator" / "modeldeploy", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "policy" / "leaky.py").write_text("import http.client\n")
    (tmp_path / ".importlinter").write_text((ROOT / ".importlinter").read_text())
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "modeldeploy.policy is not allowed to import http" in result.stdout
