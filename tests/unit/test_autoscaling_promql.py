"""The autoscaling queries evaluated by Prometheus' own engine (``promtool test rules``, ``promql_expr_test``) on
synthetic Triton series shaped as the pods export them: what each signal reads, including a pod that served
nothing in its last interval (idle, just started, terminating) and a pod whose summary quantile is NaN."""

from __future__ import annotations

import yaml

from modeldeploy.api.autoscaling import parse_autoscaling
from modeldeploy.reconcile.autoscaling_metrics import queries

from .monitoring_tools import promtool, run

SPEC = parse_autoscaling({"maxReplicas": 8, "targetInferencesPerSecondPerReplica": 10,
                          "targetPendingRequestsPerReplica": 4, "targetP99LatencyMilliseconds": 100,
                          "metricsWindowSeconds": 10})
LABELS = 'namespace="ns",modeldeployment="m",model="m",version="1"'


def series(name: str, pod: str, values: str, extra: str = "") -> dict:
    return {"series": f'{name}{{{LABELS},pod="{pod}"{extra}}}', "values": values}


# Scraped every 2 s from 0 s to 20 s. Pod a serves 7 requests/s and its queue grows by 2 in the last interval;
# pod b is idle (its counter stands still; a terminating or just-started pod looks the same); pod c was last
# scraped at 16 s (its scrape failed since).
def failures(pods: str, points: int = 10) -> list[dict]:
    """Triton 2.51 exports its failure counters at 0, one per reason, before any failure."""
    return [series("nv_inference_request_failure", p, f"0x{points}", f',reason="{r}"')
            for p in pods for r in ("OTHER", "BACKEND", "CANCELED", "REJECTED")]


INPUT = failures("ab") + failures("c", 8) + [
    series("nv_inference_request_success", "a", "0+14x10"),
    series("nv_inference_count", "a", "0+14x10"),
    series("nv_inference_pending_request_count", "a", "0 0 0 0 0 0 0 0 0 2 4"),
    series("nv_inference_request_summary_us", "a", "26000x10", ',quantile="0.99"'),
    series("nv_inference_request_success", "b", "5x10"),
    series("nv_inference_count", "b", "5x10"),
    series("nv_inference_pending_request_count", "b", "0x10"),
    series("nv_inference_request_summary_us", "b", " ".join(["NaN"] * 11), ',quantile="0.99"'),
    series("nv_inference_request_success", "c", "0+6x8"),
    series("nv_inference_count", "c", "0+6x8"),
    series("nv_inference_pending_request_count", "c", "0x8"),
]


def evaluate(tmp_path, expected: dict[str, float], input_series=INPUT, at: str = "20s") -> None:
    q = queries(SPEC, "ns", "m", model="m")
    tests = [{"expr": q[field], "eval_time": at, "exp_samples": [{"labels": "{}", "value": value}]}
             for field, value in expected.items()]
    path = tmp_path / "autoscaling_test.yaml"
    path.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "2s",
                                    "tests": [{"interval": "2s", "input_series": input_series,
                                               "promql_expr_test": tests}]}))
    out = run(promtool(), "test", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_signal_as_prometheus_computes_it(tmp_path):
    evaluate(tmp_path, {
        # last interval: a 7/s served + 2 queued in 2 s; b idle (drops out of the growth term, not NaN); c's last
        # two samples (14 s, 16 s) are within the 10 s window: 3/s
        "recent_arrival_rate": 7 + 1 + 0 + 3,
        # rate over 10 s: a 7/s, b 0, c 2.1/s (its samples end at 16 s: rate() extrapolates them by half an
        # interval only, 12 requests over 4 s counted for 7 s of the 10)
        "inference_rate": 7 + 0 + 2.1,
        "request_rate": 7 + 0 + 2.1,
        "pending_requests": 4,
        "pending_growth": 4 / 10,  # delta over the window / its length
        "p99_latency_us": 26000,  # the worst pod's; b's NaN (no requests in its summary window) is ignored
        "newest_scrape": 20,
        "stalest_scrape": 16,
    })


def test_with_every_pod_idle_the_recent_arrival_rate_is_zero_not_missing(tmp_path):
    idle = [series("nv_inference_request_success", p, "5x10") for p in "ab"] + \
           [series("nv_inference_pending_request_count", p, "0x10") for p in "ab"] + failures("ab")
    evaluate(tmp_path, {"recent_arrival_rate": 0, "request_rate": 0}, input_series=idle)


def test_doctests():
    import doctest

    from modeldeploy.render import promql

    assert doctest.testmod(promql).failed == 0
