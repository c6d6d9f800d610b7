"""Dependencies point one way: pure layers import no I/O layer, and only handlers import Kopf."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "operator" / "modeldeploy"
PURE = ("api", "render", "policy")
IO_MODULES = ("kopf", "kubernetes", "requests", "urllib3", "aiohttp", "tritonclient", "prometheus_api_client",
              "modeldeploy.adapters", "modeldeploy.reconcile", "modeldeploy.handlers", "modeldeploy.sandbox",
              "subprocess", "socket")


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def violations(files, forbidden):
    return [(f.relative_to(PKG).as_posix(), name) for f in files for name in sorted(imports_of(f))
            if any(name == m or name.startswith(m + ".") for m in forbidden)]


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_do_no_io(layer):
    assert violations((PKG / layer).rglob("*.py"), IO_MODULES) == []


def test_reconcile_has_no_kopf():
    assert violations((PKG / "reconcile").rglob("*.py"), ("kopf", "modeldeploy.handlers")) == []


def test_adapters_do_not_import_upward():
    assert violations((PKG / "adapters").rglob("*.py"),
                      ("kopf", "modeldeploy.reconcile", "modeldeploy.handlers")) == []
