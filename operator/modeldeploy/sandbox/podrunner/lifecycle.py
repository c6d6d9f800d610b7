"""What the runner does next for a pod, and what the pod's status says: the kubelet's rules, pure.

State is one :class:`Run` per container (init and app), changed only through :func:`started`,
:func:`exited` and :func:`probed`; :func:`next_starts` says which containers to start now, and
:func:`pod_status` turns the runs into the ``status`` the API server stores. Time is a float (epoch
seconds) passed in, never read here.

The rules followed, as in the kubelet:

- init containers run one at a time, in order; app containers start once all init containers exited 0;
- a container that exits is restarted per ``restartPolicy`` (Always; OnFailure when the exit code is
  not 0; Never) with crash-loop back-off 0 s, 10 s, 20 s, ... capped at 300 s; a failed init container
  is restarted unless the policy is Never, in which case the pod fails;
- a pod is Ready only when every app container is running and its readiness probe succeeded
  ``successThreshold`` times in a row (a container without readiness probe is ready once running);
  a startup probe gates the other two; ``failureThreshold`` liveness (or startup) failures in a row
  restart the container;
- ``kubectl get pod`` shows ``Init:Error`` / ``Init:CrashLoopBackOff`` / ``CrashLoopBackOff`` from the
  container states written here (terminated reason ``Error`` with exit code and termination message;
  waiting reason ``CrashLoopBackOff`` with the last termination in ``lastState``).

Worked example (an init container that fails once, then Triton becoming ready):

>>> pod = {"metadata": {"name": "p"}, "spec": {"restartPolicy": "Always",
...        "initContainers": [{"name": "fetch-model", "image": "m"}],
...        "containers": [{"name": "triton", "image": "t", "readinessProbe": {"periodSeconds": 5}}]}}
>>> runs = {}
>>> next_starts(pod, runs, now=0.0)
['fetch-model']
>>> runs["fetch-model"] = exited(started(Run("fetch-model"), 0.0), 1, "Error", "NotFound: 404", 2.0, "Always", init=True)
>>> pod_status(pod, runs, now=2.0, start_time=0.0)["initContainerStatuses"][0]["state"]["terminated"]["exitCode"]
1
>>> next_starts(pod, runs, now=2.0)   # first restart is immediate, like the kubelet
['fetch-model']
>>> runs["fetch-model"] = exited(started(runs["fetch-model"], 2.0), 0, "Completed", "", 3.0, "Always", init=True)
>>> next_starts(pod, runs, now=3.0)
['triton']
>>> runs["triton"] = started(Run("triton"), 3.0)
>>> pod_status(pod, runs, now=4.0, start_time=0.0)["phase"], is_ready(pod, runs)
('Running', False)
>>> runs["triton"] = probed(pod["spec"]["containers"][0], runs["triton"], "readiness", True, 8.0)
>>> is_ready(pod, runs)
True
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

BACKOFF_INITIAL_S = 10.0
BACKOFF_MAX_S = 300.0
#: A container that ran this long before exiting restarts without back-off (kubelet: 2 x max back-off).
BACKOFF_RESET_S = 2 * BACKOFF_MAX_S

PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1,
                  "successThreshold": 1, "failureThreshold": 3}


def iso(ts: float) -> str:
    """RFC 3339 in UTC, seconds precision (what metav1.Time stores).

    >>> iso(0)
    '1970-01-01T00:00:00Z'
    """
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    """``Completed`` (exit 0), ``Error``, or ``OOMKilled``/``StartError`` when the runner knows better."""
    message: str
    started_at: float
    finished_at: float


@dataclass(frozen=True)
class ProbeState:
    successes: int = 0
    failures: int = 0
    last_at: float | None = None
    ok: bool = False


@dataclass(frozen=True)
class Run:
    """What the runner knows of one container."""

    name: str
    restart_count: int = 0
    running_since: float | None = None
    terminated: Terminated | None = None
    """The last exit: the current state when not running, ``lastState`` once running again."""
    waiting: tuple[str, str] | None = None
    """(reason, message) when it cannot start (e.g. ``ErrImageNeverPull``)."""
    next_start_at: float | None = None
    """When a restart is allowed (back-off); None when no restart is due."""
    crashes: int = 0
    """Exits since the back-off was last reset; sets the next back-off."""
    probes: Mapping[str, ProbeState] = field(default_factory=dict)
    pid: int | None = None

    @property
    def running(self) -> bool:
        return self.running_since is not None


def should_restart(restart_policy: str, exit_code: int) -> bool:
    """Whether a container that exited with ``exit_code`` is started again.

    >>> [should_restart(p, c) for p in ("Always", "OnFailure", "Never") for c in (0, 1)]
    [True, True, False, True, False, False]
    """
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def backoff(crashes: int) -> float:
    """Delay before restarting after the ``crashes``-th exit in a row.

    >>> [backoff(n) for n in (1, 2, 3, 4, 7)]
    [0.0, 10.0, 20.0, 40.0, 300.0]
    """
    if crashes <= 1:
        return 0.0
    return min(BACKOFF_INITIAL_S * 2 ** (crashes - 2), BACKOFF_MAX_S)


def started(run: Run, now: float, pid: int | None = None) -> Run:
    """The container's process started (a restart if it had exited before)."""
    return dataclasses.replace(run, running_since=now, waiting=None, next_start_at=None, pid=pid,
                               restart_count=run.restart_count + (1 if run.terminated else 0),
                               probes={})


def exited(run: Run, exit_code: int, reason: str, message: str, now: float, restart_policy: str,
           init: bool = False) -> Run:
    """The container's process ended. Init containers that succeeded are never restarted."""
    since = run.running_since if run.running_since is not None else now
    crashes = 1 if now - since >= BACKOFF_RESET_S else run.crashes + 1
    restart = should_restart(restart_policy, exit_code) and not (init and exit_code == 0)
    return dataclasses.replace(
        run, running_since=None, pid=None, crashes=crashes,
        terminated=Terminated(exit_code, reason, message, since, now),
        next_start_at=now + backoff(crashes) if restart else None, probes={})


def cannot_start(run: Run, reason: str, message: str) -> Run:
    return dataclasses.replace(run, waiting=(reason, message))


def _spec(pod: dict[str, Any]) -> dict[str, Any]:
    return pod.get("spec") or {}


def _policy(pod: dict[str, Any]) -> str:
    return _spec(pod).get("restartPolicy") or "Always"


def init_done(pod: dict[str, Any], runs: Mapping[str, Run]) -> bool:
    for c in _spec(pod).get("initContainers") or []:
        r = runs.get(c["name"])
        if r is None or r.running or r.terminated is None or r.terminated.exit_code != 0:
            return False
    return True


def init_failed(pod: dict[str, Any], runs: Mapping[str, Run]) -> bool:
    """An init container failed and will not be retried (restartPolicy Never): the pod failed."""
    if _policy(pod) != "Never":
        return False
    return any((r := runs.get(c["name"])) is not None and not r.running and r.terminated is not None
               and r.terminated.exit_code != 0 for c in _spec(pod).get("initContainers") or [])


def next_starts(pod: dict[str, Any], runs: Mapping[str, Run], now: float) -> list[str]:
    """Containers to start now: the first unfinished init container, or the app containers due."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return []
    for c in _spec(pod).get("initContainers") or []:
        r = runs.get(c["name"])
        if r is None or (not r.running and r.terminated is None and r.waiting is None):
            return [c["name"]]
        if r.running or r.waiting is not None:
            return []
        if r.terminated is not None and r.terminated.exit_code == 0:
            continue
        if r.next_start_at is not None and now >= r.next_start_at:
            return [c["name"]]
        return []
    out = []
    for c in _spec(pod).get("containers") or []:
        r = runs.get(c["name"])
        if r is None or (not r.running and r.terminated is None and r.waiting is None):
            out.append(c["name"])
        elif not r.running and r.waiting is None and r.next_start_at is not None and now >= r.next_start_at:
            out.append(c["name"])
    return out


# --- probes ----------------------------------------------------------------------------------------

def _probe(container: dict[str, Any], kind: str) -> dict[str, Any] | None:
    probe = container.get(f"{kind}Probe")
    return {**PROBE_DEFAULTS, **probe} if probe else None


def probe_due(container: dict[str, Any], run: Run, kind: str, now: float) -> bool:
    """Whether the ``kind`` (readiness, liveness, startup) probe should run now. Liveness and
    readiness wait for a startup probe to succeed."""
    probe = _probe(container, kind)
    if probe is None or not run.running:
        return False
    if kind != "startup" and _probe(container, "startup") and not run.probes.get("startup", ProbeState()).ok:
        return False
    state = run.probes.get(kind, ProbeState())
    if kind == "startup" and state.ok:
        return False
    if now < run.running_since + probe["initialDelaySeconds"]:
        return False
    return state.last_at is None or now - state.last_at >= probe["periodSeconds"]


def probed(container: dict[str, Any], run: Run, kind: str, success: bool, now: float) -> Run:
    """Record one probe result; the verdict flips after ``successThreshold`` / ``failureThreshold``
    results in a row."""
    probe = _probe(container, kind) or PROBE_DEFAULTS
    old = run.probes.get(kind, ProbeState())
    successes = old.successes + 1 if success else 0
    failures = 0 if success else old.failures + 1
    ok = old.ok
    if success and successes >= probe["successThreshold"]:
        ok = True
    if not success and failures >= probe["failureThreshold"]:
        ok = False
    state = ProbeState(successes, failures, now, ok)
    return dataclasses.replace(run, probes={**run.probes, kind: state})


def must_kill(container: dict[str, Any], run: Run) -> str | None:
    """A reason to kill the container (liveness or startup failed ``failureThreshold`` times), or None."""
    for kind in ("startup", "liveness"):
        probe = _probe(container, kind)
        state = run.probes.get(kind)
        if probe and state and not state.ok and state.failures >= probe["failureThreshold"]:
            return f"{kind} probe failed {state.failures} times"
    return None


def container_ready(container: dict[str, Any], run: Run | None) -> bool:
    if run is None or not run.running:
        return False
    if _probe(container, "readiness") is None:
        return _probe(container, "startup") is None or run.probes.get("startup", ProbeState()).ok
    return run.probes.get("readiness", ProbeState()).ok


def is_ready(pod: dict[str, Any], runs: Mapping[str, Run]) -> bool:
    containers = _spec(pod).get("containers") or []
    return bool(containers) and init_done(pod, runs) and all(container_ready(c, runs.get(c["name"])) for c in containers)


# --- status ----------------------------------------------------------------------------------------

def _terminated(t: Terminated, container_id: str = "") -> dict[str, Any]:
    out = {"exitCode": t.exit_code, "reason": t.reason, "startedAt": iso(t.started_at),
           "finishedAt": iso(t.finished_at)}
    if t.message:
        out["message"] = t.message
    if container_id:
        out["containerID"] = container_id
    return out


def container_status(pod: dict[str, Any], container: dict[str, Any], run: Run | None, now: float,
                     init: bool = False) -> dict[str, Any]:
    name = container["name"]
    out: dict[str, Any] = {"name": name, "image": container.get("image", ""), "imageID": "",
                           "restartCount": run.restart_count if run else 0, "ready": False, "started": False}
    if run is None:
        reason = "PodInitializing" if not init and (_spec(pod).get("initContainers")) else "ContainerCreating"
        out["state"] = {"waiting": {"reason": reason}}
        out["lastState"] = {}
        return out
    if run.pid is not None:
        out["containerID"] = f"podrunner://{run.pid}"
    last = {"terminated": _terminated(run.terminated)} if run.terminated else {}
    if run.running:
        out["state"] = {"running": {"startedAt": iso(run.running_since)}}
        out["lastState"] = last
        out["started"] = not _probe(container, "startup") or run.probes.get("startup", ProbeState()).ok
        out["ready"] = not init and container_ready(container, run)
    elif run.waiting is not None:
        out["state"] = {"waiting": {"reason": run.waiting[0], "message": run.waiting[1]}}
        out["lastState"] = last
    elif run.terminated is not None and run.next_start_at is not None and run.next_start_at > now:
        delay = int(round(run.next_start_at - run.terminated.finished_at))
        msg = f"back-off {delay}s restarting failed container={name} pod={pod['metadata']['name']}"
        out["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
        out["lastState"] = last
    elif run.terminated is not None:
        out["state"] = {"terminated": _terminated(run.terminated)}
        out["lastState"] = {}
        out["ready"] = init and run.terminated.exit_code == 0
    else:
        out["state"] = {"waiting": {"reason": "ContainerCreating"}}
        out["lastState"] = {}
    return out


def phase(pod: dict[str, Any], runs: Mapping[str, Run]) -> str:
    if init_failed(pod, runs):
        return "Failed"
    if not init_done(pod, runs):
        return "Pending"
    containers = _spec(pod).get("containers") or []
    app = [runs.get(c["name"]) for c in containers]
    if any(r is not None and r.running for r in app):
        return "Running"
    if app and all(r is not None and r.terminated is not None and r.next_start_at is None for r in app):
        return "Succeeded" if all(r.terminated.exit_code == 0 for r in app) else "Failed"  # type: ignore[union-attr]
    if any(r is not None and r.terminated is not None for r in app):
        return "Running"  # between a crash and its restart
    return "Pending"


def _condition(ctype: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    out = {"type": ctype, "status": "True" if ok else "False"}
    if not ok and reason:
        out["reason"] = reason
    if not ok and message:
        out["message"] = message
    return out


def conditions(pod: dict[str, Any], runs: Mapping[str, Run]) -> list[dict[str, Any]]:
    spec = _spec(pod)
    pending_init = [c["name"] for c in spec.get("initContainers") or []
                    if not ((r := runs.get(c["name"])) and not r.running and r.terminated
                            and r.terminated.exit_code == 0)]
    unready = [c["name"] for c in spec.get("containers") or [] if not container_ready(c, runs.get(c["name"]))]
    done = phase(pod, runs) in ("Succeeded", "Failed")
    reason = "PodCompleted" if done else "ContainersNotReady"
    msg = f"containers with unready status: [{' '.join(unready)}]"
    return [
        _condition("PodReadyToStartContainers", True),
        _condition("Initialized", not pending_init, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(pending_init)}]"),
        _condition("Ready", not unready, reason, msg),
        _condition("ContainersReady", not unready, reason, msg),
    ]


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """``new`` plus the old conditions it does not set (PodScheduled), each keeping its old
    ``lastTransitionTime`` when its status did not change."""
    before = {c["type"]: c for c in old or []}
    out = []
    for cond in new:
        prev = before.get(cond["type"])
        keep = prev is not None and prev.get("status") == cond["status"] and prev.get("lastTransitionTime")
        out.append({**cond, "lastTransitionTime": prev["lastTransitionTime"] if keep else iso(now)})  # type: ignore[index]
    types = {c["type"] for c in new}
    return [c for c in old or [] if c["type"] not in types] + out


def pod_status(pod: dict[str, Any], runs: Mapping[str, Run], now: float, start_time: float,
               pod_ip: str | None = "127.0.0.1") -> dict[str, Any]:
    """The whole ``status`` for the pod (what the runner merge-patches on the status subresource); no
    ``podIP`` while the pod has no address yet."""
    spec = _spec(pod)
    old = pod.get("status") or {}
    addresses = {"podIP": pod_ip, "podIPs": [{"ip": pod_ip}]} if pod_ip else {}
    return {
        "phase": phase(pod, runs),
        "conditions": merge_conditions(old.get("conditions") or [], conditions(pod, runs), now),
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        **addresses,
        "startTime": old.get("startTime") or iso(start_time),
        "initContainerStatuses": [container_status(pod, c, runs.get(c["name"]), now, init=True)
                                  for c in spec.get("initContainers") or []],
        "containerStatuses": [container_status(pod, c, runs.get(c["name"]), now)
                              for c in spec.get("containers") or []],
    }


def _pruned(value: Any) -> Any:
    """``value`` without the empty strings and nulls the API server drops (``omitempty``)."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None and v != ""}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def status_differs(stored: dict[str, Any], computed: dict[str, Any]) -> bool:
    """Whether writing ``computed`` would change what is stored (only the keys the runner owns).

    >>> status_differs({"phase": "Running", "qosClass": "Burstable"}, {"phase": "Running"})
    False
    >>> status_differs({"conditions": [{"type": "Ready", "status": "True"}]},
    ...                {"conditions": [{"type": "Ready", "status": "True", "message": ""}]})
    False
    """
    return any(_pruned(stored.get(k)) != _pruned(v) for k, v in computed.items())


# --- termination -------------------------------------------------------------------------------------

DEFAULT_GRACE_S = 30.0


def kill_deadline(pod: dict[str, Any], now: float) -> float:
    """When a terminating pod's processes get SIGKILL: the deletion's grace period (or the pod's
    ``terminationGracePeriodSeconds``, default 30 s) after ``now``, preStop hooks included, as in the kubelet.

    >>> kill_deadline({"metadata": {"deletionGracePeriodSeconds": 5}, "spec": {}}, 100.0)
    105.0
    >>> kill_deadline({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 0}}, 100.0)
    100.0
    """
    grace = (pod.get("metadata") or {}).get("deletionGracePeriodSeconds")
    if grace is None:
        grace = _spec(pod).get("terminationGracePeriodSeconds")
    return now + float(DEFAULT_GRACE_S if grace is None else grace)


def pre_stop(container: Mapping[str, Any]) -> dict[str, Any] | None:
    """The container's ``lifecycle.preStop`` handler, if any."""
    return ((container.get("lifecycle") or {}).get("preStop")) or None


def sigterm_at(container: Mapping[str, Any], now: float, deadline: float) -> float:
    """When a container of a terminating pod gets SIGTERM: once its preStop ``sleep`` is over (at once without
    one; an ``httpGet`` hook is run by the runner before this time is reached), never after ``deadline``.

    >>> c = {"name": "triton", "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}}
    >>> sigterm_at(c, 100.0, 130.0), sigterm_at(c, 100.0, 102.0), sigterm_at({"name": "agent"}, 100.0, 130.0)
    (105.0, 102.0, 100.0)
    """
    hook = pre_stop(container) or {}
    seconds = float((hook.get("sleep") or {}).get("seconds", 0))
    return min(now + seconds, deadline)


# --- termination message ---------------------------------------------------------------------------

MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


def termination_message(file_text: str, log_tail: str, exit_code: int, policy: str) -> str:
    """The kubelet's rule: the termination-log file (4 KiB max); with ``FallbackToLogsOnError``, the
    last 80 lines / 2 KiB of the log when the file is empty and the container failed.

    >>> termination_message("", "a\\nb\\n", 1, "FallbackToLogsOnError"), termination_message("", "x", 1, "File")
    ('a\\nb\\n', '')
    """
    if file_text:
        return file_text.encode()[:MAX_MESSAGE_BYTES].decode(errors="ignore")
    if policy == "FallbackToLogsOnError" and exit_code != 0:
        tail = "".join(log_tail.splitlines(keepends=True)[-FALLBACK_LOG_LINES:])
        return tail.encode()[-FALLBACK_LOG_BYTES:].decode(errors="ignore")
    return ""
