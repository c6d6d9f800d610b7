"""Gateway API's standard-channel CRDs for the sandbox, and the sandbox's GatewayClass and Gateway.

Where the CRDs come from: the Go module ``sigs.k8s.io/gateway-api`` (v1.6.3; v1.7 needs a newer Go than
these machines have) carries them under ``config/crd/standard/``, listed in ``config/crd/kustomization.yaml``.
The Go module proxy serves it, so ``go mod download`` fetches it once (the same route the control-plane
build takes); the files are copied into ``$MODELDEPLOY_CACHE/gateway-api/<version>/`` and reused after.
They are applied server-side (the HTTPRoute CRD is larger than client-side apply's annotation allows),
in the kustomization's order, which ends with the ``safe-upgrades`` ValidatingAdmissionPolicy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from modeldeploy.sandbox.binaries import cache_dir

MODULE = "sigs.k8s.io/gateway-api"
VERSION = "v1.6.3"
CLASS = "modeldeploy-sandbox"
NAMESPACE = "gateway-system"
GATEWAY = "sandbox"
LISTENER_PORT = 80
#: The CRDs the controller reads; ``up`` waits until they are Established.
NEEDED = ("gatewayclasses", "gateways", "httproutes", "referencegrants")


class CrdError(RuntimeError):
    pass


def crd_dir(version: str = VERSION) -> Path:
    return cache_dir() / "gateway-api" / version


def ordered_files(kustomization: dict[str, Any]) -> list[str]:
    """The standard-channel files the kustomization lists, in its order.

    >>> ordered_files({"resources": ["standard/a.yaml", "experimental/b.yaml", "standard/c.yaml"]})
    ['a.yaml', 'c.yaml']
    """
    return [r.split("/", 1)[1] for r in kustomization.get("resources") or [] if r.startswith("standard/")]


def ensure_crds(version: str = VERSION) -> list[Path]:
    """The CRD files (cached, else downloaded once through the Go module proxy), in apply order."""
    folder = crd_dir(version)
    index = folder / "files.json"
    if index.is_file():
        files = [folder / name for name in json.loads(index.read_text())]
        if all(f.is_file() for f in files):
            return files
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None)
    if go is None:
        raise CrdError(f"the Gateway API CRDs are not cached in {folder} and `go` is not installed to fetch "
                       f"{MODULE}@{version} through the Go module proxy (the control-plane build needs Go too)")
    with tempfile.TemporaryDirectory(prefix="modeldeploy-gwapi-") as tmp:
        env = {**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"}
        proc = subprocess.run([go, "mod", "download", "-json", f"{MODULE}@{version}"], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise CrdError(f"go mod download {MODULE}@{version} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
        source = Path(json.loads(proc.stdout)["Dir"]) / "config" / "crd"
    names = ordered_files(yaml.safe_load((source / "kustomization.yaml").read_text()))
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name in names:
        shutil.copyfile(source / "standard" / name, partial / name)
    (partial / "files.json").write_text(json.dumps(names))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return [folder / name for name in names]


def install(kubectl: Path, kubeconfig: Path, files: list[Path], timeout: float = 60.0) -> None:
    """Apply the CRD files server-side and wait until the ones the controller reads are Established."""
    for path in files:
        proc = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "apply", "--server-side",
                               "--force-conflicts", "--field-manager=modeldeploy-sandbox", "-f", str(path)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise CrdError(f"kubectl apply --server-side -f {path} failed: {proc.stderr.strip()[-2000:]}")
    names = [f"{plural}.gateway.networking.k8s.io" for plural in NEEDED]
    proc = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "wait", "--for=condition=Established",
                           f"--timeout={int(timeout)}s", *(f"crd/{n}" for n in names)],
                          capture_output=True, text=True, timeout=timeout + 30)
    if proc.returncode != 0:
        raise CrdError(f"Gateway API CRDs not Established: {proc.stderr.strip()[-2000:]}")


def gateway_objects(controller_name: str) -> list[dict[str, Any]]:
    """The sandbox's GatewayClass, the Gateway's namespace, and Gateway ``gateway-system/sandbox``: one HTTP
    listener on port 80 that takes HTTPRoutes from every namespace."""
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": CLASS},
         "spec": {"controllerName": controller_name,
                  "description": "modeldeploy sandbox: dev-only gateway (HAProxy)"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": GATEWAY, "namespace": NAMESPACE},
         "spec": {"gatewayClassName": CLASS,
                  "listeners": [{"name": "http", "protocol": "HTTP", "port": LISTENER_PORT,
                                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]


def wait_programmed(api: Any, timeout: float) -> dict[str, Any]:
    """The Gateway once its controller reports it Programmed."""
    path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/gateways/{GATEWAY}"
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = api.get(path)
        conds = {c["type"]: c for c in (last.get("status") or {}).get("conditions") or []}
        if conds.get("Programmed", {}).get("status") == "True":
            return last
        time.sleep(0.2)
    raise CrdError(f"Gateway {NAMESPACE}/{GATEWAY} not Programmed within {timeout:.0f}s; "
                   f"status: {json.dumps((last or {}).get('status'))[:1000]}")
