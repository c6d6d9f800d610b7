"""The ``modeldeploy`` command: run the operator, manage the local sandbox, run the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from modeldeploy import __version__


def _run_operator(args: argparse.Namespace) -> int:
    import kopf

    from modeldeploy import leadership
    from modeldeploy.adapters import kube as kube_adapter
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
    identity = args.identity or leadership.default_identity()
    # Every request of this process names it, so audit logs tell two operators' writes apart.
    kube_adapter.USER_AGENT = f"{kube_adapter.USER_AGENT} ({identity})"

    def run() -> None:
        kopf.run(
            standalone=True,  # no Kopf peering: the Lease (or --no-leader-election) decides who runs
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            liveness_endpoint=args.liveness or None,
        )

    if not args.leader_election:
        run()
        return 0
    if not args.lease_namespace:
        raise SystemExit("modeldeploy operator: leader election needs the Lease's namespace and this process is "
                         f"not in a cluster: pass --lease-namespace NS (env {leadership.LEASE_NAMESPACE_ENV}; "
                         "the namespace the chart is installed in, to stand by behind it), or "
                         "--no-leader-election when no other modeldeploy operator watches these namespaces")
    from kubernetes import client, config

    from modeldeploy.adapters.lease import KubeLeaseStore

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.ApiClient()
    api.user_agent = kube_adapter.USER_AGENT
    # The kubernetes client imports each API class on first use (about a second for them all here):
    # pay that while standing by, not between taking the Lease and the first reconcile.
    kube_adapter.Kube()
    store = KubeLeaseStore(api, args.lease_namespace, args.lease_name)
    logging.getLogger(__name__).info("leader election: Lease %s/%s, identity %s", args.lease_namespace,
                                     args.lease_name, identity)
    return leadership.run_elected(run, leadership.Elector(store, identity), liveness=args.liveness or None)


def _demo(args: argparse.Namespace) -> int:
    from modeldeploy.demo import run_demo

    return run_demo(down=args.down)


def _leader_election_arguments(op: argparse.ArgumentParser) -> None:
    from modeldeploy import leadership as le

    group = op.add_argument_group("leader election", "one operator of several runs at a time: the holder of a "
                                  "coordination.k8s.io Lease; the others stand by (docs/architecture.md)")
    group.add_argument("--no-leader-election", dest="leader_election", action="store_false",
                       help="run at once, without a Lease: only when no other operator watches these namespaces")
    group.add_argument("--lease-name", default=os.environ.get(le.LEASE_NAME_ENV) or le.DEFAULT_LEASE_NAME,
                       help=f"the Lease (env {le.LEASE_NAME_ENV}; default: %(default)s)")
    group.add_argument("--lease-namespace", default=le.default_namespace(),
                       help=f"its namespace (env {le.LEASE_NAMESPACE_ENV}; default: the pod's own namespace; "
                       "required outside a cluster)")
    group.add_argument("--identity", default=None,
                       help=f"this process's name in the Lease and in its requests' user agent; unique per "
                       f"process (env {le.IDENTITY_ENV}, the pod name in the chart; default: host name and a "
                       "random suffix)")


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
    _leader_election_arguments(op)
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
