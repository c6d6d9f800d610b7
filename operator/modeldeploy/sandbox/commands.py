"""`modeldeploy sandbox up|down|status|env`: argparse glue over `cluster.Sandbox`.

`register(subparsers)` is called by `modeldeploy.cli`; each action is a function of the parsed args
that returns the process exit code, so the CLI stays a thin dispatcher.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .binaries import BinariesError
from .cluster import Sandbox, SandboxError
from .tools import ToolsError

_FAILURES = (SandboxError, BinariesError, ToolsError, OSError)


def _sandbox(args: argparse.Namespace) -> Sandbox:
    return Sandbox(state_dir=Path(args.state_dir) if args.state_dir else None)


def _fail(action: str, exc: BaseException) -> int:
    component = getattr(exc, "component", None)
    prefix = f"sandbox {action} failed" + (f" ({component})" if component else "")
    print(f"error: {prefix}: {exc}", file=sys.stderr)
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    try:
        _sandbox(args).up(timeout=args.timeout)
    except _FAILURES as exc:
        return _fail("up", exc)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    try:
        _sandbox(args).down()
    except _FAILURES as exc:
        return _fail("down", exc)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    info = _sandbox(args).status()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"sandbox: {'up' if info['up'] else 'down'}  (state {info['state_dir']})")
        if info.get("server"):
            print(f"server:  {info['server']}  version {info.get('version')}")
        for comp, c in info["components"].items():
            state = f"running pid {c['pid']}" if c["running"] else "stopped"
            print(f"  {comp:<24} {state:<20} {c['log']}")
        for name, n in info.get("nodes", {}).items():
            gpu = f"{n['gpus']} x {n['product']}" if n.get("product") else "no GPU"
            print(f"  node {name:<19} {'Ready' if n['ready'] else 'NotReady':<9} {gpu}")
        net = info.get("network") or {}
        if net.get("mode") == "pod-ips":
            print(f"  pod network              {net['range']} (addresses on lo)")
        elif net:
            print(f"  pod network              none ({net.get('reason')}): pods on 127.0.0.1, mapped ports")
        gateway = info.get("gateway") or {}
        if gateway.get("url"):
            print(f"  gateway                  {gateway['url']}  Gateway {gateway['gateway']}  log {gateway['log']}")
        prom = info.get("prometheus") or {}
        if prom.get("url"):
            print(f"  prometheus               {prom['url']}  log {prom.get('log')}")
        sup = info.get("supervisor") or {}
        if sup.get("running"):
            restarted = ", ".join(f"{k} {v}x" for k, v in sorted((sup.get("restarts") or {}).items()) if v)
            print(f"  supervisor               pid {sup['pid']}; restarts: {restarted or 'none'}")
        if info.get("error"):
            print(f"error: {info['error']}")
        if info["up"]:
            print(f"export KUBECONFIG={info['kubeconfig']}")
    return 0 if info["up"] else 3


def cmd_env(args: argparse.Namespace) -> int:
    sandbox = _sandbox(args)
    if not sandbox.kubeconfig_path.is_file():
        print(f"error: sandbox not created (no {sandbox.kubeconfig_path}); run `modeldeploy sandbox up`",
              file=sys.stderr)
        return 1
    print(sandbox.env())
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `sandbox` with `up | down | status | env` to a CLI's subparsers."""
    parser = subparsers.add_parser(
        "sandbox",
        help="local Kubernetes control plane with simulated GPU nodes (kwok)",
        description="Run a local kube-apiserver/controller-manager/scheduler with kwok GPU nodes.",
    )
    parser.add_argument("--state-dir", default=None,
                        help="state folder (default $MODELDEPLOY_SANDBOX_DIR or $MODELDEPLOY_CACHE/sandbox)")
    actions = parser.add_subparsers(dest="sandbox_command", metavar="{up,down,status,env}")
    actions.required = True

    up = actions.add_parser("up", help="start the sandbox (builds the control plane on first use)")
    up.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for readiness")
    up.set_defaults(func=cmd_up)

    down = actions.add_parser("down", help="stop every sandbox process and remove its state")
    down.set_defaults(func=cmd_down)

    status = actions.add_parser("status", help="show components, nodes; exit 0 when up, 3 when not")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=cmd_status)

    env = actions.add_parser("env", help="print the export lines (KUBECONFIG, MODELDEPLOY_GATEWAY_URL, "
                                         "MODELDEPLOY_PROMETHEUS_URL)")
    env.set_defaults(func=cmd_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m modeldeploy.sandbox.commands up`)."""
    parser = argparse.ArgumentParser(prog="modeldeploy")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
