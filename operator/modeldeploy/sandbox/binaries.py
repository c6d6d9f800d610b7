"""Locate, and build once if needed, the control-plane binaries the sandbox runs.

Why a build: without a container runtime there are no images to pull, and the machines we use reach
the Go module proxy but not the Kubernetes release buckets. `build-control-plane.sh` compiles etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kwok and kwokctl from upstream sources into
`$MODELDEPLOY_CACHE/bin/k8s-<version>/` and marks the folder complete with `.complete`. The first
build takes tens of minutes on two cores; every later call returns at once.

This module only decides *whether* to run the script and streams its output; the build recipe lives
in the script so it can be run by hand too.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import TextIO

K8S_VERSION = "v1.35.4"
"""Kubernetes version the sandbox runs (the script's default; override with env K8S_VERSION)."""

BUILD_SCRIPT = Path(__file__).with_name("build-control-plane.sh")

COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kwokctl",
)


class BinariesError(RuntimeError):
    """The control-plane binaries are missing and could not be built."""


def cache_dir() -> Path:
    """`$MODELDEPLOY_CACHE`, default `~/.cache/modeldeploy` (same rule as the build script)."""
    value = os.environ.get("MODELDEPLOY_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "modeldeploy"


def k8s_version() -> str:
    return os.environ.get("K8S_VERSION") or K8S_VERSION


def control_plane_dir() -> Path:
    """Where the script puts the binaries: `$MODELDEPLOY_CACHE/bin/k8s-<version>`."""
    return cache_dir() / "bin" / f"k8s-{k8s_version()}"


def is_complete(bin_dir: Path | None = None) -> bool:
    bin_dir = bin_dir or control_plane_dir()
    return (bin_dir / ".complete").is_file() and all(
        (bin_dir / name).is_file() for name in COMPONENTS
    )


def ensure_control_plane(out: TextIO | None = None) -> Path:
    """Return the folder holding the control-plane binaries, building them first if needed.

    The build's progress lines are copied to `out` (default stderr) as they come. A file lock under
    the cache serialises concurrent callers: the second one waits and then finds `.complete`.
    Raises BinariesError with the tail of the build output when the script fails.
    """
    out = out or sys.stderr
    bin_dir = control_plane_dir()
    if is_complete(bin_dir):
        return bin_dir

    lock_path = cache_dir() / "build" / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another control-plane build (lock {lock_path})", file=out, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(bin_dir):
            return bin_dir
        print(
            f"building the control plane into {bin_dir} (first time only; tens of minutes)",
            file=out,
            flush=True,
        )
        _run_build(out)

    if not is_complete(bin_dir):
        missing = [name for name in COMPONENTS if not (bin_dir / name).is_file()]
        raise BinariesError(
            f"build script finished but {bin_dir} is incomplete (missing: {', '.join(missing) or '.complete'})"
        )
    return bin_dir


def _run_build(out: TextIO) -> None:
    env = dict(os.environ, MODELDEPLOY_CACHE=str(cache_dir()), K8S_VERSION=k8s_version())
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(
        ["bash", str(BUILD_SCRIPT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line)
            out.write(line)
            out.flush()
        rc = proc.wait()
    if rc != 0:
        raise BinariesError(
            f"control-plane build failed (exit {rc}, script {BUILD_SCRIPT}); last output:\n"
            + "".join(tail)
        )
