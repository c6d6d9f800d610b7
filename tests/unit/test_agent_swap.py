"""The model agent's swap state machine against a fake Triton that keeps Triton's rules (agent.swap's doc):

- a load call names the versions to serve; each is loaded from what the repository holds for it;
- if every named version loads, they become READY and every other READY version is unloaded, in one
  step (never a moment without a READY version: the fake asserts it after every change);
- if one fails, the versions that served keep serving and the failed one keeps an UNAVAILABLE record
  with the error as reason, which only a successful load of that number clears.
"""

import doctest

import pytest

from modeldeploy.agent import swap
from modeldeploy.agent.swap import (FAILED, READY, STARTING, SWAPPING, ModelRef, Origin, Swapper, Timeouts,
                                    TritonError)
from modeldeploy.fetch.errors import SourceError

NAME = "digits"
V1 = ModelRef(1, "s3://models/digits/1.onnx", "11" * 32)
V2 = ModelRef(2, "s3://models/digits/2.onnx")
V3 = ModelRef(3, "s3://models/digits/3.onnx")
V4 = ModelRef(4, "s3://models/digits/4.onnx")
CONFIG = {"name": NAME, "backend": "onnxruntime", "max_batch_size": 8,
          "version_policy": {"specific": {"versions": [1]}},
          "input": [{"name": "input", "dims": [1, 8, 8]}], "output": [{"name": "probs", "dims": [10]}]}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class FakeRepository:
    """Version folder -> the uri its files came from."""

    def __init__(self, files=None, fail_fetch=(), on_fetch=None):
        self.files = dict(files or {})
        self.fail_fetch = set(fail_fetch)
        self.on_fetch = on_fetch or (lambda ref: None)
        self.record = None
        self.fetched = []

    def fetch(self, ref):
        self.fetched.append(ref.version)
        self.on_fetch(ref)
        if ref.uri in self.fail_fetch:
            raise SourceError(f"GET {ref.uri}: 403 Forbidden")
        self.files[ref.version] = ref.uri
        return "ab" * 32

    def prepare(self, version):
        assert version in self.files

    def copy_version(self, source, target):
        self.files[target] = self.files[source]

    def remove_version(self, version):
        self.files.pop(version, None)

    def sha256(self, version):
        uri = self.files.get(version)
        return None if uri is None else V1.sha256 if uri == V1.uri else "ff" * 32

    def load_record(self):
        return self.record

    def save_record(self, ref):
        self.record = ref


class FakeTriton:
    def __init__(self, repository, ready=(1,), bad=(), slow=(), fail_loads_after=None, down=False):
        self.repository = repository
        self.states = {v: ("READY", "") for v in ready}
        self.bad, self.slow = set(bad), set(slow)   # uris whose files fail to load / never get ready
        self.fail_loads_after = fail_loads_after    # every load after this many fails (repair fails)
        self.down = down
        self.loads = []                             # (versions, uris) per load call
        self.configs = []

    def _check(self):
        assert any(s == "READY" for s, _ in self.states.values()), f"no version READY: {self.states}"

    def ready(self):
        return sorted(v for v, (s, _) in self.states.items() if s == "READY")

    def version_states(self, name):
        assert name == NAME
        if self.down:
            raise TritonError("connection refused")
        return dict(self.states)

    def served_config(self, name):
        return dict(CONFIG)

    def is_ready(self, name, version):
        return self.states.get(version, ("", ""))[0] == "READY"

    def load(self, name, config):
        versions = config["version_policy"]["specific"]["versions"]
        uris = [self.repository.files.get(v) for v in versions]
        self.loads.append((versions, uris))
        self.configs.append(config)
        if self.fail_loads_after is not None and len(self.loads) > self.fail_loads_after:
            raise TritonError("load failed for model 'digits': out of memory")
        for v, uri in zip(versions, uris):
            if uri is None or uri in self.bad:
                self.states[v] = ("UNAVAILABLE", f"Internal: cannot load {uri}\nAt:\n  model.py(1)")
                self._check()
                raise TritonError(f"load failed for model '{name}': version {v} is at UNAVAILABLE state: "
                                  f"Internal: cannot load {uri}\nAt:\n  model.py(1)")
            if uri in self.slow:
                self.states[v] = ("LOADING", "")
                self._check()
                return
        for v, (state, _) in list(self.states.items()):
            if state == "READY" and v not in versions:
                self.states[v] = ("UNAVAILABLE", "unloaded")
        for v in versions:
            self.states[v] = ("READY", "")
        self._check()


def make(files=None, origin=Origin(V1.uri, V1.sha256, 1), **triton_kw):
    fetch_kw = {k: triton_kw.pop(k) for k in ("fail_fetch", "on_fetch") if k in triton_kw}
    repo = FakeRepository(files if files is not None else {1: V1.uri}, **fetch_kw)
    triton = FakeTriton(repo, **triton_kw)
    clock = Clock()
    swapper = Swapper(NAME, triton, repo, origin=origin, clock=clock, sleep=clock.sleep,
                      timeouts=Timeouts(ready=30, unload=10, poll=1))
    return swapper, triton, repo, clock


def test_docstring_examples():
    assert doctest.testmod(swap).failed == 0


# --- one swap, every outcome ------------------------------------------------------------------------

@pytest.mark.parametrize("case,kw,state,message,files,ready,loads", [
    ("success", {}, READY, "serving version 2 (swapped from 1 in",
     {2: V2.uri}, [2], [[2]]),
    ("fetch fails", {"fail_fetch": {V2.uri}}, FAILED,
     "fetch of version 2 failed: SourceError: GET s3://models/digits/2.onnx: 403 Forbidden; still serving version 1",
     {1: V1.uri}, [1], []),
    ("load fails", {"bad": {V2.uri}}, FAILED,
     "load of version 2 failed: load failed for model 'digits': version 2 is at UNAVAILABLE state: "
     "Internal: cannot load s3://models/digits/2.onnx; still serving version 1",
     {1: V1.uri}, [1], [[2], [2], [1]]),
    ("never ready", {"slow": {V2.uri}}, FAILED,
     "version 2 not ready within 30s; still serving version 1",
     {1: V1.uri}, [1], [[2], [2], [1]]),
    ("load fails, repair fails", {"bad": {V2.uri}, "fail_loads_after": 1}, FAILED,
     "load of version 2 failed: load failed for model 'digits': version 2 is at UNAVAILABLE state: "
     "Internal: cannot load s3://models/digits/2.onnx; still serving version 1; clearing Triton's record of "
     "version 2 failed (load failed for model 'digits': out of memory), so /v2/health/ready may report not "
     "ready until Triton restarts",
     {1: V1.uri}, [1], [[2], [2]]),
])
def test_swap_outcomes(case, kw, state, message, files, ready, loads):
    swapper, triton, repo, clock = make(**kw)
    assert swapper.observe()
    assert swapper.submit(V2).status == 202
    assert swapper.state == SWAPPING
    assert swapper.step() is True
    snap = swapper.snapshot()
    assert (snap["state"], snap["message"][:len(message)]) == (state, message)
    assert "\n" not in snap["message"]
    assert repo.files == files
    assert triton.ready() == ready == snap["loadedVersions"]
    assert [versions for versions, _ in triton.loads] == loads
    if state == FAILED:
        # the old version kept serving, and the failed one is no longer a record that breaks readiness
        assert snap["served"] == V1.as_json() and snap["desired"] == V2.as_json()
        assert repo.record is None
        if case != "load fails, repair fails":
            assert not swap.sticky_failure(triton.states, 2)
    else:
        assert snap["served"] == {"version": 2, "uri": V2.uri, "sha256": "ab" * 32} == snap["desired"]
        assert repo.record == ModelRef(2, V2.uri, "ab" * 32)
        assert triton.states[1] == ("UNAVAILABLE", "unloaded")


def test_the_snapshot_after_a_swap_is_consistent_before_the_next_observation(monkeypatch):
    """A reader polling GET /v1/model between the end of a swap and the worker's next look at Triton saw
    state Ready with version 2 served but loadedVersions still [1] (a real Triton under load hit it)."""
    swapper, triton, _, _ = make()
    swapper.observe()
    swapper.submit(V2)
    monkeypatch.setattr(swapper, "observe", lambda: True)  # the moment before the worker looks again
    swapper.step()
    snap = swapper.snapshot()
    assert (snap["state"], snap["served"]["version"], snap["loadedVersions"]) == (READY, 2, [2])


def test_repair_loads_a_copy_of_the_old_files_under_the_failed_number():
    swapper, triton, repo, _ = make(bad={V2.uri})
    swapper.observe()
    swapper.submit(V2)
    swapper.step()
    assert triton.loads == [([2], [V2.uri]), ([2], [V1.uri]), ([1], [V1.uri])]
    assert triton.states[2] == ("UNAVAILABLE", "unloaded")


def test_a_repair_that_stops_half_way_reports_the_old_model_under_the_number_that_serves_it():
    swapper, triton, repo, _ = make(bad={V2.uri}, fail_loads_after=2)   # the copy loads, [1] fails
    swapper.observe()
    swapper.submit(V2)
    swapper.step()
    assert triton.ready() == [2] and repo.files == {1: V1.uri, 2: V1.uri}
    assert swapper.state == FAILED  # not Ready: version 2 answers with version 1's files
    assert swapper.served == ModelRef(2, V1.uri, V1.sha256)
    assert "; still serving version 2; clearing Triton's record of version 2 failed" in swapper.message


def test_load_config_is_the_served_one_without_io_and_with_the_new_version_only():
    swapper, triton, _, _ = make()
    swapper.observe()
    swapper.submit(V2)
    swapper.step()
    assert triton.configs == [{"name": NAME, "backend": "onnxruntime", "max_batch_size": 8,
                               "version_policy": {"specific": {"versions": [2]}}}]


# --- PUT semantics -----------------------------------------------------------------------------------

@pytest.mark.parametrize("put,status,pending", [
    (V1, 202, None),                                      # what is served: nothing to do
    (ModelRef(1, V1.uri), 202, None),                     # no sha256 given: matches any
    (ModelRef(1, "s3://models/digits/other.onnx"), 409, None),
    (ModelRef(1, V1.uri, "22" * 32), 409, None),
    (V2, 202, V2),
])
def test_put_is_idempotent_and_refuses_new_files_under_the_served_number(put, status, pending):
    swapper, triton, _, _ = make()
    swapper.observe()
    decision = swapper.submit(put)
    assert decision.status == status
    assert swapper.pending == pending
    if status == 409:
        assert decision.message.startswith("version 1 is served from s3://models/digits/1.onnx")
        assert decision.message.endswith("new files need a new version number")
    assert swapper.step() is (pending is not None)


def test_puts_during_a_swap_queue_the_latest_and_ignore_repeats_of_the_running_one():
    decisions = []

    def during_fetch(ref):
        if ref.version == 2:
            decisions.extend([swapper.submit(V2), swapper.submit(V3), swapper.submit(V4),
                              swapper.submit(ModelRef(2, "s3://elsewhere/2.onnx"))])
            assert swapper.state == SWAPPING and swapper.desired == V4

    swapper, triton, repo, _ = make(on_fetch=during_fetch)
    swapper.observe()
    swapper.submit(V2)
    assert swapper.step()
    assert [d.status for d in decisions] == [202, 202, 202, 409]
    assert swapper.served.version == 2 and swapper.pending == V4 and swapper.state == SWAPPING
    assert swapper.step()
    assert swapper.served.version == 4 and swapper.state == READY
    assert repo.fetched == [2, 4]                          # 3 was overtaken before it started
    assert repo.files == {4: V4.uri} and triton.ready() == [4]
    assert swapper.step() is False


def test_put_of_the_running_target_drops_a_queued_one():
    def during_fetch(ref):
        if ref.version == 2:
            swapper.submit(V3)
            swapper.submit(V2)  # changed its mind back

    swapper, _, repo, _ = make(on_fetch=during_fetch)
    swapper.observe()
    swapper.submit(V2)
    swapper.step()
    assert swapper.pending is None and swapper.state == READY and repo.fetched == [2]


def test_a_failed_target_is_retried_after_a_backoff_and_putting_the_served_model_clears_failed():
    swapper, triton, repo, clock = make(fail_fetch={V2.uri})
    swapper.observe()
    swapper.submit(V2)
    swapper.step()
    assert swapper.state == FAILED
    assert swapper.submit(V2).status == 202 and swapper.pending is None   # every reconcile PUTs it
    clock.now += 61
    swapper.submit(V2)
    assert swapper.pending == V2
    swapper.step()
    assert swapper.failures == 2 and repo.fetched == [2, 2]
    clock.now += 61
    swapper.submit(V2)
    assert swapper.pending is None                                        # now 120 s
    swapper.submit(V1)
    assert (swapper.state, swapper.message, swapper.desired) == (READY, "serving version 1", V1)


# --- startup -----------------------------------------------------------------------------------------

def test_starting_until_triton_serves_then_served_comes_from_triton_and_the_init_container_args():
    swapper, triton, _, _ = make(down=True)
    assert swapper.submit(V2).status == 202          # queued while Starting
    assert swapper.observe() is False and swapper.state == STARTING and swapper.step() is False
    triton.down = False
    assert swapper.observe()
    assert swapper.snapshot() == {"name": NAME, "served": V1.as_json(), "desired": V2.as_json(),
                                  "state": SWAPPING, "message": "serving version 1", "loadedVersions": [1]}
    assert swapper.step() and swapper.served.version == 2


@pytest.mark.parametrize("record,origin,served", [
    (None, Origin(V1.uri, None, 1), V1),                   # sha256 from the file on disk
    (None, Origin(V1.uri, None, None), V1),                # no --version: trust --uri
    (None, Origin(V1.uri, None, 7), ModelRef(1, None, V1.sha256)),   # --uri is for another version
    (ModelRef(1, "s3://swapped/1.onnx", "cc" * 32), Origin(V3.uri, None, 3), ModelRef(1, "s3://swapped/1.onnx", "cc" * 32)),
])
def test_served_uri_after_an_agent_restart(record, origin, served):
    swapper, _, repo, _ = make(origin=origin)
    repo.record = record
    swapper.observe()
    assert swapper.served == served


def test_a_put_of_the_served_version_teaches_an_agent_that_did_not_know_its_uri():
    swapper, _, _, _ = make(origin=Origin())
    swapper.observe()
    assert swapper.served == ModelRef(1, None, V1.sha256)
    assert swapper.submit(ModelRef(1, V1.uri, "22" * 32)).status == 409   # other files than on disk
    assert swapper.submit(ModelRef(1, V1.uri)).status == 202 and swapper.pending is None
    assert swapper.served == V1


def test_observe_follows_a_triton_restart_that_serves_another_version():
    swapper, triton, repo, _ = make(files={1: V1.uri, 3: V3.uri})
    swapper.observe()
    triton.states = {3: ("READY", "")}
    repo.record = V3
    swapper.observe()
    assert swapper.served == V3 and swapper.snapshot()["loadedVersions"] == [3]
