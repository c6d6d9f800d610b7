"""Manual rollout commands (promote, abort, retry) as an annotation the operator clears. Pure.

Why an annotation and not a status field or a subresource: anything that can patch metadata can
drive a rollout — ``kubectl annotate``, the ``modeldeploy`` CLI, a CI script, a GitOps tool's hook —
without write access to ``status`` (which the operator owns and rewrites whole), and a GitOps tool
that does not manage this annotation leaves it alone.

The protocol (``modeldeploy.io/rollout-command``):

1. A client writes the annotation: JSON ``{"command": "promote"|"abort"|"retry", "id": "<unique>",
   "revision": "<canary revision it saw>", "full": true|false, "requestedAt": "...", "requestedBy":
   "..."}`` (only ``command`` and ``id`` are required; :func:`request_patch` builds the merge patch).
2. The operator parses it (:func:`parse`), hands it to the step machine (policy/canary.py), which
   applies or ignores it and records the outcome in ``status.canary.lastCommand`` (``id``,
   ``command``, ``result`` Applied|Ignored, ``message``, ``time``).
3. The operator writes status first, then removes the annotation (:func:`clear_patch`). If it dies in
   between, the next round finds ``lastCommand.id`` equal to the annotation's id
   (:func:`already_handled`) and only removes it: a command is applied at most once.
4. The client waits until ``status.canary.lastCommand.id`` is its id and reports the result.

A command naming a ``revision`` acts only on that canary: "promote" typed while looking at revision A
never promotes a revision B that replaced A in the meantime.

``undo`` is not an operator command: the spec is the source of truth, so undo means changing the spec
back (:func:`undo_patch` builds that patch from ``status.canary.history``); with GitOps, revert the
commit instead (docs/canary.md).

>>> c = Command("promote", "a1b2", revision="5f0e7a9c1d", full=True)
>>> parse({ANNOTATION: encode(c)}) == c
True
>>> parse({ANNOTATION: '{"command": "jump", "id": "x"}'})
InvalidCommand(message='modeldeploy.io/rollout-command: unknown command "jump" (promote, abort or retry)')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

ANNOTATION = "modeldeploy.io/rollout-command"
VERBS = ("promote", "abort", "retry")

#: The spec fields a history entry keeps, and :func:`undo_patch` restores (what defines a revision).
SNAPSHOT_FIELDS = ("model", "serving", "resources", "placement", "compression")


@dataclass(frozen=True)
class Command:
    verb: str
    id: str
    revision: str | None = None
    full: bool = False
    requested_at: str | None = None
    requested_by: str | None = None


@dataclass(frozen=True)
class InvalidCommand:
    """An annotation that is not a command: reported in an Event and removed, never acted on."""

    message: str


def encode(command: Command) -> str:
    out: dict[str, Any] = {"command": command.verb, "id": command.id}
    if command.revision:
        out["revision"] = command.revision
    if command.full:
        out["full"] = True
    if command.requested_at:
        out["requestedAt"] = command.requested_at
    if command.requested_by:
        out["requestedBy"] = command.requested_by
    return json.dumps(out, separators=(",", ":"), sort_keys=True)


def parse(annotations: Mapping[str, str] | None) -> Command | InvalidCommand | None:
    """The command in ``annotations``; None when there is none."""
    raw = (annotations or {}).get(ANNOTATION)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return InvalidCommand(f"{ANNOTATION}: not a JSON object: {raw[:100]!r}")
    verb = data.get("command")
    if verb not in VERBS:
        return InvalidCommand(f'{ANNOTATION}: unknown command "{verb}" (promote, abort or retry)')
    cid = data.get("id")
    if not isinstance(cid, str) or not cid or len(cid) > 128:
        return InvalidCommand(f"{ANNOTATION}: needs an id (a unique string of at most 128 characters)")
    revision = data.get("revision")
    if revision is not None and not isinstance(revision, str):
        return InvalidCommand(f"{ANNOTATION}: revision must be a string")
    full = data.get("full", False)
    if not isinstance(full, bool):
        return InvalidCommand(f"{ANNOTATION}: full must be true or false")
    return Command(verb, cid, revision or None, full, _str(data.get("requestedAt")), _str(data.get("requestedBy")))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def request_patch(command: Command) -> dict[str, Any]:
    """The merge patch a client sends to ask for ``command``."""
    return {"metadata": {"annotations": {ANNOTATION: encode(command)}}}


def clear_patch() -> dict[str, Any]:
    """The merge patch the operator sends once the outcome is in status."""
    return {"metadata": {"annotations": {ANNOTATION: None}}}


def already_handled(command: Command, canary_status: Mapping[str, Any] | None) -> bool:
    """True when status already records this command (remove the annotation, do not apply it again)."""
    last = (canary_status or {}).get("lastCommand") or {}
    return last.get("id") == command.id


@dataclass(frozen=True)
class Undo:
    """What ``modeldeploy undo`` should do: ``abort`` a running canary, ``patch`` the spec back, or
    ``refuse`` (with why)."""

    action: str
    message: str
    patch: Mapping[str, Any] | None = None
    revision: str | None = None


ACTIVE_PHASES = ("Progressing", "Paused", "Holding", "Promoting")


def undo_patch(spec: Mapping[str, Any], canary_status: Mapping[str, Any] | None,
               to_revision: str | None = None) -> Undo:
    """Undo: during a canary, abort it (stable already is the previous revision); after a promotion,
    a merge patch that puts back the spec of the previous promoted revision (or ``to_revision``).

    >>> status = {"phase": "Promoted", "revision": "b", "history": [
    ...     {"revision": "b", "outcome": "Promoted", "spec": {"model": {"uri": "s3://m/2", "format": "onnx"}}},
    ...     {"revision": "a", "outcome": "Promoted", "spec": {"model": {"uri": "s3://m/1", "format": "onnx"}}}]}
    >>> u = undo_patch({"model": {"uri": "s3://m/2", "format": "onnx", "version": 2}}, status)
    >>> u.action, u.revision, u.patch
    ('patch', 'a', {'spec': {'model': {'uri': 's3://m/1', 'version': None}}})
    """
    status = canary_status or {}
    if status.get("phase") in ACTIVE_PHASES:
        return Undo("abort", f"canary {status.get('revision')} is in progress: aborting it sends all traffic "
                             "back to the stable revision")
    history = [h for h in status.get("history") or () if h.get("outcome") == "Promoted" and h.get("spec")]
    if to_revision is not None:
        target = next((h for h in history if h.get("revision") == to_revision), None)
        if target is None:
            return Undo("refuse", f"revision {to_revision} is not a promoted revision with a recorded spec "
                                  f"(known: {', '.join(h['revision'] for h in history) or 'none'})")
    else:
        current = status.get("revision") if status.get("phase") == "Promoted" else None
        earlier = [h for h in history if h.get("revision") != current]
        if not earlier:
            return Undo("refuse", "no earlier promoted revision is recorded in status.canary.history; "
                                  "change spec back by hand (or revert the commit, with GitOps)")
        target = earlier[0]
    patch = {key: _replace(spec.get(key), target["spec"].get(key)) for key in SNAPSHOT_FIELDS
             if spec.get(key) != target["spec"].get(key)}
    if not patch:
        return Undo("refuse", f"spec already matches revision {target['revision']}")
    return Undo("patch", f"spec set back to revision {target['revision']}", {"spec": patch}, target["revision"])


def _replace(current: Any, wanted: Any) -> Any:
    """A merge patch value that turns ``current`` into ``wanted`` (keys only in ``current`` set to None)."""
    if not isinstance(current, Mapping) or not isinstance(wanted, Mapping):
        return wanted
    out = {k: _replace(current.get(k), v) for k, v in wanted.items() if current.get(k) != v}
    out.update({k: None for k in current if k not in wanted})
    return out


#: Field managers and markers of GitOps tools: an object they manage is changed in git, not by hand.
GITOPS_MANAGERS = ("argocd-controller", "argocd-application-controller", "kustomize-controller", "helm-controller",
                   "gotk-sync", "flux")
GITOPS_MARKERS = ("argocd.argoproj.io/tracking-id", "argocd.argoproj.io/instance", "kustomize.toolkit.fluxcd.io/name",
                  "helm.toolkit.fluxcd.io/name")


def gitops_manager(obj: Mapping[str, Any]) -> str | None:
    """The GitOps tool that manages ``obj`` (from its field managers, annotations and labels), if any.

    >>> gitops_manager({"metadata": {"managedFields": [{"manager": "kustomize-controller"}]}})
    'kustomize-controller'
    >>> gitops_manager({"metadata": {"annotations": {"argocd.argoproj.io/tracking-id": "app:x"}}})
    'argocd.argoproj.io/tracking-id'
    >>> gitops_manager({"metadata": {"managedFields": [{"manager": "kubectl-client-side-apply"}]}}) is None
    True
    """
    meta = obj.get("metadata") or {}
    for entry in meta.get("managedFields") or ():
        manager = str(entry.get("manager") or "")
        if any(manager == m or manager.startswith(m + "-") for m in GITOPS_MANAGERS):
            return manager
    for key in GITOPS_MARKERS:
        if key in (meta.get("annotations") or {}) or key in (meta.get("labels") or {}):
            return key
    return None
