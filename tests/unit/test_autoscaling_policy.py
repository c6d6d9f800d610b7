"""The autoscaling policy, table-driven with an injected clock (seconds).

Single decisions: spike, pods still loading, noise, missing/NaN metrics, bounds, canary split. Sequences
(one decision every 10 s, the history carried as the reconciler carries it): slow ramp, ramp down
after the stabilization window, flapping load, scale-up limits, restart with an empty history.
"""

import doctest
import math

import pytest

from modeldeploy.api.autoscaling import parse_autoscaling
from modeldeploy.policy import autoscaling as p

IPS = parse_autoscaling({"maxReplicas": 20, "targetInferencesPerSecondPerReplica": 80})
P99 = parse_autoscaling({"maxReplicas": 20, "targetP99LatencyMilliseconds": 100})
BOTH = parse_autoscaling({"maxReplicas": 20, "targetInferencesPerSecondPerReplica": 80,
                          "targetPendingRequestsPerReplica": 4})
SMALL = parse_autoscaling({"minReplicas": 2, "maxReplicas": 4, "targetInferencesPerSecondPerReplica": 80})


def covered(replicas, now=1000.0, window=120):
    """A history that already covers the stabilization window at ``replicas``."""
    return p.History((p.Recommendation(now - window - 5, replicas),))


S = p.Signals
ONE = {
    # name: (spec, signals, current, ready, starting, history, expected replicas, reason)
    "spike: one step to the demand (served + queue growth)":
        (IPS, S(inference_rate=160, pending_growth=240), 2, 2, 0, p.History(), 5, p.REASON_SCALED_UP),
    "spike above maxReplicas: capped":
        (SMALL, S(inference_rate=160, pending_growth=840), 2, 2, 0, p.History(), 4, p.REASON_SCALED_UP),
    "already at maxReplicas":
        (SMALL, S(inference_rate=320, pending_growth=400), 4, 4, 0, p.History(), 4, p.REASON_AT_MAX),
    "pods still loading: no double counting":
        (IPS, S(inference_rate=160, pending_growth=240), 5, 2, 3, p.History(), 5, p.REASON_WITHIN_TOLERANCE),
    "latency spike: HPA's ratio on ready pods":
        (P99, S(p99_latency_us=250_000), 2, 2, 0, p.History(), 5, p.REASON_SCALED_UP),
    "latency high while pods load: ready x ratio <= asked, hold":
        (P99, S(p99_latency_us=200_000), 5, 2, 3, p.History(), 5, p.REASON_WITHIN_TOLERANCE),
    "noise inside tolerance":
        (IPS, S(inference_rate=420), 5, 5, 0, covered(5), 5, p.REASON_WITHIN_TOLERANCE),
    "dip inside tolerance: hold":
        (IPS, S(inference_rate=368), 5, 5, 0, covered(5), 5, p.REASON_WITHIN_TOLERANCE),
    "dip below tolerance: down to what is needed":
        (IPS, S(inference_rate=310), 5, 5, 0, covered(5), 4, p.REASON_SCALED_DOWN),
    "just above tolerance":
        (IPS, S(inference_rate=445), 5, 5, 0, covered(5), 6, p.REASON_SCALED_UP),
    "highest demand over the signals wins":
        (BOTH, S(inference_rate=400, pending_requests=40), 5, 5, 0, p.History(), 10, p.REASON_SCALED_UP),
    "Prometheus unreachable: hold":
        (IPS, S(error="Prometheus http://prom:9090: connection refused"), 6, 6, 0, covered(6), 6,
         p.REASON_METRICS_UNAVAILABLE),
    "NaN is no data, not zero":
        (IPS, S(inference_rate=math.nan), 6, 6, 0, covered(6), 6, p.REASON_METRICS_UNAVAILABLE),
    "one target missing: no scale-down":
        (BOTH, S(inference_rate=80), 6, 6, 0, covered(6), 6, p.REASON_METRICS_PARTIAL),
    "one target missing: scale-up still allowed":
        (BOTH, S(inference_rate=800), 6, 6, 0, p.History(), 10, p.REASON_SCALED_UP),
    "p99 read while one pod served, 4 ready now: the ratio multiplies the one":
        (P99, S(p99_latency_us=160_000), 4, 4, 0, p.History(ready_seen=((950.0, 1), (990.0, 4))), 4,
         p.REASON_WITHIN_TOLERANCE),
    "p99 older than the summary's 60 s and the 30 s metrics window: the pods ready throughout":
        (P99, S(p99_latency_us=160_000), 4, 4, 0, p.History(ready_seen=((905.0, 1), (950.0, 4))), 7,
         p.REASON_SCALED_UP),
    "p99 high while the pods behind it are still too few: scale up from them":
        (P99, S(p99_latency_us=900_000), 4, 4, 0, p.History(ready_seen=((950.0, 1),)), 9, p.REASON_SCALED_UP),
    "no ready pod: saturation targets cannot be read":
        (P99, S(p99_latency_us=900_000), 3, 0, 3, p.History(), 3, p.REASON_METRICS_UNAVAILABLE),
    "below minReplicas (spec changed)":
        (SMALL, S(), 1, 1, 0, p.History(), 2, p.REASON_BOUNDS),
    "above maxReplicas (spec changed)":
        (SMALL, S(), 9, 9, 0, p.History(), 4, p.REASON_BOUNDS),
    "idle: down to minReplicas after the window":
        (IPS, S(inference_rate=0.0), 4, 4, 0, covered(1), 1, p.REASON_SCALED_DOWN),
    "down, but the window still holds a higher recommendation":
        (IPS, S(inference_rate=250), 6, 6, 0, p.History((p.Recommendation(900.0, 6), p.Recommendation(990, 6))),
         6, p.REASON_STABILIZING),
}


@pytest.mark.parametrize("case", ONE)
def test_single_decisions(case):
    spec, signals, current, ready, starting, history, replicas, reason = ONE[case]
    d = p.decide(spec, signals, current=current, ready=ready, starting=starting, history=history, now=1000.0)
    assert (d.replicas, d.reason) == (replicas, reason), d.message
    assert d.scaled == (replicas != current)
    assert d.history.recommendations[-1].at == 1000.0


def test_messages_carry_the_numbers():
    d = p.decide(IPS, S(inference_rate=160, pending_growth=240), current=2, ready=2, now=0.0)
    assert d.message == ("scale up 2 -> 5: inferences/s needs 5 replicas (160 inferences/s, queue growing 240/s; "
                         "2 asked, 2 ready)")
    d = p.decide(IPS, S(error="Prometheus http://p: timed out"), current=3, ready=3, starting=0, now=0.0)
    assert d.message == ("no usable metrics for inferences/s (Prometheus http://p: timed out): keeping 3 replicas "
                         "(3 asked, 3 ready)")
    assert p.status_fields(d, S(), None) == {"desiredReplicas": 3, "reason": p.REASON_METRICS_UNAVAILABLE,
                                            "message": d.message, "observed": {}, "neededReplicas": {}}


def test_fast_up_reads_the_last_interval_safe_down_the_higher_estimate():
    # a 5x step 5 s ago: the 15 s window shows 3x, the last scrape interval 5x -> one step to 5x
    d = p.decide(IPS, S(inference_rate=240, pending_growth=240, recent_arrival_rate=800), current=4, ready=4, now=0.0)
    assert (d.replicas, d.needed) == (10, {"targetInferencesPerSecondPerReplica": 10.0})
    # load fell in the last interval only: the window's higher estimate sizes the scale-down candidate
    d = p.decide(IPS, S(inference_rate=400, recent_arrival_rate=80), current=10, ready=10, now=0.0,
                 history=covered(10, now=0.0))
    assert (d.replicas, d.reason) == (5, p.REASON_SCALED_DOWN)  # 400/s needs 5, not the 1 of 80/s


def test_queue_growth_counts_inferences_per_request():
    # batches of 4 inferences per request: a queue growing by 10 requests/s is 40 inferences/s of demand
    d = p.decide(IPS, S(inference_rate=320, request_rate=80, pending_growth=10), current=4, ready=4, now=0.0)
    assert d.needed == {"targetInferencesPerSecondPerReplica": 4.5} and d.replicas == 5


def run(spec, loads, current, *, step=10.0, start=0.0, ready_after=None):
    """Decide every ``step`` seconds on ``loads`` (signals per step); replicas become ready at once
    (or after ``ready_after`` seconds). Returns the replica count after each step and the decisions."""
    history, counts, decisions, pending = p.History(), [], [], []
    for i, signals in enumerate(loads):
        now = start + i * step
        pending = [(t, n) for t, n in pending if t > now]
        ready = current - sum(n for _, n in pending)
        d = p.decide(spec, signals, current=current, ready=ready, starting=current - ready, history=history, now=now)
        if ready_after and d.replicas > current:
            pending.append((now + ready_after, d.replicas - current))
        history, current = d.history, d.replicas
        counts.append(current)
        decisions.append(d)
    return counts, decisions


def test_slow_ramp_follows_demand_without_overshoot():
    loads = [S(inference_rate=100 * 1.02 ** i) for i in range(120)]  # +2% every 10 s for 20 min
    counts, _ = run(IPS, loads, current=2)
    assert counts == sorted(counts)  # never down while load rises
    for load, n in zip(loads, counts):
        assert load.inference_rate / n <= 80 * 1.1 + 1e-9  # never above target + tolerance after a decision
        assert n <= math.ceil(load.inference_rate / 80) + 1  # and at most one above what is needed


def test_spike_then_drop_scales_down_only_after_the_window():
    loads = [S(inference_rate=160)] * 3 + [S(inference_rate=800)] * 6 + [S(inference_rate=160)] * 20
    counts, decisions = run(IPS, loads, current=2)
    assert counts[3] == 10 and decisions[3].reason == p.REASON_SCALED_UP  # one decision
    last_high = 8
    down_at = next(i for i, n in enumerate(counts) if i > last_high and n < 10)
    assert (down_at - last_high) * 10 == 120  # a full window after the last high recommendation
    assert counts[down_at] == 2 and counts[-1] == 2  # ceil(160 / 80)


def test_flapping_load_scales_once():
    loads = [S(inference_rate=500 if i % 2 else 300) for i in range(60)]  # 10 minutes, flipping every 10 s
    counts, decisions = run(IPS, loads, current=5)
    assert sum(d.scaled for d in decisions) == 1 and counts[-1] == 7
    assert all(d.reason in (p.REASON_STABILIZING, p.REASON_WITHIN_TOLERANCE) for d in decisions[2:])


def test_pods_loading_for_a_minute_are_not_double_counted():
    loads = [S(inference_rate=160, pending_growth=240)] + [S(inference_rate=160, pending_growth=240)] * 5
    counts, decisions = run(IPS, loads, current=2, ready_after=60)
    assert counts == [5] * 6 and sum(d.scaled for d in decisions) == 1


def test_the_overload_a_scale_up_fixed_does_not_scale_up_again_through_the_p99_it_left():
    # the sandbox's autoscaling e2e, as numbers: 7 -> 35 requests/s at 10 per replica, p99 guard 250 ms; one pod
    # overloaded while three load leaves a p99 of 400 ms in Triton's 60 s summary after all four are ready
    spec = parse_autoscaling({"maxReplicas": 6, "targetInferencesPerSecondPerReplica": 10,
                              "targetP99LatencyMilliseconds": 250, "metricsWindowSeconds": 10})
    loads = ([S(inference_rate=7, p99_latency_us=22_000)] * 4 + [S(inference_rate=35, p99_latency_us=400_000)] * 14
             + [S(inference_rate=35, p99_latency_us=25_000)] * 4)
    counts, decisions = run(spec, loads, current=1, step=5.0, ready_after=10)
    assert counts == [1] * 4 + [4] * 18, [d.message for d in decisions]
    # the same p99 once four pods have served throughout the summary's window is theirs: up
    d = p.decide(spec, S(inference_rate=35, p99_latency_us=400_000), current=4, ready=4, now=1000.0,
                 history=p.History(ready_seen=((929.0, 1), (935.0, 4), (990.0, 4))))
    assert (d.replicas, d.reason) == (6, p.REASON_SCALED_UP)


def test_restart_with_empty_history_waits_one_window_before_scaling_down():
    loads = [S(inference_rate=80)] * 20
    counts, _ = run(IPS, loads, current=6, start=5000.0)
    assert counts[:12] == [6] * 12 and counts[13] == 1


def test_scale_up_limit_per_period():
    spec = parse_autoscaling({"maxReplicas": 20, "targetInferencesPerSecondPerReplica": 80,
                              "scaleUp": {"maxReplicasPerPeriod": 2, "periodSeconds": 60}})
    counts, decisions = run(spec, [S(inference_rate=800)] * 14, current=2)
    assert counts[:7] == [4] * 6 + [6] and decisions[0].reason == p.REASON_LIMITED
    assert counts[-1] == 8


def test_saturation_only_scales_in_one_replica_per_window():
    counts, _ = run(P99, [S(p99_latency_us=20_000)] * 40, current=5, start=0.0)
    assert counts[0] == 5 and counts[-1] == 2
    assert [i for i in range(1, 40) if counts[i] < counts[i - 1]] == [12, 24, 36]  # every 120 s


def test_zero_window_scales_down_at_once():
    spec = parse_autoscaling({"maxReplicas": 9, "targetInferencesPerSecondPerReplica": 80,
                              "scaleDownStabilizationSeconds": 0})
    d = p.decide(spec, S(inference_rate=100), current=8, ready=8, now=0.0)
    assert (d.replicas, d.reason) == (2, p.REASON_SCALED_DOWN)


@pytest.mark.parametrize("weight, split", [(None, None), (0, (10, 0)), (25, (8, 3)), (50, (5, 5)), (100, (0, 10))])
def test_canary_split(weight, split):
    d = p.decide(IPS, S(inference_rate=780), current=10, ready=10, history=covered(10), now=1000.0,
                 canary_weight=weight)
    assert d.replicas == 10 and d.split == split
    if split:
        status = p.status_fields(d, S(inference_rate=780, recent_arrival_rate=800), "2026-11-30T10:00:00Z", True)
        assert status["split"] == {"stable": split[0], "canary": split[1]}
        assert status["observed"] == {"inferencesPerSecond": 780, "recentRequestsPerSecond": 800}
        assert status["specReplicasIgnored"] is True and status["lastScaleTime"] == "2026-11-30T10:00:00Z"


def test_doctests():
    assert doctest.testmod(p).failed == 0


def test_status_fields_fit_the_crd_status_schema():
    from pathlib import Path

    import jsonschema
    import yaml

    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "modeldeploy.io_modeldeployments.yaml")
                         .read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["autoscaling"]
    signals = S(inference_rate=780, request_rate=780, pending_requests=12, pending_growth=-3.5, recent_arrival_rate=800,
                p99_latency_us=95_000, queue_us=1200, queue_to_compute=0.4)
    spec = parse_autoscaling({"maxReplicas": 20, "targetInferencesPerSecondPerReplica": 80,
                              "targetPendingRequestsPerReplica": 4, "targetP99LatencyMilliseconds": 100,
                              "targetQueueMicroseconds": 2000, "targetQueueToComputeRatio": 1})
    d = p.decide(spec, signals, current=10, ready=10, history=covered(10), now=1000.0, canary_weight=20)
    status = p.status_fields(d, signals, "2026-11-30T10:00:00Z", True)
    assert set(status["observed"]) == set(schema["properties"]["observed"]["properties"])
    assert set(status) | {"observedAt"} == set(schema["properties"])  # observedAt: the reconciler's stamp
    jsonschema.validate({**status, "observedAt": "2026-11-30T10:00:05Z"}, schema)


# --- a scale-up is confirmed by the next scrape ------------------------------------------------------------
TEN = parse_autoscaling({"maxReplicas": 8, "targetInferencesPerSecondPerReplica": 10, "metricsWindowSeconds": 10})


def step_readings(with_scrape_times: bool):
    """A 7 -> 35 requests/s step seen by one pod scraped every 2 s, looked at every second: the first reading
    after the step holds part of it (21/s: the step came in the middle of that scrape interval)."""
    readings = [(100.0, 7.0), (100.0, 7.0), (102.0, 21.0), (102.0, 21.0), (104.0, 35.0), (104.0, 35.0), (106.0, 35.0)]
    return [S(inference_rate=rate, recent_arrival_rate=rate,
              **({"newest_scrape": t, "stalest_scrape": t} if with_scrape_times else {})) for t, rate in readings]


def test_a_step_caught_mid_interval_is_one_decision_sized_on_the_next_scrape():
    counts, decisions = run(TEN, step_readings(True), current=1, step=1.0)
    assert counts == [1, 1, 1, 1, 4, 4, 4]
    assert [d.reason for d in decisions[2:5]] == [p.REASON_CONFIRMING, p.REASON_CONFIRMING, p.REASON_SCALED_UP]
    assert decisions[2].recheck_after == p.CONFIRM_RECHECK_SECONDS and decisions[4].recheck_after is None
    assert decisions[2].message.startswith("keeping 1 until every pod is scraped again: inferences/s needs 2.1 ")
    assert sum(d.scaled for d in decisions) == 1
    # the same readings without scrape times (the rule cannot apply): two decisions, the first too small
    counts, decisions = run(TEN, step_readings(False), current=1, step=1.0)
    assert counts == [1, 1, 3, 3, 4, 4, 4] and sum(d.scaled for d in decisions) == 2


def test_one_noisy_scrape_interval_does_not_scale_up():
    loads = [S(inference_rate=7, recent_arrival_rate=r, newest_scrape=t, stalest_scrape=t)
             for t, r in [(100.0, 7.0), (102.0, 14.0), (104.0, 7.0), (106.0, 7.0)]]
    counts, decisions = run(TEN, loads, current=1, step=2.0)
    assert counts == [1, 1, 1, 1] and decisions[1].reason == p.REASON_CONFIRMING
    assert decisions[2].reason == p.REASON_WITHIN_TOLERANCE and decisions[2].history.confirming is None


def test_confirmation_waits_for_every_pod_and_at_most_one_metrics_window():
    first = S(inference_rate=60, recent_arrival_rate=60, newest_scrape=101.0, stalest_scrape=100.0)
    d = p.decide(TEN, first, current=2, ready=2, now=0.0)
    assert (d.replicas, d.history.confirming) == (2, (0.0, 101.0))
    one_pod_newer = S(inference_rate=60, recent_arrival_rate=60, newest_scrape=103.0, stalest_scrape=101.0)
    d = p.decide(TEN, one_pod_newer, current=2, ready=2, history=d.history, now=2.0)
    assert d.reason == p.REASON_CONFIRMING  # the pod scraped at 101 is the newest the first reading used
    stuck = p.decide(TEN, one_pod_newer, current=2, ready=2, history=d.history, now=10.0)
    assert (stuck.replicas, stuck.reason) == (6, p.REASON_SCALED_UP)  # metricsWindowSeconds (10 s) passed
    every_pod = S(inference_rate=60, recent_arrival_rate=60, newest_scrape=104.0, stalest_scrape=103.0)
    d = p.decide(TEN, every_pod, current=2, ready=2, history=d.history, now=4.0)
    assert (d.replicas, d.reason) == (6, p.REASON_SCALED_UP)


def test_no_confirmation_when_the_count_cannot_grow():
    at_max = parse_autoscaling({"maxReplicas": 2, "targetInferencesPerSecondPerReplica": 10})
    d = p.decide(at_max, S(inference_rate=60, newest_scrape=1.0, stalest_scrape=1.0), current=2, ready=2, now=0.0)
    assert (d.replicas, d.reason, d.history.confirming) == (2, p.REASON_AT_MAX, None)


def test_a_new_model_starts_at_min_replicas_with_a_message_that_says_so():
    d = p.decide(SMALL, S(), current=0, ready=0, now=0.0)
    assert (d.replicas, d.reason, d.message) == (2, p.REASON_BOUNDS, "starting with minReplicas: 2")
