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


ESTABLISHED = '{.status.conditions[?(@.type=="Established")].status}'


def install_crd(kubeconfig: Path | str, timeout_seconds: int = 60) -> None:
    """Apply the CRD, then wait until the API server says it is Established.

    Not ``kubectl wait --for=condition=Established``: for a CRD created a moment ago, whose status has no
    conditions yet (``conditions: null``), kubectl 1.35 fails at once ("accessor error") instead of waiting.
    """
    kubectl = [str(ensure_kubectl()), "--kubeconfig", str(kubeconfig)]
    out = subprocess.run([*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(CRD)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl apply of the ModelDeployment CRD failed: {out.stderr.strip()}")
    deadline = time.monotonic() + timeout_seconds
    while True:
        out = subprocess.run([*kubectl, "get", "crd/modeldeployments.modeldeploy.io", "-o", f"jsonpath={ESTABLISHED}"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() == "True":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the ModelDeployment CRD was not Established within {timeout_seconds}s: "
                               f"{(out.stderr or out.stdout).strip() or 'no Established condition'}")
        time.sleep(0.2)
