"""Pod runner, kubelet rules: start order, restarts and back-off, probes, and the pod status written."""

import pytest

from modeldeploy.sandbox.podrunner import lifecycle
from modeldeploy.sandbox.podrunner.lifecycle import Run, exited, probed, started

TRITON = {"name": "triton", "image": "nvcr.io/nvidia/tritonserver:25.10-py3",
          "startupProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 5,
                           "failureThreshold": 3},
          "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5,
                             "failureThreshold": 3},
          "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 10,
                            "failureThreshold": 3}}
FETCH = {"name": "fetch-model", "image": "ghcr.io/modeldeploy/modeldeploy:0.1.0"}


def pod(policy="Always", init=(FETCH,), containers=(TRITON,), status=None, deleting=False):
    meta = {"name": "digits-abc", "namespace": "t-unit", "uid": "u1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-28T00:00:00Z"
    return {"metadata": meta, "spec": {"restartPolicy": policy, "initContainers": list(init),
                                       "containers": list(containers)}, "status": status or {}}


def ok_init():
    return exited(started(Run("fetch-model"), 0), 0, "Completed", "", 1, "Always", init=True)


def failed_init(policy="Always", crashes=1, code=2, msg="NotFound: https://x/model.onnx: HTTP 404"):
    run = Run("fetch-model")
    t = 0.0
    for _ in range(crashes):
        run = exited(started(run, t), code, "Error", msg, t + 1, policy, init=True)
        t += 1
    return run


def ready_triton(at=10.0):
    run = started(Run("triton"), at)
    run = probed(TRITON, run, "startup", True, at + 1)
    return probed(TRITON, run, "readiness", True, at + 1)


# --- which containers start ----------------------------------------------------------------------------

@pytest.mark.parametrize("case,p,runs,now,expected", [
    ("fresh pod: first init container", pod(), {}, 0, ["fetch-model"]),
    ("init running: wait", pod(), {"fetch-model": started(Run("fetch-model"), 0)}, 1, []),
    ("init done: app containers", pod(), {"fetch-model": ok_init()}, 2, ["triton"]),
    ("no init containers", pod(init=()), {}, 0, ["triton"]),
    ("two init containers in order", pod(init=(FETCH, {"name": "second", "image": "x/modeldeploy"})),
     {"fetch-model": ok_init()}, 2, ["second"]),
    ("init failed once: immediate restart", pod(), {"fetch-model": failed_init()}, 1, ["fetch-model"]),
    ("init failed twice: back-off 10 s not over", pod(), {"fetch-model": failed_init(crashes=2)}, 5, []),
    ("init failed twice: back-off over", pod(), {"fetch-model": failed_init(crashes=2)}, 12.1, ["fetch-model"]),
    ("init failed, policy Never: nothing more", pod("Never"), {"fetch-model": failed_init("Never")}, 99, []),
    ("cannot start: nothing", pod(), {"fetch-model": lifecycle.cannot_start(Run("fetch-model"), "ErrImageNeverPull", "x")},
     9, []),
    ("app running: nothing", pod(), {"fetch-model": ok_init(), "triton": started(Run("triton"), 2)}, 3, []),
    ("app crashed, Always: restart", pod(), {"fetch-model": ok_init(),
                                             "triton": exited(started(Run("triton"), 2), 1, "Error", "", 3, "Always")},
     3, ["triton"]),
    ("app exited 0, OnFailure: done", pod("OnFailure"),
     {"fetch-model": ok_init(), "triton": exited(started(Run("triton"), 2), 0, "Completed", "", 3, "OnFailure")},
     99, []),
    ("deleting: nothing starts", pod(deleting=True), {}, 0, []),
])
def test_next_starts(case, p, runs, now, expected):
    assert lifecycle.next_starts(p, runs, now) == expected, case


@pytest.mark.parametrize("crashes,delays", [(5, [0.0, 10.0, 20.0, 40.0, 80.0]), (9, [0, 10, 20, 40, 80, 160, 300, 300, 300])])
def test_crash_loop_back_off(crashes, delays):
    run, t, seen = Run("triton"), 0.0, []
    for _ in range(crashes):
        run = exited(started(run, t), 1, "Error", "", t + 1, "Always")
        seen.append(run.next_start_at - run.terminated.finished_at)
        t = run.next_start_at
    assert seen == delays
    assert run.restart_count == crashes - 1


def test_back_off_resets_after_a_long_healthy_run():
    run = exited(started(Run("t"), 0), 1, "Error", "", 1, "Always")
    run = exited(started(run, 1), 1, "Error", "", 2, "Always")
    assert run.next_start_at == 12
    run = exited(started(run, 12), 1, "Error", "", 12 + lifecycle.BACKOFF_RESET_S, "Always")
    assert run.next_start_at == run.terminated.finished_at


# --- probes ----------------------------------------------------------------------------------------------

def test_startup_probe_gates_readiness_and_liveness():
    run = started(Run("triton"), 0)
    assert lifecycle.probe_due(TRITON, run, "startup", 0)
    assert not lifecycle.probe_due(TRITON, run, "readiness", 0)
    assert not lifecycle.probe_due(TRITON, run, "liveness", 0)
    run = probed(TRITON, run, "startup", True, 0)
    assert not lifecycle.probe_due(TRITON, run, "startup", 100)
    assert lifecycle.probe_due(TRITON, run, "readiness", 0)
    assert lifecycle.probe_due(TRITON, run, "liveness", 0)


@pytest.mark.parametrize("results,ready", [
    ([], False),
    ([True], True),
    ([True, False], True),          # one failure is below failureThreshold 3
    ([True, False, False, False], False),
    ([False, False, False, True], True),
])
def test_readiness_verdict(results, ready):
    run = probed(TRITON, started(Run("triton"), 0), "startup", True, 0)
    for i, result in enumerate(results):
        run = probed(TRITON, run, "readiness", result, 5.0 * i)
    assert lifecycle.container_ready(TRITON, run) is ready


def test_probe_period_and_initial_delay():
    c = {"name": "c", "readinessProbe": {"initialDelaySeconds": 3, "periodSeconds": 5}}
    run = started(Run("c"), 10)
    assert [lifecycle.probe_due(c, run, "readiness", t) for t in (12, 13)] == [False, True]
    run = probed(c, run, "readiness", False, 13)
    assert [lifecycle.probe_due(c, run, "readiness", t) for t in (17, 18)] == [False, True]


@pytest.mark.parametrize("kind,failures,kill", [
    ("liveness", 2, None), ("liveness", 3, "liveness probe failed 3 times"),
    ("startup", 3, "startup probe failed 3 times"),
])
def test_must_kill(kind, failures, kill):
    run = started(Run("triton"), 0)
    if kind == "liveness":
        run = probed(TRITON, run, "startup", True, 0)
    for i in range(failures):
        run = probed(TRITON, run, kind, False, i)
    assert lifecycle.must_kill(TRITON, run) == kill


def test_container_without_probes_is_ready_when_running():
    c = {"name": "c"}
    assert lifecycle.container_ready(c, started(Run("c"), 0))
    assert not lifecycle.container_ready(c, None)


# --- status ----------------------------------------------------------------------------------------------

def conds(status):
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_fresh_pod_is_pending_with_containers_waiting():
    s = lifecycle.pod_status(pod(), {}, 5, 0)
    assert s["phase"] == "Pending"
    assert conds(s) == {"PodReadyToStartContainers": "True", "Initialized": "False", "Ready": "False",
                        "ContainersReady": "False"}
    assert s["initContainerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert s["podIP"] == "127.0.0.1" and s["startTime"] == "1970-01-01T00:00:00Z"


def test_init_error_shows_exit_code_and_termination_message():
    s = lifecycle.pod_status(pod(), {"fetch-model": failed_init()}, 1, 0)
    st = s["initContainerStatuses"][0]
    assert s["phase"] == "Pending"
    assert st["state"]["terminated"]["reason"] == "Error"          # kubectl: Init:Error
    assert st["state"]["terminated"]["exitCode"] == 2
    assert st["state"]["terminated"]["message"] == "NotFound: https://x/model.onnx: HTTP 404"
    cond = next(c for c in s["conditions"] if c["type"] == "Initialized")
    assert cond["reason"] == "ContainersNotInitialized" and "fetch-model" in cond["message"]


def test_init_crash_loop_keeps_the_failure_in_last_state():
    s = lifecycle.pod_status(pod(), {"fetch-model": failed_init(crashes=3)}, 4, 0)
    st = s["initContainerStatuses"][0]
    assert st["state"]["waiting"]["reason"] == "CrashLoopBackOff"  # kubectl: Init:CrashLoopBackOff
    assert "back-off 20s" in st["state"]["waiting"]["message"]
    assert st["lastState"]["terminated"]["exitCode"] == 2
    assert st["restartCount"] == 2


def test_init_failure_with_restart_policy_never_fails_the_pod():
    s = lifecycle.pod_status(pod("Never"), {"fetch-model": failed_init("Never")}, 5, 0)
    assert s["phase"] == "Failed"
    assert s["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 2


@pytest.mark.parametrize("case,runs,phase,ready", [
    ("triton starting", {"fetch-model": ok_init(), "triton": started(Run("triton"), 2)}, "Running", "False"),
    ("triton live, not ready", {"fetch-model": ok_init(),
                                "triton": probed(TRITON, started(Run("triton"), 2), "startup", True, 3)},
     "Running", "False"),
    ("triton ready", {"fetch-model": ok_init(), "triton": ready_triton()}, "Running", "True"),
    ("triton crashed, restart due", {"fetch-model": ok_init(),
                                     "triton": exited(ready_triton(), 1, "Error", "", 20, "Always")},
     "Running", "False"),
])
def test_running_phases_and_readiness(case, runs, phase, ready):
    s = lifecycle.pod_status(pod(), runs, 20, 0)
    assert (s["phase"], conds(s)["Ready"], conds(s)["Initialized"]) == (phase, ready, "True"), case
    assert s["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert s["containerStatuses"][0]["ready"] is (ready == "True")


def test_restarted_container_reports_count_and_last_state():
    run = exited(ready_triton(), 137, "Error", "", 20, "Always")
    run = started(run, 20, pid=4242)
    st = lifecycle.pod_status(pod(), {"fetch-model": ok_init(), "triton": run}, 21, 0)["containerStatuses"][0]
    assert st["restartCount"] == 1 and st["containerID"] == "podrunner://4242"
    assert st["lastState"]["terminated"]["exitCode"] == 137
    assert "running" in st["state"] and st["ready"] is False and st["started"] is False


@pytest.mark.parametrize("policy,code,phase", [("Never", 0, "Succeeded"), ("Never", 1, "Failed"),
                                               ("OnFailure", 0, "Succeeded")])
def test_completed_pods(policy, code, phase):
    job = {"name": "job", "image": "x/modeldeploy:1"}
    runs = {"job": exited(started(Run("job"), 0), code, "Completed" if code == 0 else "Error", "", 1, policy)}
    s = lifecycle.pod_status(pod(policy, init=(), containers=(job,)), runs, 2, 0)
    assert s["phase"] == phase
    assert next(c for c in s["conditions"] if c["type"] == "Ready")["reason"] == "PodCompleted"


def test_unrunnable_container_waits_with_reason():
    runs = {"fetch-model": lifecycle.cannot_start(Run("fetch-model"), "ErrImageNeverPull", "image 'x'")}
    st = lifecycle.pod_status(pod(), runs, 1, 0)["initContainerStatuses"][0]
    assert st["state"] == {"waiting": {"reason": "ErrImageNeverPull", "message": "image 'x'"}}


def test_conditions_keep_transition_time_and_scheduler_condition():
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    first = lifecycle.pod_status(pod(status={"conditions": [scheduled]}), {}, 100, 0)
    p = pod(status=first)
    again = lifecycle.pod_status(p, {"fetch-model": started(Run("fetch-model"), 150)}, 200, 0)
    by_type = {c["type"]: c for c in again["conditions"]}
    assert by_type["PodScheduled"] == scheduled
    assert by_type["Ready"]["lastTransitionTime"] == lifecycle.iso(100)
    assert not lifecycle.status_differs(first, lifecycle.pod_status(p, {}, 300, 0))
    ready = lifecycle.pod_status(p, {"fetch-model": ok_init(), "triton": ready_triton()}, 400, 0)
    assert {c["type"]: c for c in ready["conditions"]}["Ready"]["lastTransitionTime"] == lifecycle.iso(400)
    assert lifecycle.status_differs(first, ready)


@pytest.mark.parametrize("file_text,log,code,policy,expected", [
    ("NotFound: 404\n", "noise", 1, "File", "NotFound: 404\n"),
    ("", "line\n" * 100, 1, "FallbackToLogsOnError", "line\n" * 80),
    ("", "boom", 0, "FallbackToLogsOnError", ""),
    ("x" * 5000, "", 1, "File", "x" * 4096),
    ("", "y" * 3000, 1, "FallbackToLogsOnError", "y" * 2048),
])
def test_termination_message(file_text, log, code, policy, expected):
    assert lifecycle.termination_message(file_text, log, code, policy) == expected
