"""Status policy, table-driven: observed Deployment -> phase and kstatus conditions."""

from datetime import datetime, timedelta, timezone

import pytest

from modeldeploy.policy.status import Observation, compute_status, status_changed, transition_event

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def dep(gen=1, observed=1, replicas=2, updated=2, ready=2, available=2, progressing_reason=None):
    status = {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
              "readyReplicas": ready, "availableReplicas": available}
    if progressing_reason:
        status["conditions"] = [{"type": "Progressing", "status": "False", "reason": progressing_reason}]
    return {"metadata": {"generation": gen}, "status": status}


def obs(deployment, want=2, **kw):
    return Observation(generation=3, desired_replicas=want, revision="abc", deployment_name="m-stable",
                       deployment=deployment, **kw)


def conds(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


@pytest.mark.parametrize("observation,phase,ready,reconciling,stalled", [
    (obs(None), "Pending", ("False", "Creating"), ("True", "Creating"), ("False", "Creating")),
    (obs(dep()), "Ready", ("True", "Available"), ("False", "Available"), ("False", "Available")),
    (obs(dep(gen=2, observed=1)), "Progressing", ("False", "RollingOut"), ("True", "RollingOut"),
     ("False", "RollingOut")),
    (obs(dep(replicas=3, updated=1, ready=2, available=2)), "Progressing", ("False", "RollingOut"),
     ("True", "RollingOut"), ("False", "RollingOut")),
    (obs(dep(replicas=2, updated=2, ready=1, available=1)), "Progressing", ("False", "Scaling"),
     ("True", "Scaling"), ("False", "Scaling")),
    (obs(dep(replicas=2, updated=2, ready=0, available=0)), "Progressing", ("False", "Scaling"),
     ("True", "Scaling"), ("False", "Scaling")),
    (obs(dep(replicas=2, updated=2, ready=0, available=0),
         pod_problem=("Unschedulable", "pods unschedulable: 0/4 nodes are available")),
     "Progressing", ("False", "Unschedulable"), ("True", "Unschedulable"), ("False", "Unschedulable")),
    (obs(dep(available=1, progressing_reason="ProgressDeadlineExceeded")), "Failed",
     ("False", "ProgressDeadlineExceeded"), ("False", "ProgressDeadlineExceeded"),
     ("True", "ProgressDeadlineExceeded")),
    (obs(dep(replicas=0, updated=0, ready=0, available=0), want=0), "Ready", ("True", "ScaledToZero"),
     ("False", "Available"), ("False", "Available")),
    (Observation(generation=3, desired_replicas=0, spec_error="spec.model.uri: bad"), "Failed",
     ("False", "InvalidSpec"), ("False", "InvalidSpec"), ("True", "InvalidSpec")),
    (obs(None, apply_error="apply Deployment ns/m-stable: forbidden"), "Failed", ("False", "ApplyFailed"),
     ("True", "ApplyFailed"), ("False", "ApplyFailed")),
])
def test_phase_and_conditions(observation, phase, ready, reconciling, stalled):
    status = compute_status(observation, None, T0)
    assert status["phase"] == phase
    c = conds(status)
    assert c["Ready"] == ready
    assert c["Reconciling"] == reconciling
    assert c["Stalled"] == stalled
    assert status["observedGeneration"] == 3
    assert all(x["observedGeneration"] == 3 for x in status["conditions"])


@pytest.mark.parametrize("previous_phase,phase", [
    (None, "Progressing"), ("Pending", "Progressing"), ("Progressing", "Progressing"),
    ("Ready", "Degraded"), ("Degraded", "Degraded"),
])
def test_degraded_only_after_having_been_ready(previous_phase, phase):
    status = compute_status(obs(dep(replicas=2, updated=2, ready=1, available=1)), {"phase": previous_phase}, T0)
    assert status["phase"] == phase


def test_messages_carry_counts_and_causes():
    status = compute_status(obs(dep(replicas=2, updated=2, ready=0, available=0),
                                pod_problem=("Unschedulable", "pods unschedulable: 0/4 nodes are available: "
                                             "4 Insufficient nvidia.com/gpu")), None, T0)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "0/2 available" in ready["message"]
    assert "Insufficient nvidia.com/gpu" in ready["message"]


def test_invalid_spec_message_names_field():
    status = compute_status(Observation(generation=1, desired_replicas=0,
                                        spec_error="spec.serving.dynamicBatching: needs maxBatchSize > 0"), None, T0)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["message"].startswith("spec.serving.dynamicBatching")


def test_unimplemented_fields_condition():
    status = compute_status(obs(dep(), unimplemented=("spec.compression", "spec.autoscaling")), None, T0)
    fs = next(c for c in status["conditions"] if c["type"] == "FieldsSupported")
    assert fs["status"] == "False" and fs["reason"] == "NotImplemented"
    assert "spec.compression, spec.autoscaling" in fs["message"]
    ok = compute_status(obs(dep()), None, T0)
    assert conds(ok)["FieldsSupported"] == ("True", "AllSupported")


def test_recomputing_same_status_is_a_no_op_even_later():
    first = compute_status(obs(dep()), None, T0)
    again = compute_status(obs(dep()), first, T0 + timedelta(minutes=5))
    assert again == first
    assert not status_changed(first, again)
    assert transition_event(first, again) is None


def test_transition_time_moves_only_when_status_flips():
    progressing = compute_status(obs(dep(updated=1, available=1)), None, T0)
    ready = compute_status(obs(dep()), progressing, T0 + timedelta(minutes=1))
    by_type = {c["type"]: c for c in ready["conditions"]}
    assert by_type["Ready"]["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert by_type["Stalled"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"  # False both times
    assert status_changed(progressing, ready)
    assert transition_event(progressing, ready) == ("Normal", "Ready", "phase Progressing -> Ready: 2/2 replicas available")


def test_progress_deadline_keeps_the_pod_cause_on_ready():
    status = compute_status(obs(dep(available=0, progressing_reason="ProgressDeadlineExceeded"),
                                pod_problem=("ModelFetchFailed", "model fetch failed: 404")), None, T0)
    assert conds(status)["Ready"] == ("False", "ModelFetchFailed")
    assert conds(status)["Stalled"] == ("True", "ProgressDeadlineExceeded")
    assert "404" in next(x for x in status["conditions"] if x["type"] == "Stalled")["message"]


def test_failed_transition_is_a_warning():
    failed = compute_status(obs(dep(available=0, progressing_reason="ProgressDeadlineExceeded")), None, T0)
    assert transition_event({"phase": "Progressing"}, failed)[0] == "Warning"


def test_status_carries_selector_and_model():
    status = compute_status(Observation(generation=1, desired_replicas=1, revision="r1", deployment_name="d",
                                        service_name="s", selector="a=b", model_name="digits", model_version=2,
                                        deployment=dep(replicas=1, updated=1, ready=1, available=1)), None, T0)
    assert status["selector"] == "a=b"
    assert status["currentRevision"] == "r1"
    assert status["model"] == {"name": "digits", "version": 2}
    assert "endpoints" not in status  # no namespace known: no address to give


def test_status_gives_in_cluster_endpoints():
    status = compute_status(Observation(generation=1, desired_replicas=1, service_name="digits", namespace="ml",
                                        deployment=dep(replicas=1, updated=1, ready=1, available=1)), None, T0)
    assert status["endpoints"] == {"http": "http://digits.ml.svc:8000", "grpc": "digits.ml.svc:8001",
                                   "metrics": "http://digits.ml.svc:8002/metrics"}
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)
