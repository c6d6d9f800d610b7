"""The termination message: how a modeldeploy container (fetch, compress) tells Kubernetes why it failed.

The kubelet copies the file at ``terminationMessagePath`` (default /dev/termination-log) into the pod's
``state.terminated.message``, where the operator reads it (policy/pods.py) and puts it in the
ModelDeployment's status. One module, so every command writes it the same way, and redacts it the same
way: a message that quotes a URI never carries its password or presigned signature (api/redact.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from modeldeploy.api.redact import redact_text

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
TERMINATION_LOG_ENV = "MODELDEPLOY_TERMINATION_LOG"
MAX_TERMINATION_MESSAGE = 4096  # what the kubelet keeps


def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--termination-log PATH`` (env MODELDEPLOY_TERMINATION_LOG)."""
    parser.add_argument("--termination-log", default=os.environ.get(TERMINATION_LOG_ENV, DEFAULT_TERMINATION_LOG),
                        help=f"where the failure cause is written (env {TERMINATION_LOG_ENV}; default: %(default)s)")


def write_termination_log(path: str, message: str, prog: str = "modeldeploy") -> bool:
    """Write ``message``, URIs redacted and cut to what the kubelet keeps, to ``path``; False when that is
    not possible."""
    data = redact_text(message).encode()[:MAX_TERMINATION_MESSAGE].decode(errors="ignore")
    try:
        Path(path).write_text(data + "\n")
    except OSError as err:
        print(f"{prog}: cannot write termination log {path}: {err.strerror or err}", file=sys.stderr)
        return False
    return True
