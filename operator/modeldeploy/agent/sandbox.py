"""The agent's one sandbox-only behaviour: the python-backend shim next to a freshly fetched ONNX model.

The sandbox's Triton (the nvidia-pytriton wheel's CPU build) has only the python backend, so the pod
runner serves an ONNX model through a ``model.py`` it copies into every version folder holding
``model.onnx`` when the Triton container starts (``sandbox/podrunner/runner.py``). A version the agent
fetches later needs the same file before Triton loads it. The pod runner tells every modeldeploy-image
container where that file is with :data:`SHIM_ENV`; on a real cluster the variable is unset and this
module does nothing.

Not imported from ``modeldeploy.sandbox`` (the agent ships in the operator image, the sandbox is for
development); the pod runner imports :data:`SHIM_ENV` from here instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Mapping

SHIM_ENV = "MODELDEPLOY_SANDBOX_ONNX_SHIM"
MODEL_FILE = "model.onnx"
SHIM_FILE = "model.py"


def add_shim(version_dir: Path, env: Mapping[str, str] | None = None) -> bool:
    """Copy the file named by ``$MODELDEPLOY_SANDBOX_ONNX_SHIM`` to ``version_dir/model.py`` when the
    variable is set, the folder holds ``model.onnx`` and no ``model.py``. Returns whether it copied."""
    shim = (os.environ if env is None else env).get(SHIM_ENV)
    if not shim or not (version_dir / MODEL_FILE).is_file() or (version_dir / SHIM_FILE).exists():
        return False
    shutil.copyfile(shim, version_dir / SHIM_FILE)
    return True
