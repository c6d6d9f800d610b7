"""The Triton the runner can execute: ``tritonserver`` from PyPI's ``nvidia-pytriton`` wheel, on the CPU.

Three differences from NVIDIA's container, each handled here and nowhere else:

1. The wheel's python backend has no ``triton_python_backend_stub`` in ``backends/python/``; the stubs
   are per Python version under ``python_backend_stubs/3.X/``. Rather than writing into
   site-packages, :func:`prepare_backend_dir` builds a backend folder of symlinks (the backend library,
   its utils module, and the stub of the running Python) that ``--backend-directory`` points at.
2. The wheel has only the python backend, and the sandbox has no GPU. :func:`adapt_config_pbtxt`
   rewrites a model's ``config.pbtxt`` as the runner materialises it: an ONNX model
   (``backend: "onnxruntime"`` or ``platform: "onnxruntime_onnx"``) becomes ``backend: "python"`` served
   by ``onnx_python_model.py``, and ``KIND_GPU`` instance groups become ``KIND_CPU``.
   :func:`shim_files` says where that ``model.py`` goes.
3. Addresses: :func:`triton_argv` points ``tritonserver`` at the wheel's binary and the backend folder, and
   binds it to the pod's IP (``--http/grpc/metrics-address``) on its own container ports. In a container,
   Triton's default 0.0.0.0 means "this pod's addresses"; on the host it would mean every address of every
   pod. (In the fallback without a pod network the ports are mapped to free loopback ports instead.)

All functions but :func:`prepare_backend_dir` and :func:`find_wheel` are pure.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Mapping, Sequence

SHIM_MODEL = Path(__file__).with_name("onnx_python_model.py")

#: Triton's port flags and their defaults (what tritonserver binds when the flag is absent).
PORT_FLAGS = {"--http-port": 8000, "--grpc-port": 8001, "--metrics-port": 8002}
ADDRESS_FLAGS = ("--http-address", "--grpc-address", "--metrics-address")
#: Flags the runner decides, whatever the pod says.
_RUNNER_FLAGS = (*PORT_FLAGS, *ADDRESS_FLAGS, "--backend-directory")


class TritonNotFound(RuntimeError):
    """No usable tritonserver (the nvidia-pytriton wheel is not installed, or lacks a stub)."""


def find_wheel(python_prefix: str | None = None) -> Path:
    """The wheel's ``pytriton/tritonserver`` folder, found without importing pytriton (its import
    pulls in much more than we need). ``python_prefix``: a venv; default the running one."""
    prefix = Path(python_prefix or sys.prefix)
    for site in sorted(prefix.glob("lib/python3*/site-packages")):
        root = site / "pytriton" / "tritonserver"
        if (root / "bin" / "tritonserver").is_file():
            return root
    raise TritonNotFound(f"no pytriton/tritonserver/bin/tritonserver under {prefix}: "
                         "pip install nvidia-pytriton into that environment")


def prepare_backend_dir(wheel_root: Path, dest: Path, python_version: str | None = None) -> Path:
    """Create ``dest/python/`` holding symlinks to the wheel's python backend plus the stub for
    ``python_version`` (default: the running interpreter's ``3.X``). Idempotent. Returns ``dest``."""
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = wheel_root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonNotFound(f"{stub} missing: the wheel has no python backend stub for Python {version}")
    backend_src = wheel_root / "backends" / "python"
    links = {p.name: p for p in backend_src.iterdir() if p.is_file()}
    links["triton_python_backend_stub"] = stub
    out = dest / "python"
    out.mkdir(parents=True, exist_ok=True)
    for name, target in links.items():
        link = out / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target)
    return dest


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """Value of ``--flag=value`` or ``--flag value`` in ``args`` (the last one wins, as in Triton)."""
    value = None
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
        elif arg == flag and i + 1 < len(args):
            value = args[i + 1]
    return value


def triton_ports(args: Sequence[str]) -> list[int]:
    """The container ports this tritonserver command line binds (flags or Triton's defaults).

    >>> triton_ports(["tritonserver", "--http-port=9000"])
    [9000, 8001, 8002]
    """
    return [int(_flag_value(args, flag) or default) for flag, default in PORT_FLAGS.items()]


def _without_flags(args: Sequence[str], flags: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in flags:
            skip = True
            continue
        if any(arg.startswith(f + "=") for f in flags):
            continue
        out.append(arg)
    return out


def triton_argv(args: Sequence[str], binary: Path, backend_dir: Path, ports: Mapping[int, int],
                address: str = "127.0.0.1") -> list[str]:
    """The local command line for a Triton container's ``args`` (``tritonserver ...``): the wheel's
    binary, our backend folder, the pod's ``address``, and each port flag set to its host port (the container
    port itself when the pod has its own IP).

    >>> triton_argv(["tritonserver", "--model-repository=/m", "--http-port=8000"], Path("/w/tritonserver"),
    ...             Path("/b"), {8000: 8000, 8001: 8001, 8002: 8002}, "10.244.3.2")  # doctest: +NORMALIZE_WHITESPACE
    ['/w/tritonserver', '--model-repository=/m', '--backend-directory=/b',
     '--http-address=10.244.3.2', '--grpc-address=10.244.3.2', '--metrics-address=10.244.3.2',
     '--http-port=8000', '--grpc-port=8001', '--metrics-port=8002']
    >>> triton_argv(["tritonserver"], Path("/w/tritonserver"), Path("/b"),
    ...             {8000: 41000, 8001: 41001, 8002: 41002})[-3:]   # fallback: loopback, mapped ports
    ['--http-port=41000', '--grpc-port=41001', '--metrics-port=41002']
    """
    wanted = triton_ports(args)
    rest = _without_flags(list(args[1:]), _RUNNER_FLAGS)
    flags = [f"--backend-directory={backend_dir}"] + [f"{f}={address}" for f in ADDRESS_FLAGS]
    flags += [f"{flag}={ports[port]}" for flag, port in zip(PORT_FLAGS, wanted)]
    return [str(binary), *rest, *flags]


_BACKEND = re.compile(r'^([ \t]*)(backend|platform)[ \t]*:[ \t]*"([^"]*)"[ \t]*$', re.MULTILINE)
_ONNX = {("backend", "onnxruntime"), ("platform", "onnxruntime_onnx")}


def adapt_config_pbtxt(text: str) -> str:
    """``config.pbtxt`` as the CPU-only, python-backend-only Triton can load it (see the module doc).

    >>> print(adapt_config_pbtxt('name: "d"\\nbackend: "onnxruntime"\\ninstance_group [ { kind: KIND_GPU } ]\\n'))
    name: "d"
    backend: "python"
    instance_group [ { kind: KIND_CPU } ]
    <BLANKLINE>
    """
    def backend(m: re.Match[str]) -> str:
        if (m.group(2), m.group(3)) in _ONNX:
            return f'{m.group(1)}backend: "python"'
        return m.group(0)

    text = _BACKEND.sub(backend, text)
    return re.sub(r"\bKIND_GPU\b", "KIND_CPU", text)


def is_onnx_config(text: str) -> bool:
    """True when the (original) config names ONNX Runtime, i.e. the runner must add the shim."""
    return any((m.group(2), m.group(3)) in _ONNX for m in _BACKEND.finditer(text))


def shim_files(model_dir_listing: Mapping[str, Sequence[str]]) -> list[str]:
    """Version folders (relative to the model folder) that hold ``model.onnx`` but no ``model.py``:
    where the runner copies the shim. ``model_dir_listing``: version folder -> its file names.

    >>> shim_files({"1": ["model.onnx"], "2": ["model.onnx", "model.py"], "3": []})
    ['1/model.py']
    """
    return [f"{version}/model.py" for version, files in sorted(model_dir_listing.items())
            if "model.onnx" in files and "model.py" not in files]
