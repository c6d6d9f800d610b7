"""Commands to the model agents in serving pods: the token they accept, its rotation, the signed PUTs.

Only the operator may tell a pod's agent what to fetch and serve (docs/security.md). The agents accept a
command signed with the token in the Secret ``<name>-agent-keys`` (api/agent_auth.py), bound to the
ModelDeployment's generation so a replay of an older command is refused. This module keeps that
contract on the operator's side:

- the Secret is created once, when new pods are coming, and trusted only if this ModelDeployment owns
  it (a same-named Secret made by someone else would hand them our pods' agents);
- its token is read only when a pod is told something (no read at steady state);
- a token older than :data:`ROTATE_AFTER` is rotated when next needed; the old one stays as
  ``previous-token`` and signs for :data:`ROTATION_GRACE` more, since pods learn the new one only with
  the kubelet's next refresh of the mounted Secret.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from modeldeploy.adapters.agent import AgentError, endpoint
from modeldeploy.adapters.cache import owned_by
from modeldeploy.api import agent_auth
from modeldeploy.api.conditions import format_time
from modeldeploy.policy import model_swap
from modeldeploy.policy import plan as planning
from modeldeploy.reconcile.act import Conflict
from modeldeploy.reconcile.interfaces import Agents, KubeWriter
from modeldeploy.render import names
from modeldeploy.render.triton import AGENT_TOKEN_KEY, Owner

#: A token older than this is rotated when it is next needed; the old one is kept as previous-token.
ROTATE_AFTER = timedelta(days=7)
#: After a rotation the old token signs commands this long: the kubelet refreshes the pods' copy of the
#: Secret within about a minute, and until then the agents know only the old one.
ROTATION_GRACE = timedelta(minutes=5)
ANNOTATION_ROTATED_AT = "modeldeploy.io/token-rotated-at"
#: How long a Secret found to exist and be ours is not checked again (see AgentCommands.checked).
RECHECK_TOKEN = timedelta(seconds=60)


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


@dataclasses.dataclass
class AgentCommands:
    """The agent side of one reconciler: ``kube`` for the Secret, ``agents`` for the pods."""

    kube: KubeWriter
    agents: Agents | None
    now: Callable[[], datetime]
    #: When each owner's Secret was last found to exist and be ours ((namespace, name) -> (uid, time)): Secrets
    #: are not watched, and without this every reconcile of a rollout in progress would cost a create (409)
    #: and a get.
    checked: dict[tuple[str, str], tuple[str, datetime]] = dataclasses.field(default_factory=dict)

    def ensure_token(self, owner: Owner, spec) -> None:
        """Secret ``<name>-agent-keys`` exists and is ours: created once, checked again at most every
        RECHECK_TOKEN (a deleted Secret is recreated within that, or at once when a command needs it)."""
        now = self.now()
        uid, at = self.checked.get((owner.namespace, owner.name), ("", now))
        if uid == owner.uid and now - at < RECHECK_TOKEN:
            return
        name = names.agent_token_name(owner.name)
        created = self.kube.create_secret_token(owner.namespace, name, AGENT_TOKEN_KEY, owner.reference(),
                                                names.common_labels(owner.name, spec.model.name))
        if not created:
            existing = self.kube.get("Secret", owner.namespace, name)
            if existing is not None and not owned_by(existing, owner.uid):
                raise Conflict("Secret", owner.namespace, name, "its token would reach our pods' agents")
        self.checked[(owner.namespace, owner.name)] = (owner.uid, now)

    def forget(self, namespace: str, name: str) -> None:
        self.checked.pop((namespace, name), None)

    def token(self, owner: Owner, spec) -> str | None:
        """The token to sign a command with (read only when a pod is told something; recreated if deleted),
        rotated first when older than ROTATE_AFTER (see the module docstring)."""
        name = names.agent_token_name(owner.name)
        secret = self.kube.get("Secret", owner.namespace, name)
        if secret is None:
            self.forget(owner.namespace, owner.name)
            self.ensure_token(owner, spec)
            secret = self.kube.get("Secret", owner.namespace, name)
        if secret is None or not owned_by(secret, owner.uid):
            return None
        meta, now = secret.get("metadata") or {}, self.now()
        rotated = _parse_time((meta.get("annotations") or {}).get(ANNOTATION_ROTATED_AT)
                              or meta.get("creationTimestamp")) or now
        data = dict(secret.get("data") or {})
        previous_key = agent_auth.PREVIOUS_TOKEN_SECRET_KEY
        if now - rotated >= ROTATE_AFTER and data.get(AGENT_TOKEN_KEY):
            fresh = base64.b64encode(secrets.token_urlsafe(32).encode()).decode()
            data = {**data, previous_key: data[AGENT_TOKEN_KEY], AGENT_TOKEN_KEY: fresh}
            self.kube.patch_secret(owner.namespace, name, {
                "metadata": {"annotations": {ANNOTATION_ROTATED_AT: format_time(now)}},
                "data": {AGENT_TOKEN_KEY: fresh, previous_key: data[previous_key]}})
            rotated = now
        key = previous_key if now - rotated < ROTATION_GRACE and data.get(previous_key) else AGENT_TOKEN_KEY
        value = data.get(key)
        return base64.b64decode(value).decode() if value else None

    def swap(self, owner: Owner, spec, swap: model_swap.Plan, pods: list[Mapping[str, Any]], generation: int) -> None:
        """Tell the pods ``swap.put`` names to serve ``spec``'s model, bound to ``generation`` (the agent
        refuses a replayed command of an older one). A failed PUT is left to the next round's GET."""
        if not swap.put or self.agents is None:
            return
        desired = dataclasses.replace(planning.desired_model(spec), generation=generation)
        token = self.token(owner, spec)
        by_name = {p["metadata"]["name"]: p for p in pods}
        for pod_name in swap.put:
            url = endpoint(by_name[pod_name]) if pod_name in by_name else None
            if url is None:
                continue
            try:
                self.agents.put(url, desired.body(), token)
            except AgentError:
                pass  # the next round asks again and reports what the agent says
