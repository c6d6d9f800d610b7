"""The swap state machine: which model version the pod serves, which one it should, and how to get there.

The procedure, and why it is this one (measured on Triton 2.51, the nvidia-pytriton wheel's CPU build,
explicit model control, ``--strict-readiness=true``, 3 threads sending requests without a version;
docs/architecture.md has the numbers):

1. **Fetch** the new version into ``<repository>/<name>/<new>/`` with the ``fetch`` package (staging
   folder + rename, so Triton never sees half a model). Triton is not touched yet.
2. **One load call** with a config override: the served config as Triton reports it
   (``get_model_config``: config.pbtxt plus what Triton auto-completed), without ``input``/``output``
   (so a new version with another signature completes its own, as config.pbtxt leaves them out too),
   with ``version_policy: {specific: {versions: [new]}}``. Triton loads ``new`` while ``old`` stays
   READY and serves every request; when ``new`` is ready it becomes the target of version-less requests
   and ``old`` is unloaded, both under one lock (``model_lifecycle.cc``: ``OnLoadComplete``), so no
   request finds no version. Measured (tests/unit/test_agent_triton.py, 3 runs): 0 failed of 5,800 to
   6,300 requests from PUT to Ready (3.2-3.4 s), none slower than 0.05 s.

   Rejected: loading ``[old, new]`` first and ``[new]`` second. Also 0 failures, but every load
   call re-creates *every* version in its policy (``AsyncLoad`` makes a new ModelInfo per version;
   a READY one is re-loaded in the background; Triton's log shows ``loading: digits:1`` and
   ``loading: digits:2`` for the first call, ``loading: digits:2`` again for the second): three loads
   instead of one, and three copies of the model in memory at the peak instead of two.
3. **Wait** until ``is_model_ready(name, new)``, then until ``old`` is unloaded, then delete
   ``<name>/<old>/``, and record what is served (``<name>/.agent-served.json``) so an agent restart
   knows the uri behind the version.

On failure (fetch error, load error, not ready in time) the old version keeps serving: Triton leaves a
loaded model untouched when loading another version fails. What Triton does keep is the failed
version's record (UNAVAILABLE with the error as reason), and with ``--strict-readiness`` that alone
makes ``/v2/health/ready`` answer 400 for as long as Triton runs: the pod would drop out of its
Service for good. Triton cannot unload one version of a model, and re-loading ``[old]`` does not
clear the record (measured). What clears it is a *successful* load of that version number, so the
failure path **repairs**: it puts a copy of the old version's files under the failed number, loads
``[failed]`` (the old model under the failed number takes over, no gap), then ``[old]`` (the record
of the failed number becomes "unloaded", which strict readiness accepts), and deletes the copy. For
a moment responses carry the failed version number while the old model answers them; their content
is the old model's. Then the state is Failed with a one-line message, which the operator puts in
the ModelDeployment's status.

Files changed under the same version number (same ``version``, other ``uri`` or ``sha256``) are
refused (409): Triton would have to reload the version in place, and a failure would leave the
repository holding files that no longer match what is served. A new version number is cheap. An
agent that does not know the uri behind the served version (no ``--uri``, no record) adopts the uri of
the first PUT of that version whose sha256 (if given) matches the file on disk.

A failed target is not retried by PUTting it again right away (the operator PUTs on every
reconcile): only after a backoff (1 min, doubling per consecutive failure, at most 15 min), or when
the desired model changes. PUTting the served model clears Failed.

Everything here is logic over two narrow ports, :class:`Triton` and :class:`Repository`, and a clock;
the adapters live in ``agent.triton`` and ``agent.repository``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Mapping, Protocol

from modeldeploy.fetch.errors import FetchError
from modeldeploy.fetch.uri import redact

log = logging.getLogger("modeldeploy.agent")

# --- the documented states --------------------------------------------------------------------------
#: The agent has not yet seen Triton serve any version of the model (Triton is starting).
STARTING = "Starting"
#: ``served`` is what Triton serves and no other model is wanted.
READY = "Ready"
#: A swap is running, or one is queued behind it. ``served`` keeps serving meanwhile.
SWAPPING = "Swapping"
#: The last swap failed (``message`` says which step and why); ``served`` is still served.
FAILED = "Failed"

#: Triton's version states that hold (or are about to hold, or still hold) a model in memory.
LIVE_STATES = frozenset({"READY", "LOADING", "UNLOADING"})
#: The reason Triton gives a version it unloaded on purpose; strict readiness ignores those.
UNLOADED_REASON = "unloaded"

MAX_MESSAGE = 400


class TritonError(Exception):
    """Triton refused or failed a call; ``str()`` is Triton's message (may span lines)."""


class RepositoryError(Exception):
    """The model repository folder could not be changed (copy, remove)."""


class Timeout(Exception):
    """A wait ran out."""


@dataclass(frozen=True)
class ModelRef:
    """One model version and where its files came from. ``sha256`` of the model file when known."""

    version: int
    uri: str | None
    sha256: str | None = None

    def same_files(self, other: "ModelRef") -> bool:
        """Same version from the same place; an unknown uri or sha256 on either side matches any.

        >>> ModelRef(2, "s3://b/m").same_files(ModelRef(2, "s3://b/m", "ab" * 32))
        True
        >>> ModelRef(2, "s3://b/m", "cd" * 32).same_files(ModelRef(2, "s3://b/m", "ab" * 32))
        False
        >>> ModelRef(2, "s3://b/m").same_files(ModelRef(2, None, "ab" * 32))
        True
        """
        return (self.version == other.version
                and (self.uri is None or other.uri is None or self.uri == other.uri)
                and (self.sha256 is None or other.sha256 is None or self.sha256 == other.sha256))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


VersionStates = Mapping[int, "tuple[str, str]"]
"""Triton's repository index for one model: version -> (state, reason)."""


class Triton(Protocol):
    """What the swap needs from Triton (adapter: ``agent.triton.TritonAdapter``)."""

    def version_states(self, name: str) -> VersionStates:
        """The model's versions Triton knows; raises TritonError when Triton does not answer."""

    def served_config(self, name: str) -> dict[str, Any]:
        """The model configuration Triton serves (config.pbtxt as auto-completed)."""

    def load(self, name: str, config: dict[str, Any]) -> None:
        """Load with this config override; returns when Triton finished; raises TritonError."""

    def is_ready(self, name: str, version: int) -> bool:
        ...


class Repository(Protocol):
    """What the swap needs from the model repository folder (adapter: ``agent.repository``)."""

    def fetch(self, ref: ModelRef) -> str | None:
        """Fetch ``ref`` into ``<name>/<version>/``; return the model file's sha256 (None for a folder
        model). Raises FetchError."""

    def prepare(self, version: int) -> None:
        """Whatever the local Triton needs next to the model file before loading (sandbox shim)."""

    def copy_version(self, source: int, target: int) -> None:
        """Make ``<name>/<target>/`` a copy of ``<name>/<source>/``, replacing it. Raises RepositoryError."""

    def remove_version(self, version: int) -> None:
        ...

    def sha256(self, version: int) -> str | None:
        """sha256 of the model file of a version on disk, None when unknown (folder model, missing)."""

    def load_record(self) -> ModelRef | None:
        """What the agent last recorded as served (survives agent restarts), or None."""

    def save_record(self, ref: ModelRef) -> None:
        ...


@dataclass(frozen=True)
class Timeouts:
    ready: float = 600.0     #: from the load call until the new version is ready (the load call included)
    unload: float = 120.0    #: until the old version is out of memory, before its folder is deleted
    poll: float = 0.2        #: interval of the ready/unload polls
    retry_first: float = 60.0   #: backoff before a failed target is retried when PUT again
    retry_max: float = 900.0


@dataclass(frozen=True)
class Decision:
    """The answer to a PUT: ``status`` 202 (accepted; maybe nothing to do) or 409 (conflict)."""

    status: int
    message: str = ""


@dataclass(frozen=True)
class Origin:
    """What the agent is told about the model the init container fetched (``--uri/--sha256/--version``)."""

    uri: str | None = None
    sha256: str | None = None
    version: int | None = None


def candidate_config(served: Mapping[str, Any], version: int) -> dict[str, Any]:
    """The config override that makes Triton serve exactly ``version`` (see the module doc).

    >>> candidate_config({"name": "d", "max_batch_size": 8, "input": [{}], "output": [{}],
    ...                   "version_policy": {"specific": {"versions": [1]}}}, 2)
    {'name': 'd', 'max_batch_size': 8, 'version_policy': {'specific': {'versions': [2]}}}
    """
    config = {k: v for k, v in served.items() if k not in ("input", "output", "version_policy")}
    config["version_policy"] = {"specific": {"versions": [version]}}
    return config


def ready_versions(states: VersionStates) -> list[int]:
    return sorted(v for v, (state, _) in states.items() if state == "READY")


def sticky_failure(states: VersionStates, version: int) -> bool:
    """True when Triton keeps a record of ``version`` that strict readiness counts as not ready.

    >>> sticky_failure({2: ("UNAVAILABLE", "Internal: bad protobuf")}, 2), sticky_failure({2: ("UNAVAILABLE", "unloaded")}, 2)
    (True, False)
    >>> sticky_failure({2: ("LOADING", "")}, 2), sticky_failure({}, 2)
    (True, False)
    """
    if version not in states:
        return False
    state, reason = states[version]
    return state != "READY" and reason != UNLOADED_REASON


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """The first line of ``text``, cut to ``limit`` characters (Triton errors carry Python tracebacks).

    >>> one_line("load failed: bad\\nAt:\\n  model.py(3)")
    'load failed: bad'
    """
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[:limit - 1] + "…"


def retry_delay(failures: int, timeouts: Timeouts) -> float:
    """Backoff before a target that failed ``failures`` times in a row may be tried again.

    >>> [retry_delay(n, Timeouts()) for n in (1, 2, 3, 5, 9)]
    [60.0, 120.0, 240.0, 900.0, 900.0]
    """
    return min(timeouts.retry_first * 2 ** max(failures - 1, 0), timeouts.retry_max)


class Swapper:
    """The agent's state and the swap procedure.

    Threads: the HTTP handlers call :meth:`snapshot` and :meth:`submit`; one worker thread calls
    :meth:`observe` and :meth:`step` (or :meth:`run`). Only the worker talks to Triton and the disk,
    so two swaps never overlap; the lock only guards the fields.
    """

    def __init__(self, name: str, triton: Triton, repository: Repository, *, origin: Origin = Origin(),
                 timeouts: Timeouts = Timeouts(), clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.name = name
        self.triton = triton
        self.repository = repository
        self.origin = origin
        self.timeouts = timeouts
        self.clock = clock
        self.sleep = sleep
        self._cond = threading.Condition()
        self._observed = False
        self.served: ModelRef | None = None
        self.loaded: list[int] = []
        self.active: ModelRef | None = None       # the swap running now
        self.pending: ModelRef | None = None      # the swap queued behind it (latest PUT wins)
        self.failed: ModelRef | None = None       # the target of the last swap, when it failed
        self.failures = 0                         # consecutive failures of ``failed``
        self.failed_at = 0.0
        self.message = "waiting for Triton to serve the model"

    # --- read by the API ---------------------------------------------------------------------------
    @property
    def state(self) -> str:
        if not self._observed:
            return STARTING
        if self.active or self.pending:
            return SWAPPING
        return FAILED if self.failed else READY

    @property
    def desired(self) -> ModelRef | None:
        return self.pending or self.active or self.failed or self.served

    def snapshot(self) -> dict[str, Any]:
        """The body of ``GET /v1/model``."""
        with self._cond:
            return {
                "name": self.name,
                "served": self.served.as_json() if self.served else None,
                "desired": self.desired.as_json() if self.desired else None,
                "state": self.state,
                "message": self.message,
                "loadedVersions": list(self.loaded),
            }

    # --- written by the API ------------------------------------------------------------------------
    def submit(self, ref: ModelRef) -> Decision:
        """Accept ``ref`` as the desired model, queue the work it needs (if any), or refuse it."""
        with self._cond:
            served, active = self.served, self.active
            if served and ref.version == served.version and not ref.same_files(served):
                return Decision(409, f"version {ref.version} is served from {redact(served.uri or '?')}"
                                     f"{_sha_note(served)}; new files need a new version number")
            if active and ref.version == active.version and not ref.same_files(active):
                return Decision(409, f"version {ref.version} is being loaded from {redact(active.uri or '?')}"
                                     f"{_sha_note(active)}; new files need a new version number")
            if active and ref.same_files(active):
                self.pending = None  # the swap that runs is the latest wish
                return Decision(202)
            if served and ref.same_files(served) and not active:
                self.pending = None
                if served.uri is None:  # started without knowing the uri (no --uri, no record): adopt it
                    self.served = replace(served, uri=ref.uri, sha256=served.sha256 or ref.sha256)
                if self.failed:
                    self.failed, self.failures = None, 0
                    self.message = f"serving version {served.version}"
                return Decision(202)
            if (self.failed and ref.same_files(self.failed) and not active
                    and self.clock() - self.failed_at < retry_delay(self.failures, self.timeouts)):
                self.pending = None
                return Decision(202)  # still Failed; tried again after the backoff
            self.pending = ref
            self._cond.notify_all()
            return Decision(202)

    # --- the worker --------------------------------------------------------------------------------
    def observe(self) -> bool:
        """Read what Triton serves; True once some version of the model is READY.

        ``served`` follows Triton: the highest READY version (where version-less requests go). Its uri
        comes from the agent's record when that names the same version, else from ``origin`` (the init
        container's model), else stays unknown.
        """
        try:
            states = self.triton.version_states(self.name)
        except TritonError as err:
            log.debug("Triton not answering: %s", one_line(str(err)))
            return False
        ready = ready_versions(states)
        with self._cond:
            self.loaded = ready
        if not ready:
            return False
        version = ready[-1]
        with self._cond:
            current = self.served
        if current is None or current.version != version:
            current = self._origin_of(version)
            log.info("Triton serves %s version %s (uri %s)", self.name, version, redact(current.uri or "unknown"))
        with self._cond:
            self.served = current
            if not self._observed:
                self._observed = True
                self.message = f"serving version {version}"
        return True

    def _origin_of(self, version: int) -> ModelRef:
        record = self.repository.load_record()
        if record and record.version == version:
            return record
        sha = self.repository.sha256(version)
        if self.origin.uri and self.origin.version in (None, version):
            return ModelRef(version, self.origin.uri, sha or self.origin.sha256)
        return ModelRef(version, None, sha)

    def step(self) -> bool:
        """Run the queued swap, if any (only after :meth:`observe` found the model served).
        Returns whether a swap ran."""
        with self._cond:
            if not self._observed or self.pending is None or self.served is None:
                return False
            target, self.pending, self.active = self.pending, None, self.pending
            old = self.served
            self.message = f"swapping version {old.version} -> {target.version}"
        started = self.clock()
        message: str | None = None
        if target.version == old.version:  # what is served changed under us (a Triton restart)
            served = old
            if not target.same_files(old):
                message = f"version {target.version} is served from other files; new files need a new version number"
        else:
            try:
                served, message = self._swap(old, target)
            except Exception as err:  # noqa: BLE001 - a bug must not kill the worker; report it
                log.exception("swap to version %s crashed", target.version)
                served, message = old, (f"swap to version {target.version} failed: unexpected "
                                        f"{type(err).__name__}: {err}; still serving version {old.version}")
        took = self.clock() - started
        try:  # what Triton has loaded now, published together with the outcome (one consistent snapshot)
            loaded: list[int] | None = ready_versions(self.triton.version_states(self.name))
        except TritonError:
            loaded = None
        with self._cond:
            self.active, self.served = None, served
            if loaded is not None:
                self.loaded = loaded
            if message is None:
                self.failed, self.failures = None, 0
                self.message = f"serving version {target.version} (swapped from {old.version} in {took:.1f}s)"
            else:
                self.failures = self.failures + 1 if self.failed == target else 1
                self.failed, self.failed_at = target, self.clock()
                self.message = one_line(message)
        log.info("%s", self.message)
        self.observe()
        return True

    def wait_for_work(self, timeout: float) -> None:
        with self._cond:
            if self.pending is None:
                self._cond.wait(timeout)

    def run(self, stop: threading.Event, refresh: float = 10.0) -> None:
        """The worker loop: observe until Triton serves the model, then run swaps as they come and
        re-observe every ``refresh`` seconds (a Triton restart changes what is served)."""
        while not stop.is_set():
            try:
                if not self._observed:
                    if not self.observe():
                        stop.wait(1.0)
                    continue
                if not self.step():
                    self.wait_for_work(refresh)
                    if self.pending is None:
                        self.observe()
            except Exception:  # noqa: BLE001 - keep the worker alive; the log has the traceback
                log.exception("agent worker")
                stop.wait(1.0)

    # --- the procedure -----------------------------------------------------------------------------
    def _wait(self, what: str, predicate: Callable[[], bool], timeout: float) -> None:
        deadline = self.clock() + timeout
        while not predicate():
            if self.clock() >= deadline:
                raise Timeout(f"{what} within {timeout:g}s")
            self.sleep(self.timeouts.poll)

    def _swap(self, old: ModelRef, target: ModelRef) -> tuple[ModelRef, str | None]:
        """Serve ``target`` instead of ``old``. Returns what is served afterwards and, when the swap
        failed, the message saying why."""
        name, v = self.name, target.version
        try:
            sha = self.repository.fetch(target)
        except FetchError as err:
            self.repository.remove_version(v)
            return old, (f"fetch of version {v} failed: {type(err).__name__}: {one_line(str(err))}; "
                         f"still serving version {old.version}")
        new = replace(target, sha256=sha or target.sha256)
        config = None
        try:
            self.repository.prepare(v)
            config = self.triton.served_config(name)
            self.triton.load(name, candidate_config(config, v))
            self._wait(f"version {v} not ready", lambda: self.triton.is_ready(name, v), self.timeouts.ready)
        except (TritonError, Timeout, RepositoryError) as err:
            cause = (f"load of version {v} failed: {one_line(str(err))}" if isinstance(err, TritonError)
                     else one_line(str(err)))
            return self._recover(old, v, cause, config)
        try:
            self._wait(f"version {old.version} not unloaded", lambda: self._gone(old.version),
                       self.timeouts.unload)
        except Timeout as err:  # it is not served any more; its files may go
            log.warning("%s; deleting its folder anyway", err)
        self.repository.remove_version(old.version)
        try:
            self.repository.save_record(new)
        except RepositoryError as err:  # the swap is done; only an agent restart would miss the uri
            log.warning("%s", err)
        return new, None

    def _gone(self, version: int) -> bool:
        state = self.triton.version_states(self.name).get(version)
        return state is None or state[0] not in LIVE_STATES

    def _recover(self, old: ModelRef, failed: int, cause: str, config: dict[str, Any] | None) -> tuple[ModelRef, str]:
        """After a failed load: the old version still serves; clear the failed version's record
        (module doc, "repairs") and its folder. Returns (what is served, message)."""
        name = self.name
        try:
            states = self.triton.version_states(name)
            if sticky_failure(states, failed):
                config = config or self.triton.served_config(name)
                self.repository.copy_version(old.version, failed)
                self.repository.prepare(failed)
                self.triton.load(name, candidate_config(config, failed))
                self.triton.load(name, candidate_config(config, old.version))
                self._wait(f"version {old.version} not ready", lambda: self.triton.is_ready(name, old.version),
                           self.timeouts.ready)
                self._wait(f"version {failed} not unloaded", lambda: self._gone(failed), self.timeouts.unload)
        except (TritonError, Timeout, RepositoryError) as err:
            return self._after_failed_repair(old, failed, cause, one_line(str(err)))
        self.repository.remove_version(failed)
        return old, f"{cause}; still serving version {old.version}"

    def _after_failed_repair(self, old: ModelRef, failed: int, cause: str, why: str) -> tuple[ModelRef, str]:
        """The repair failed too: report what Triton serves now, keep the files of every READY version."""
        try:
            ready = ready_versions(self.triton.version_states(self.name))
        except TritonError:
            ready = []
        if failed not in ready:
            self.repository.remove_version(failed)
        served = old if not ready or old.version in ready else replace(old, version=ready[-1])
        return served, (f"{cause}; still serving version {served.version}; clearing Triton's record of version "
                        f"{failed} failed ({why}), so /v2/health/ready may report not ready until Triton restarts")


def _sha_note(ref: ModelRef) -> str:
    return f" (sha256 {ref.sha256[:12]}…)" if ref.sha256 else ""
