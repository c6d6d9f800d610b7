"""The ``modeldeploy`` command: run the operator, manage the local sandbox, run the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from modeldeploy import __version__


def _run_operator(args: argparse.Namespace) -> int:
    import kopf

    from modeldeploy.handlers import modeldeployment as handlers  # registers the handlers

    handlers.NAMESPACES = tuple(args.namespace or ())

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # Kopf logs every event handler's success at INFO: one line per watch event
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from modeldeploy.api.redact import install_log_redaction

    install_log_redaction()  # no password or presigned signature in any log line (api/redact.py)
    if args.metrics_address:
        from modeldeploy import metrics

        server, _ = metrics.serve(args.metrics_address)
        host, port = server.server_address[:2]
        logging.getLogger("modeldeploy.metrics").info("operator metrics on http://%s:%s/metrics", host, port)
    kopf.run(
        standalone=True,  # one replica with a Recreate strategy; no peering objects needed
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness or None,
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from modeldeploy.demo import run_demo

    return run_demo(down=args.down)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modeldeploy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    op = sub.add_parser("operator", help="run the operator (Kopf) against the current kubeconfig")
    op.add_argument("--namespace", "-n", action="append",
                    help="watch only this namespace (repeatable); default: all namespaces")
    op.add_argument("--liveness", default="", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    op.add_argument("--metrics-address", default=os.environ.get("MODELDEPLOY_METRICS_ADDRESS", ""),
                    help="serve the operator's Prometheus metrics on HOST:PORT, e.g. 0.0.0.0:8081 "
                         "(default: $MODELDEPLOY_METRICS_ADDRESS; empty: not served)")
    op.add_argument("--verbose", "-v", action="store_true")
    op.set_defaults(func=_run_operator)

    demo = sub.add_parser("demo", help="sandbox up, operator, an example ModelDeployment reaching Ready")
    demo.add_argument("--down", action="store_true", help="stop the demo's operator and the sandbox")
    demo.set_defaults(func=_demo)

    from modeldeploy.sandbox import commands as sandbox_commands

    sandbox_commands.register(sub)
    from modeldeploy.fetch import command as fetch_command
    fetch_command.register(sub)
    from modeldeploy.compress import command as compress_command
    compress_command.register(sub)
    from modeldeploy.agent import command as agent_command
    agent_command.register(sub)
    from modeldeploy import rollout_cli  # promote, abort, retry, undo, history (also `kubectl modeldeploy ...`)
    rollout_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
