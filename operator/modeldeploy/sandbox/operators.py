"""Which ``modeldeploy operator`` processes on this machine reconcile a given sandbox.

Why: two operators reconciling the same ModelDeployments (say the one ``make demo`` leaves running and
the one the integration tests start) apply the same children with the same field manager and force,
each undoing the other; tests then fail in ways that say nothing about the code. The test session uses
its own sandbox, and refuses to start next to an operator that already talks to it.

How: an operator is found by its command line (``python -m modeldeploy operator`` or the
``modeldeploy operator`` console script) and tied to a sandbox by the kubeconfig it uses
(``KUBECONFIG`` in its environment, or ``--kubeconfig``). Only processes of this machine can be seen;
an operator elsewhere (in a real cluster, say) is not the sandbox's concern. The parsing is pure and
tested; ``/proc`` is read by the one function at the bottom.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence


@dataclass(frozen=True)
class OperatorProcess:
    pid: int
    argv: tuple[str, ...]
    kubeconfig: str | None

    def describe(self) -> str:
        return f"pid {self.pid} ({' '.join(self.argv)}; KUBECONFIG={self.kubeconfig})"


def is_operator_command(argv: Sequence[str]) -> bool:
    """Is ``argv`` the command line of a modeldeploy operator?

    >>> is_operator_command(["/venv/bin/python", "-m", "modeldeploy", "operator", "--verbose"])
    True
    >>> is_operator_command(["/usr/local/bin/modeldeploy", "operator", "-n", "ns"])
    True
    >>> is_operator_command(["/venv/bin/python", "-m", "modeldeploy", "sandbox", "up"])
    False
    >>> is_operator_command(["/venv/bin/python", "-m", "modeldeploy.sandbox.podrunner", "operator"])
    False
    """
    argv = list(argv)
    for i, arg in enumerate(argv[:-1]):
        module = i > 0 and argv[i - 1] == "-m" and arg == "modeldeploy"
        script = i == 0 and Path(arg).name == "modeldeploy"
        if module or script:
            return argv[i + 1] == "operator"
    return False


def kubeconfig_of(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The kubeconfig a process uses: ``--kubeconfig`` on its command line, else its ``KUBECONFIG``.

    >>> kubeconfig_of(["modeldeploy", "operator"], {"KUBECONFIG": "/s/kubeconfig.yaml"})
    '/s/kubeconfig.yaml'
    >>> kubeconfig_of(["x", "--kubeconfig=/a"], {"KUBECONFIG": "/b"})
    '/a'
    >>> kubeconfig_of(["x", "--kubeconfig", "/a"], {}), kubeconfig_of(["x"], {})
    ('/a', None)
    """
    for i, arg in enumerate(argv):
        if arg.startswith("--kubeconfig="):
            return arg.split("=", 1)[1]
        if arg == "--kubeconfig" and i + 1 < len(argv):
            return argv[i + 1]
    return environ.get("KUBECONFIG") or None


def parse_environ(blob: bytes) -> dict[str, str]:
    """``/proc/<pid>/environ`` (NUL-separated ``KEY=value``) as a dict.

    >>> parse_environ(b"A=1\\x00KUBECONFIG=/k\\x00junk\\x00")
    {'A': '1', 'KUBECONFIG': '/k'}
    """
    env = {}
    for item in blob.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def operators_using(kubeconfig: Path, processes: Iterable[tuple[int, Sequence[str], Mapping[str, str]]],
                    ignore: Iterable[int] = ()) -> list[OperatorProcess]:
    """The operators among ``processes`` (pid, argv, environ) whose kubeconfig is ``kubeconfig``.

    >>> procs = [(10, ["python", "-m", "modeldeploy", "operator"], {"KUBECONFIG": "/sbx/kubeconfig.yaml"}),
    ...          (11, ["python", "-m", "modeldeploy", "operator"], {"KUBECONFIG": "/other/kubeconfig.yaml"}),
    ...          (12, ["python", "-m", "pytest"], {"KUBECONFIG": "/sbx/kubeconfig.yaml"})]
    >>> [p.pid for p in operators_using(Path("/sbx/kubeconfig.yaml"), procs)]
    [10]
    """
    target = os.path.realpath(kubeconfig)
    skip = set(ignore)
    found = []
    for pid, argv, environ in processes:
        if pid in skip or not is_operator_command(argv):
            continue
        config = kubeconfig_of(argv, environ)
        if config and os.path.realpath(config) == target:
            found.append(OperatorProcess(pid, tuple(argv), config))
    return found


def local_processes() -> list[tuple[int, list[str], dict[str, str]]]:
    """(pid, argv, environ) of every process of this machine we may read; others are skipped."""
    result = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            environ = parse_environ((entry / "environ").read_bytes())
        except OSError:  # gone, or not ours to read
            continue
        if argv:
            result.append((int(entry.name), argv, environ))
    return result


def foreign_operators(kubeconfig: Path) -> list[OperatorProcess]:
    """Operators on this machine, other than this process, that reconcile the cluster of ``kubeconfig``."""
    return operators_using(kubeconfig, local_processes(), ignore=(os.getpid(),))
