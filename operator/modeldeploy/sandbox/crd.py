"""Install this checkout's CRD into a cluster and wait until the API server serves it.

Shared by the demo, the integration tests and the benchmarks. Server-side apply with
--force-conflicts, so a copy applied earlier (by kubectl or Helm) is replaced by this one.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from modeldeploy.sandbox.tools import ensure_kubectl

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "crds" / "modeldeploy.io_modeldeployments.yaml"


def install_crd(kubeconfig: Path | str, timeout_seconds: int = 60) -> None:
    kubectl = str(ensure_kubectl())
    deadline = time.monotonic() + timeout_seconds
    apply = ["apply", "--server-side", "--force-conflicts", "-f", str(CRD)]
    wait = ["wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.io", "--timeout=5s"]
    out = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), *apply], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl apply of the ModelDeployment CRD failed: {out.stderr.strip()}")
    while True:
        # `kubectl wait` fails at once (instead of waiting) while a just-created CRD has no status yet.
        out = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), *wait], capture_output=True, text=True)
        if out.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"kubectl wait of the ModelDeployment CRD failed: {out.stderr.strip()}")
        time.sleep(0.5)
