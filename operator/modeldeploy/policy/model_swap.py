"""In-place model swaps: which serving pod to tell what, and what status says meanwhile. Pure.

Why: a new model version should not restart pods (Triton loads it next to the old one, then drops the
old; see modeldeploy/agent/). The pod template therefore does not carry the model (the source is in
the Secret ``<deployment>-model``), and the operator moves running pods to the desired model through each
pod's model agent. This module decides, from every pod's agent report, what to do next:

- a pod whose agent serves the desired model: done;
- a pod serving the desired *version* from other files (same number, new bytes): an in-place load
  cannot tell the two apart, so those pods are restarted instead (``restart``: the reconciler stamps
  the pod template, like ``kubectl rollout restart``, and new pods fetch the current source);
- a pod whose agent is swapping to the desired model: wait;
- a pod whose agent failed on the desired model: report it (the old version keeps serving there);
- otherwise: tell it (PUT). One pod at a time, so a bad model never reaches more than one pod before
  it fails, and capacity never drops on more than one pod (the same promise as ``maxUnavailable: 0``
  for loads that take memory or time).

Worked example: desired version 2; pod a serves 2, pod b serves 1 and is idle, pod c serves 1 ->
``put`` [b], progress "model version 2: 1/3 pods serving it".

Agents show URIs redacted (no credentials, no query string) with a ``uriFingerprint``, the SHA-256 of
the whole URI: "serves the desired model" compares fingerprints, so two presigned URLs that differ only
in their signature are told apart without either being shown. The command carries the
ModelDeployment's ``generation`` when known, so an agent refuses a command older than one it accepted
(api/agent_auth.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from modeldeploy.api import constants as c
from modeldeploy.api.redact import uri_fingerprint

REASON_SWAPPING = "SwappingModel"
REASON_SWAP_FAILED = "ModelSwapFailed"
REASON_AGENT_UNREACHABLE = "ModelAgentUnreachable"


@dataclass(frozen=True)
class Desired:
    uri: str
    version: int
    sha256: str | None = None
    generation: int | None = None  # metadata.generation of the ModelDeployment that wants it

    def body(self) -> dict[str, Any]:
        """The agent's PUT body (the client adds the nonce and signs it).

        >>> Desired("s3://b/m", 2, generation=7).body()
        {'uri': 's3://b/m', 'version': 2, 'generation': 7}
        """
        out: dict[str, Any] = {"uri": self.uri, "version": self.version}
        if self.sha256:
            out["sha256"] = self.sha256
        if self.generation is not None:
            out["generation"] = self.generation
        return out

    def files_key(self) -> str:
        return f"{self.uri}@{self.sha256 or '-'}"


@dataclass(frozen=True)
class PodReport:
    """One serving pod as the agent reported it; ``report`` None when the agent did not answer."""

    pod: str
    report: Mapping[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class Plan:
    put: tuple[str, ...] = ()  # pods to send the desired model to
    restart: bool = False  # same version, other files: restart the pods instead
    serving: int = 0  # pods serving the desired model
    total: int = 0
    condition: tuple[str, str, bool] | None = None  # (reason, message, stalled) while not done
    pods: Mapping[str, str] = field(default_factory=dict)  # pod -> one word (serving, swapping, failed, ...)

    @property
    def done(self) -> bool:
        return self.total > 0 and self.serving == self.total


def same_uri(ref: Mapping[str, Any], want: Desired) -> bool:
    """By fingerprint when the agent gives one (it shows the uri redacted), else by the uri itself."""
    if ref.get("uriFingerprint") is not None:
        return ref["uriFingerprint"] == uri_fingerprint(want.uri)
    return ref.get("uri") == want.uri


def _same(ref: Mapping[str, Any] | None, want: Desired, files: bool = True) -> bool:
    if not ref or ref.get("version") != want.version:
        return False
    if not files:
        return True
    if not same_uri(ref, want):
        return False
    return not (want.sha256 and ref.get("sha256") and ref["sha256"] != want.sha256)


def plan(desired: Desired, reports: Sequence[PodReport]) -> Plan:
    """What to do for ``desired`` given the agent ``reports`` of the ready pods of the current revision."""
    put: list[str] = []
    states: dict[str, str] = {}
    failures: list[str] = []
    unreachable: list[str] = []
    swapping = restart = False
    serving = 0
    candidates: list[str] = []
    for r in sorted(reports, key=lambda r: r.pod):
        rep = r.report
        if rep is None:
            states[r.pod] = "unreachable"
            unreachable.append(f"{r.pod}: {r.error or 'no answer'}")
            continue
        served, wanted, state = rep.get("served"), rep.get("desired"), rep.get("state")
        if _same(served, desired):
            serving += 1
            states[r.pod] = "serving"
        elif _same(served, desired, files=False):
            states[r.pod] = "restart"
            restart = True
        elif state == "Swapping" or (state == "Starting" and _same(wanted, desired)):
            states[r.pod] = "swapping"
            swapping = swapping or _same(wanted, desired)
        elif state == "Failed" and _same(wanted, desired):
            states[r.pod] = "failed"
            failures.append(f"{r.pod}: {rep.get('message') or 'failed'}")
        else:
            states[r.pod] = "pending"
            candidates.append(r.pod)
    if candidates and not swapping and not failures:
        put.append(candidates[0])
        states[candidates[0]] = "swapping"
    total = len(reports)
    progress = f"model version {desired.version}: {serving}/{total} pods serving it"
    condition: tuple[str, str, bool] | None = None
    if failures:
        condition = (REASON_SWAP_FAILED, f"{progress}; swap failed on {'; '.join(failures)} "
                                         "(the previous version keeps serving there)", True)
    elif unreachable:
        condition = (REASON_AGENT_UNREACHABLE, f"{progress}; model agent unreachable on {'; '.join(unreachable)}",
                     False)
    elif restart:
        condition = (c.REASON_ROLLING_OUT, f"{progress}; same version from new files: restarting pods", False)
    elif serving < total:
        condition = (REASON_SWAPPING, f"{progress} (in-place swap, no restarts)", False)
    return Plan(put=tuple(put), restart=restart, serving=serving, total=total, condition=condition, pods=states)
