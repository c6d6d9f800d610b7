"""The benchmarks' own namespace in the sandbox: deleted with what an earlier run left in it, then made anew."""

from __future__ import annotations

import time

from kubernetes import client


def fresh_namespace(core: client.CoreV1Api, name: str, timeout: float = 300.0) -> None:
    """Delete namespace ``name`` if it exists, wait until it is gone (``timeout``), and create it empty."""
    try:
        core.delete_namespace(name)
    except client.ApiException as err:
        if err.status != 404:
            raise
    deadline = time.monotonic() + timeout
    while name in {n.metadata.name for n in core.list_namespace().items}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {name} was not deleted within {timeout:.0f} s")
        time.sleep(1)
    core.create_namespace({"metadata": {"name": name}})
