"""What GitOps tools conclude from a ModelDeployment's status, run with their own rules on recorded objects.

- kstatus (what Flux and kpt use for health): the real library, sigs.k8s.io/cli-utils v0.37.2, compiled from
  tests/fixtures/kstatus/ into ``$MODELDEPLOY_CACHE/kstatus/<hash of its sources>/`` on first use (needs Go
  and the Go module proxy once, as the control plane build does);
- Argo CD: the Lua health check of docs/gitops.md, run by Lua 5.1 (Argo CD's gopher-lua implements 5.1)
  through ``lupa``.

The objects are ModelDeployments recorded from the sandbox with the real API server and operator, one per
phase (tests/fixtures/modeldeployments/, see record.py there).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KSTATUS_SRC = ROOT / "tests" / "fixtures" / "kstatus"
RECORDED = ROOT / "tests" / "fixtures" / "modeldeployments"
LUA = ROOT / "docs" / "gitops" / "argocd-health.lua"
DOC = ROOT / "docs" / "gitops.md"
ARGO_KEY = "resource.customizations.health.modeldeploy.io_ModelDeployment"

#: case -> (kstatus status, Argo CD health status); docs/gitops.md has the same table.
EXPECTED = {
    "unreconciled": ("InProgress", "Progressing"),
    "stale": ("InProgress", "Progressing"),
    "progressing": ("InProgress", "Progressing"),
    "ready": ("Current", "Healthy"),
    "degraded": ("InProgress", "Degraded"),
    "failed": ("Failed", "Degraded"),
}


def recorded(case: str) -> dict:
    return json.loads((RECORDED / f"{case}.json").read_text())


def kstatus_binary() -> Path:
    """The kstatus program, built once per version of its sources (atomically: tests may build it at once)."""
    sources = sorted(p for p in KSTATUS_SRC.iterdir() if p.suffix in (".go", ".mod", ".sum"))
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sources)).hexdigest()[:12]
    cache = Path(os.environ.get("MODELDEPLOY_CACHE") or Path.home() / ".cache" / "modeldeploy")
    target = cache / "kstatus" / digest / "kstatus"
    if target.is_file():
        return target
    go = shutil.which("go")
    assert go, "Go is needed to build kstatus (sigs.k8s.io/cli-utils), as for the control plane: see README"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / "kstatus"
        proc = subprocess.run([go, "build", "-o", str(built), "."], cwd=KSTATUS_SRC, capture_output=True, text=True,
                              timeout=900, env={**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"})
        assert proc.returncode == 0, f"go build of {KSTATUS_SRC} failed:\n{proc.stderr[-3000:]}"
        os.replace(built, target)
    return target


def kstatus(objects: list[dict]) -> list[dict]:
    proc = subprocess.run([str(kstatus_binary())], input=json.dumps(objects), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def argocd_health(obj: dict) -> tuple[str, str]:
    from lupa import lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(LUA.read_text())
    return hs["status"], hs["message"]


def test_kstatus_reads_each_recorded_phase_as_documented():
    cases = sorted(EXPECTED)
    results = kstatus([recorded(case) for case in cases])
    assert {case: r["status"] for case, r in zip(cases, results)} == {case: EXPECTED[case][0] for case in cases}
    by_case = dict(zip(cases, results))
    assert by_case["unreconciled"]["message"] == "ModelDeployment generation is 1, but latest observed generation is -1"
    assert by_case["stale"]["message"] == "ModelDeployment generation is 2, but latest observed generation is 1"
    assert "exceed spec.serving.maxBatchSize" in by_case["failed"]["message"]  # the Stalled message


def test_without_the_status_default_kstatus_would_call_an_unreconciled_object_current():
    """Why the CRD defaults status.observedGeneration to -1: an object with no status at all (as stored before
    the default existed, or by a client that bypasses defaulting) reads Current: healthy, before any work."""
    bare = recorded("unreconciled")
    del bare["status"]
    assert kstatus([bare])[0]["status"] == "Current"
    assert argocd_health(bare)[0] == "Progressing"  # the Lua check does not rely on the default


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_argocd_health_check_reads_each_recorded_phase_as_documented(case):
    obj = recorded(case)
    status, message = argocd_health(obj)
    assert status == EXPECTED[case][1]
    ready = next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)
    if case in ("unreconciled", "stale"):
        assert message == f"Waiting for the modeldeploy operator to reconcile generation {obj['metadata']['generation']}"
    else:
        assert ready is not None and message == ready["message"]  # the operator's own words, e.g. the scheduler's


def test_the_documented_argocd_snippets_carry_the_tested_script():
    """docs/gitops.md shows the check in argocd-cm and as argo-cd Helm values: both must be this very script,
    and valid YAML."""
    script = LUA.read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)]
    config_map = next(b for b in blocks if isinstance(b, dict) and b.get("kind") == "ConfigMap")
    assert config_map["metadata"]["name"] == "argocd-cm" and config_map["data"][ARGO_KEY] == script
    values = next(b for b in blocks if isinstance(b, dict) and "configs" in b)
    assert values["configs"]["cm"][ARGO_KEY] == script


def test_the_documented_tables_match_what_the_tools_say():
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[1:]) for line in DOC.read_text().splitlines()
            if line.startswith("|") and ("InProgress" in line or "Current" in line or "Failed |" in line)}
    assert {tuple(v) for v in EXPECTED.values()} == rows
