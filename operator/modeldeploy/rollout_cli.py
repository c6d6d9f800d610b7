"""``modeldeploy promote|abort|retry|undo|history NAME``: drive a canary rollout through the API.

Also installed as the kubectl plugin ``kubectl-modeldeploy`` (``kubectl modeldeploy promote NAME``).
promote, abort and retry write the ``modeldeploy.io/rollout-command`` annotation (the protocol is in
policy/commands.py) and wait until the operator records the outcome in
``status.canary.lastCommand``; undo changes the spec back to the previous promoted revision (and
refuses, unless ``--force``, when a GitOps tool manages the object: revert the commit instead);
history prints ``status.canary.history``.

The Kubernetes calls sit behind :class:`RolloutApi` (get, merge-patch) so the command logic is tested
without a cluster.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol, TextIO

from modeldeploy.api import constants as c
from modeldeploy.api.conditions import format_time
from modeldeploy.policy import commands as cmd

EXIT_OK, EXIT_REFUSED, EXIT_IGNORED, EXIT_TIMEOUT = 0, 1, 2, 3


class RolloutApi(Protocol):
    def get(self, namespace: str, name: str) -> Mapping[str, Any]:
        ...

    def patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """A JSON merge patch of the ModelDeployment."""
        ...


class CliError(RuntimeError):
    pass


class KubeRolloutApi:
    """:class:`RolloutApi` over the kubernetes client (kubeconfig, or in-cluster)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None):
        from kubernetes import client, config

        try:
            config.load_kube_config(config_file=kubeconfig, context=context)
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = next((x for x in contexts if x["name"] == context), active) if context else active
            self.namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
        except config.ConfigException:
            config.load_incluster_config()
            self.namespace = "default"
        self.custom = client.CustomObjectsApi()

    def _call(self, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Mapping[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            detail = exc.body or str(exc)
            try:
                detail = json.loads(detail).get("message", detail)
            except (TypeError, ValueError, AttributeError):
                pass
            raise CliError(f"{what}: {detail}") from None

    def get(self, namespace: str, name: str) -> Mapping[str, Any]:
        return self._call(f"get modeldeployment {namespace}/{name}", self.custom.get_namespaced_custom_object,
                          c.GROUP, c.VERSION, namespace, c.PLURAL, name)

    def patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._call(f"patch modeldeployment {namespace}/{name}", self.custom.patch_namespaced_custom_object,
                          c.GROUP, c.VERSION, namespace, c.PLURAL, name, body,
                          _content_type="application/merge-patch+json")


def _canary(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("status") or {}).get("canary") or {}


def send_command(api: RolloutApi, namespace: str, name: str, verb: str, *, full: bool = False, wait: bool = True,
                 timeout: float = 60.0, out: TextIO = sys.stdout, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, user: str | None = None) -> int:
    """Ask the operator for ``verb`` on the canary of ``namespace/name``; wait for its answer."""
    obj = api.get(namespace, name)
    canary = _canary(obj)
    phase = canary.get("phase")
    if verb in ("promote", "abort") and phase not in cmd.ACTIVE_PHASES:
        print(f"{namespace}/{name}: no canary in progress (phase {phase or 'none'}); nothing to {verb}", file=out)
        return EXIT_REFUSED
    if verb == "retry" and phase not in ("Aborted", "RollingBack"):
        print(f"{namespace}/{name}: the canary is not aborted (phase {phase or 'none'}); nothing to retry", file=out)
        return EXIT_REFUSED
    command = cmd.Command(verb, uuid.uuid4().hex[:16], revision=canary.get("revision"), full=full,
                          requested_at=format_time(datetime.now(timezone.utc)), requested_by=user or _user())
    api.patch(namespace, name, cmd.request_patch(command))
    what = f"{verb}{' --full' if full else ''} of canary {canary.get('revision')} ({namespace}/{name})"
    if not wait:
        print(f"requested {what} (id {command.id})", file=out)
        return EXIT_OK
    deadline = clock() + timeout
    while True:
        last = _canary(api.get(namespace, name)).get("lastCommand") or {}
        if last.get("id") == command.id:
            print(f"{what}: {last.get('result')}: {last.get('message')}", file=out)
            return EXIT_OK if last.get("result") == "Applied" else EXIT_IGNORED
        if clock() >= deadline:
            print(f"{what}: the operator did not answer within {timeout:g}s; the request stays in the "
                  f"{cmd.ANNOTATION} annotation until it does", file=out)
            return EXIT_TIMEOUT
        sleep(0.5)


def undo(api: RolloutApi, namespace: str, name: str, *, to_revision: str | None = None, force: bool = False,
         out: TextIO = sys.stdout, **wait: Any) -> int:
    obj = api.get(namespace, name)
    plan = cmd.undo_patch(obj.get("spec") or {}, _canary(obj), to_revision)
    if plan.action == "abort":
        print(plan.message, file=out)
        return send_command(api, namespace, name, "abort", out=out, **wait)
    if plan.action == "refuse":
        print(f"{namespace}/{name}: {plan.message}", file=out)
        return EXIT_REFUSED
    manager = cmd.gitops_manager(obj)
    if manager and not force:
        print(f"{namespace}/{name} is managed by GitOps ({manager}): revert the change in git instead (the tool "
              "would put the spec back); --force patches anyway", file=out)
        return EXIT_REFUSED
    api.patch(namespace, name, plan.patch or {})
    print(f"{namespace}/{name}: {plan.message}; the operator rolls it out as a new canary", file=out)
    return EXIT_OK


def history_table(obj: Mapping[str, Any]) -> str:
    """``status.canary.history`` as a table, newest first; the revision serving now is marked ``*``.

    >>> print(history_table({"status": {"currentRevision": "a", "canary": {"history": [
    ...     {"revision": "b", "attempt": 1, "outcome": "RolledBack", "startedAt": "2026-12-01T12:00:00Z",
    ...      "finishedAt": "2026-12-01T12:00:40Z", "change": "model version 1 -> 2",
    ...      "message": "AnalysisFailed: errorRate 1.3% ..."},
    ...     {"revision": "a", "attempt": 1, "outcome": "Promoted", "startedAt": "2026-11-30T09:00:00Z"}]}}}))
    REVISION  ATTEMPT  OUTCOME     STARTED               FINISHED              CHANGE                MESSAGE
    b         1        RolledBack  2026-12-01T12:00:00Z  2026-12-01T12:00:40Z  model version 1 -> 2  AnalysisFailed: errorRate 1.3% ...
    a *       1        Promoted    2026-11-30T09:00:00Z  -                     -                     -
    """
    status = obj.get("status") or {}
    current = status.get("currentRevision")
    rows = [("REVISION", "ATTEMPT", "OUTCOME", "STARTED", "FINISHED", "CHANGE", "MESSAGE")]
    for h in (status.get("canary") or {}).get("history") or ():
        rows.append((f"{h.get('revision')}{' *' if h.get('revision') == current else ''}", str(h.get("attempt", 1)),
                     str(h.get("outcome", "")), h.get("startedAt") or "-", h.get("finishedAt") or "-",
                     h.get("change") or "-", h.get("message") or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(col.ljust(w) for col, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is fine
        return "unknown"


def _run(args: argparse.Namespace) -> int:
    try:
        api = KubeRolloutApi(args.kubeconfig, args.context)
        namespace = args.namespace or api.namespace
        wait = {"wait": not args.no_wait, "timeout": args.timeout} if hasattr(args, "no_wait") else {}
        if args.command in ("promote", "abort", "retry"):
            return send_command(api, namespace, args.name, args.command, full=getattr(args, "full", False), **wait)
        if args.command == "undo":
            return undo(api, namespace, args.name, to_revision=args.to_revision, force=args.force, **wait)
        obj = api.get(namespace, args.name)
        if args.output == "json":
            print(json.dumps(_canary(obj).get("history") or [], indent=2))
        else:
            print(history_table(obj))
        return EXIT_OK
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED


HELP = {
    "promote": "complete the current canary step now (--full: skip every remaining step and analysis)",
    "abort": "roll the canary back: all traffic to stable at once",
    "retry": "start an aborted canary again from its first step",
    "undo": "abort a running canary; after a promotion, put the spec of the previous promoted revision back",
    "history": "list the rollouts recorded in status.canary.history",
}


def register(sub: argparse._SubParsersAction) -> None:
    for verb, text in HELP.items():
        p = sub.add_parser(verb, help=text, description=text)
        p.add_argument("name", help="the ModelDeployment")
        p.add_argument("--namespace", "-n", help="namespace (default: the kubeconfig context's)")
        p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
        p.add_argument("--context", help="kubeconfig context")
        if verb != "history":
            p.add_argument("--no-wait", action="store_true", help="do not wait for the operator's answer")
            p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it (default 60)")
        if verb == "promote":
            p.add_argument("--full", action="store_true", help="promote now: skip the remaining steps and analysis")
        if verb == "undo":
            p.add_argument("--to-revision", help="a promoted revision from `history` (default: the previous one)")
            p.add_argument("--force", action="store_true", help="patch even when a GitOps tool manages the object")
        if verb == "history":
            p.add_argument("--output", "-o", choices=("table", "json"), default="table")
        p.set_defaults(func=_run)
