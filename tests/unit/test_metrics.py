"""Operator metrics: status -> samples (table), bounded cardinality, the exporter and its HTTP endpoint."""

from __future__ import annotations

import ast
import math
import random
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy.api import constants as c
from modeldeploy.cli import build_parser
from modeldeploy.metrics import exporter, samples as S
from modeldeploy.metrics.exporter import OperatorMetrics, parse_address

NS, NAME = "ml", "digits"


def series(status, spec=None, name=NAME):
    """{(family, frozenset(labels without the ids)): value} for one ModelDeployment."""
    out = {}
    for s in S.samples(NS, name, status, spec):
        labels = s.as_dict()
        assert labels.pop("namespace") == NS
        labels.pop("modeldeployment")
        key = (s.name, frozenset(labels.items()))
        assert key not in out, f"duplicate series {key}"
        out[key] = s.value
    return out


def value(out, family, **labels):
    return out.get((family, frozenset(labels.items())))


def cond(type_, status, reason="Available"):
    return {"type": type_, "status": status, "reason": reason, "message": "free text: 1/2 ready, p99 230ms"}


READY_STATUS = {
    "phase": "Ready", "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "currentRevision": "93e4bacd5b",
    "model": {"name": "digits", "version": 3, "uri": "file:///m.onnx"},
    "conditions": [cond(c.COND_READY, "True"), cond(c.COND_RECONCILING, "False"), cond(c.COND_STALLED, "False"),
                   cond(c.COND_FIELDS_SUPPORTED, "True", c.REASON_ALL_SUPPORTED)],
}


# (case, status, spec, family, labels, expected value; None = no such series)
TABLE = [
    ("phase one-hot: current", READY_STATUS, None, "modeldeploy_phase", {"phase": "Ready"}, 1.0),
    ("phase one-hot: others 0", READY_STATUS, None, "modeldeploy_phase", {"phase": "Failed"}, 0.0),
    ("unknown phase: all 0", {"phase": "Exploded"}, None, "modeldeploy_phase", {"phase": "Ready"}, 0.0),
    ("info: revision and model", READY_STATUS, None, "modeldeploy_info", {"revision": "93e4bacd5b", "model": "digits"},
     1.0),
    ("info without status yet", {}, None, "modeldeploy_info", {"revision": "", "model": ""}, 1.0),
    ("Ready True", READY_STATUS, None, "modeldeploy_condition", {"condition": "Ready", "status": "True"}, 1.0),
    ("Ready False series 0", READY_STATUS, None, "modeldeploy_condition", {"condition": "Ready", "status": "False"}, 0.0),
    ("Stalled False", READY_STATUS, None, "modeldeploy_condition", {"condition": "Stalled", "status": "False"}, 1.0),
    ("condition status garbage -> Unknown", {"conditions": [{"type": "Ready", "status": "maybe", "reason": "X"}]},
     None, "modeldeploy_condition", {"condition": "Ready", "status": "Unknown"}, 1.0),
    ("known reason kept", {"conditions": [cond("Ready", "False", c.REASON_UNSCHEDULABLE)]}, None,
     "modeldeploy_condition_reason", {"condition": "Ready", "reason": "Unschedulable"}, 1.0),
    ("free-text reason -> Other", {"conditions": [cond("Ready", "False", "no node has NVIDIA-B200")]}, None,
     "modeldeploy_condition_reason", {"condition": "Ready", "reason": "Other"}, 1.0),
    ("foreign condition type not exported", {"conditions": [cond("SomethingElse", "True")]}, None,
     "modeldeploy_condition", {"condition": "SomethingElse", "status": "True"}, None),
    ("replicas", READY_STATUS, None, "modeldeploy_replicas_ready", {}, 2.0),
    ("updated replicas default 0", {}, None, "modeldeploy_replicas_updated", {}, 0.0),
    ("desired from spec.replicas", {}, {"replicas": 3}, "modeldeploy_replicas_desired", {}, 3.0),
    ("desired defaults to 1", {}, {}, "modeldeploy_replicas_desired", {}, 1.0),
    ("desired unknown without spec", {}, None, "modeldeploy_replicas_desired", {}, None),
    ("desired: autoscaler decision wins", {"autoscaling": {"desiredReplicas": 4, "reason": "Other"}},
     {"autoscaling": {"minReplicas": 1, "maxReplicas": 8}}, "modeldeploy_replicas_desired", {}, 4.0),
    ("desired: autoscaling before a decision is minReplicas", {}, {"autoscaling": {"minReplicas": 2, "maxReplicas": 8}},
     "modeldeploy_replicas_desired", {}, 2.0),
    ("model version", READY_STATUS, None, "modeldeploy_model_version", {"model": "digits"}, 3.0),
    ("latency objective from the autoscaling target", {}, {"autoscaling": {"maxReplicas": 2,
                                                                          "targetP99LatencyMilliseconds": 250}},
     "modeldeploy_latency_objective_seconds", {"quantile": "0.99"}, 0.25),
    ("no objective, no series", {}, {"replicas": 1}, "modeldeploy_latency_objective_seconds", {"quantile": "0.99"},
     None),
    ("compression gate failed", {"compression": {"state": "GateFailed", "message": "no variant passed"}}, None,
     "modeldeploy_compression_state", {"state": "GateFailed"}, 1.0),
    ("compression: others 0", {"compression": {"state": "GateFailed"}}, None,
     "modeldeploy_compression_state", {"state": "Succeeded"}, 0.0),
    ("no compression, no series", READY_STATUS, None, "modeldeploy_compression_state", {"state": "Running"}, None),
    ("canary weight", {"canary": {"weight": 20, "step": 1, "revision": "abc"}}, None, "modeldeploy_canary_weight", {},
     20.0),
    ("canary step", {"canary": {"weight": 20, "step": 1}}, None, "modeldeploy_canary_step", {}, 1.0),
    ("canary revision", {"canary": {"weight": 20, "revision": "abc"}}, None, "modeldeploy_canary_info",
     {"revision": "abc"}, 1.0),
    ("canary weight 0 is a value", {"canary": {"weight": 0}}, None, "modeldeploy_canary_weight", {}, 0.0),
    ("no canary, no weight", READY_STATUS, None, "modeldeploy_canary_weight", {}, None),
    ("verdict from a mapping", {"canary": {"lastAnalysis": {"verdict": "Failed", "errorRate": 0.02}}}, None,
     "modeldeploy_canary_analysis_verdict", {"verdict": "Failed"}, 1.0),
    ("verdict spelling normalised", {"canary": {"lastAnalysis": "successful"}}, None,
     "modeldeploy_canary_analysis_verdict", {"verdict": "Passed"}, 1.0),
    ("unlisted verdict -> Inconclusive", {"canary": {"lastAnalysis": {"verdict": "weird"}}}, None,
     "modeldeploy_canary_analysis_verdict", {"verdict": "Inconclusive"}, 1.0),
    ("autoscaler desired", {"autoscaling": {"desiredReplicas": 5}}, None, "modeldeploy_autoscaler_desired_replicas", {},
     5.0),
    ("autoscaler free-text reason -> Other", {"autoscaling": {"desiredReplicas": 5, "reason": "p99 300ms > 200ms"}},
     None, "modeldeploy_autoscaler_reason", {"reason": "Other"}, 1.0),
    ("autoscaler known reason", {"autoscaling": {"reason": c.REASON_SCALING}}, None, "modeldeploy_autoscaler_reason",
     {"reason": "Scaling"}, 1.0),
    ("bool is not a number", {"readyReplicas": True}, None, "modeldeploy_replicas_ready", {}, None),
    ("string is not a number", {"canary": {"weight": "20"}}, None, "modeldeploy_canary_weight", {}, None),
    ("NaN is not a number", {"canary": {"weight": math.nan}}, None, "modeldeploy_canary_weight", {}, None),
]


@pytest.mark.parametrize("case,status,spec,family,labels,expected", TABLE, ids=[t[0] for t in TABLE])
def test_samples(case, status, spec, family, labels, expected):
    assert family in S.FAMILIES
    assert value(series(status, spec), family, **labels) == expected


def test_every_family_label_set_is_declared():
    status = {**READY_STATUS, "compression": {"state": "Running"},
              "canary": {"weight": 5, "step": 0, "revision": "r", "lastAnalysis": {"verdict": "Passed"}},
              "autoscaling": {"desiredReplicas": 2, "reason": "Scaling"}}
    produced = S.samples(NS, NAME, status, {"autoscaling": {"maxReplicas": 3, "targetP99LatencyMilliseconds": 9}})
    assert {s.name for s in produced} == set(S.FAMILIES)  # this status exercises every family
    for s in produced:
        assert len(s.labels) == len(S.FAMILIES[s.name].labels), s


def test_series_set_does_not_change_with_phase_or_condition_status():
    """An alert's `for` survives a phase change: the same series exist, only values move."""
    failed = {**READY_STATUS, "phase": "Failed",
              "conditions": [cond("Ready", "False", "Unschedulable"), cond("Stalled", "True", "ProgressDeadlineExceeded"),
                             cond("Reconciling", "False"), cond("FieldsSupported", "True", "AllSupported")]}
    stable = lambda out: {k for k in out if k[0] != "modeldeploy_condition_reason"}  # noqa: E731
    assert stable(series(READY_STATUS)) == stable(series(failed))


def test_cardinality_is_bounded_whatever_the_text():
    """Free text (messages, unknown reasons and verdicts) never becomes a label: 300 statuses with random
    strings everywhere give no more label values than the closed sets allow."""
    rng = random.Random(7)
    word = lambda: "".join(rng.choice("abcXYZ 0123:/") for _ in range(rng.randint(1, 20)))  # noqa: E731
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for _ in range(300):
        status = {
            "phase": rng.choice([*S.PHASES, word()]),
            "conditions": [{"type": rng.choice([*S.CONDITIONS, word()]), "status": rng.choice(["True", word()]),
                            "reason": rng.choice([*sorted(S.REASONS), word()]), "message": word()} for _ in range(4)],
            "compression": {"state": rng.choice([*S.COMPRESSION_STATES, word()]), "message": word()},
            "canary": {"weight": rng.randint(0, 100), "lastAnalysis": {"verdict": word()}},
            "autoscaling": {"desiredReplicas": rng.randint(0, 9), "reason": word()},
            "model": {"name": "digits", "version": rng.randint(1, 50)},
            "currentRevision": "93e4bacd5b",
        }
        seen.update((s.name, s.labels) for s in S.samples(NS, NAME, status))
    bound = (1 + len(S.PHASES) + len(S.CONDITIONS) * (len(S.CONDITION_STATUSES) + len(S.REASONS) + 1)
             + len(S.COMPRESSION_STATES) + len(S.VERDICTS) + len(S.REASONS) + 1 + 10)
    assert len(seen) <= bound
    reasons = {s[1][-1] for s in seen if s[0] in ("modeldeploy_condition_reason", "modeldeploy_autoscaler_reason")}
    assert reasons <= S.REASONS | {S.OTHER} and S.OTHER in reasons


def test_long_names_are_cut_like_the_pod_label():
    from modeldeploy.render.names import fit

    name = "m" * 80
    (info,) = [s for s in S.samples(NS, name, {}) if s.name == "modeldeploy_info"]
    assert info.as_dict()["modeldeployment"] == fit(name) and len(fit(name)) == 63


def test_samples_module_is_pure():
    tree = ast.parse(Path(S.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert all(m.startswith(("modeldeploy.api", "modeldeploy.render", "modeldeploy.policy", "__future__"))
               or m in ("math", "dataclasses", "typing") for m in imported), imported


# --- the exporter -------------------------------------------------------------------------------------
def scrape(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def test_exporter_observe_replace_forget():
    m = OperatorMetrics()
    m.observe(NS, NAME, READY_STATUS, {"replicas": 2})
    m.observe(NS, "other", {"phase": "Pending"})
    got = scrape(m.exposition().decode())
    ready = ("modeldeploy_phase", frozenset({"namespace": NS, "modeldeployment": NAME, "phase": "Ready"}.items()))
    assert got[ready] == 1.0
    assert got[("modeldeploy_replicas_desired", frozenset({"namespace": NS, "modeldeployment": NAME}.items()))] == 2.0
    m.observe(NS, NAME, {**READY_STATUS, "phase": "Degraded"})  # replaced, not added
    assert scrape(m.exposition().decode())[ready] == 0.0
    m.forget(NS, NAME)
    left = {dict(k[1]).get("modeldeployment") for k in scrape(m.exposition().decode())}
    assert NAME not in left and "other" in left
    m.forget(NS, NAME)  # forgetting twice is fine


def test_reconcile_counts_and_durations_by_outcome():
    m = OperatorMetrics()
    before = scrape(m.exposition().decode())
    for outcome in exporter.OUTCOMES:  # every outcome exists at zero before the first reconcile
        assert before[("modeldeploy_reconcile_total", frozenset({"outcome": outcome}.items()))] == 0.0
    m.record_reconcile("success", 0.03)
    m.record_reconcile("retry", 0.2)
    ticks = iter([10.0, 10.5, 20.0, 21.0, 30.0, 30.25])
    clock = lambda: next(ticks)  # noqa: E731
    with m.reconciling(clock):
        pass
    with pytest.raises(RuntimeError), m.reconciling(clock):
        raise RuntimeError("API down")
    with pytest.raises(RuntimeError), m.reconciling(clock) as r:
        r.outcome = "retry"
        raise RuntimeError("temporary")
    got = scrape(m.exposition().decode())
    total = lambda o: got[("modeldeploy_reconcile_total", frozenset({"outcome": o}.items()))]  # noqa: E731
    assert (total("success"), total("retry"), total("error")) == (2.0, 2.0, 1.0)
    dsum = lambda o: got[("modeldeploy_reconcile_duration_seconds_sum", frozenset({"outcome": o}.items()))]  # noqa: E731
    assert (dsum("success"), dsum("retry"), dsum("error")) == (0.53, 0.45, 1.0)
    assert got[("modeldeploy_operator_info", frozenset({"version": "0.1.0"}.items()))] == 1.0


@pytest.mark.parametrize("outcome,seconds", [("ok", 1.0), ("Success", 1.0), ("success", -1.0)])
def test_record_reconcile_refuses_unbounded_outcomes(outcome, seconds):
    with pytest.raises(ValueError, match="reconcile"):
        OperatorMetrics().record_reconcile(outcome, seconds)


def test_serve_over_http():
    m = OperatorMetrics(process=True)
    m.observe(NS, NAME, READY_STATUS)
    server, thread = m.serve("127.0.0.1:0")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert resp.status == 200
            got = scrape(resp.read().decode())
        assert got[("modeldeploy_replicas_ready", frozenset({"namespace": NS, "modeldeployment": NAME}.items()))] == 2.0
        assert any(k[0] == "process_resident_memory_bytes" for k in got)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("address,expected", [("0.0.0.0:8081", ("0.0.0.0", 8081)), (":9", ("0.0.0.0", 9)),
                                              ("[::]:8081", ("::", 8081))])
def test_parse_address(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["8081", "host:", "host:port", "h:70000"])
def test_parse_address_refuses(address):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(address)


def test_operator_command_takes_a_metrics_address(monkeypatch):
    args = build_parser().parse_args(["operator", "--metrics-address", "127.0.0.1:9"])
    assert args.metrics_address == "127.0.0.1:9"
    monkeypatch.setenv("MODELDEPLOY_METRICS_ADDRESS", "0.0.0.0:8081")
    assert build_parser().parse_args(["operator"]).metrics_address == "0.0.0.0:8081"
    monkeypatch.delenv("MODELDEPLOY_METRICS_ADDRESS")
    assert build_parser().parse_args(["operator"]).metrics_address == ""


def test_docstring_examples():
    import doctest

    for module in (S, exporter):
        assert doctest.testmod(module).failed == 0, module.__name__
