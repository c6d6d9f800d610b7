"""Install this checkout's CRD into a cluster and wait until the API server serves it.

Shared by the demo, the integration tests and the benchmarks. Server-side apply with
--force-conflicts, so a copy applied earlier (by kubectl or Helm) is replaced by this one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from modeldeploy.sandbox.tools import ensure_kubectl

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "crds" / "modeldeploy.io_modeldeployments.yaml"


def install_crd(kubeconfig: Path | str, timeout_seconds: int = 60) -> None:
    kubectl = str(ensure_kubectl())
    for args in (["apply", "--server-side", "--force-conflicts", "-f", str(CRD)],
                 ["wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.io",
                  f"--timeout={timeout_seconds}s"]):
        out = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:1])} of the ModelDeployment CRD failed: {out.stderr.strip()}")
