"""The autoscaling simulator's pure parts: calibration, traces, the batching replica, the emulated
Prometheus, and the HPA/KEDA/oracle arithmetic (each checked against the rule it re-implements)."""

import doctest
import math

import numpy as np
import pytest

from tests.bench import autoscaling_model as m

MODEL = m.minilm_cpu()


def test_doctests():
    assert doctest.testmod(m).failed == 0


def test_minilm_calibration_reproduces_the_measured_rows():
    for clients, rps, batch in m.MINILM_ROWS[1:]:
        assert batch / MODEL.batch_time(batch) == pytest.approx(rps, rel=1e-9)
    assert MODEL.batch_time(1) * 1000 == pytest.approx(m.MINILM_P50_MS_AT_1, rel=0.05)


def test_synthetic_trace_is_seeded_and_diurnal():
    a, b = m.synthetic_trace(3, hours=24), m.synthetic_trace(3, hours=24)
    assert np.array_equal(a.rate, b.rate) and a.notes == b.notes
    assert not np.array_equal(a.rate, m.synthetic_trace(4, hours=24).rate)
    calm = m.synthetic_trace(3, hours=24, spikes_per_hour=0, noise=0, peak_rps=500, trough=0.2)
    assert calm.rate.argmin() == 4 * 3600 and calm.rate.argmax() == 16 * 3600
    assert calm.rate.min() == pytest.approx(100) and calm.rate.max() == pytest.approx(500)


def test_step_trace():
    t = m.step_trace(100, 5.0, step_at=10, seconds=20)
    assert t.rate[9] == 100 and t.rate[10] == 500 and t.seconds == 20


def serve(arrivals, t1=10.0, model=MODEL):
    pod = m.Pod(1, -100.0, model)
    out = []
    pod.serve(sorted(arrivals), t1, model, out)
    return pod, out


def test_an_idle_replica_waits_the_queue_delay_then_runs_a_batch_of_one():
    pod, lat = serve([1.0, 2.0])
    one = MODEL.queue_delay_s + MODEL.batch_time(1)
    assert lat == pytest.approx([one, one])
    assert (pod.executions, pod.inferences, pod.pending()) == (2, 2, 0)


def test_requests_queued_behind_a_busy_replica_run_as_one_batch():
    # the first runs alone; the 5 that arrive while it runs go together in the next batch
    first_end = 0.0 + MODEL.queue_delay_s + MODEL.batch_time(1)
    pod, lat = serve([0.0] + [0.001 * k for k in range(1, 6)])
    assert pod.executions == 2 and pod.inferences == 6
    second_end = first_end + MODEL.batch_time(5)
    assert lat[1:] == pytest.approx([second_end - 0.001 * k for k in range(1, 6)])
    assert pod.queue_s == pytest.approx(MODEL.queue_delay_s + sum(first_end - 0.001 * k for k in range(1, 6)))


def test_batches_never_exceed_max_batch_and_work_left_at_the_tick_end_stays_queued():
    model = m.minilm_cpu(max_batch=4)
    pod, lat = serve([0.0] * 50, t1=0.05, model=model)
    assert pod.inferences % 4 == 0 and pod.inferences < 50 and pod.pending() == 50 - pod.inferences
    out = []
    pod.serve([], 10.0, model, out)
    assert pod.pending() == 0 and pod.executions == math.ceil(50 / 4)


def fake_pod(name, samples, ready_at=0.0):
    pod = m.Pod(name, ready_at - MODEL.startup_s, MODEL)
    for s in samples:
        pod.samples.append(s)
    return pod


def test_prometheus_rates_sum_pods_and_need_two_samples():
    # (t, success, inferences, queue_s, compute_s, pending)
    a = fake_pod(1, [(85, 0, 0, 0, 0, 0), (90, 100, 100, 1.0, 2.0, 0), (95, 200, 200, 2.0, 4.0, 10)])
    b = fake_pod(2, [(95, 50, 50, 0, 0, 3)])  # one sample: no rate yet
    prom = m.Prometheus(lambda: [a, b], window_s=10, want_p99=False)
    assert prom.per_pod_rate(95, 2) == {1: 20.0}  # (200 - 100) / 5: samples inside (85, 95]
    s = prom.signals(95)
    assert (s.inference_rate, s.request_rate, s.pending_requests, s.pending_growth) == (20.0, 20.0, 13.0, 2.0)
    assert s.recent_arrival_rate == (100 + 10) / 5 and s.queue_us == pytest.approx(1e4)
    assert s.queue_to_compute == 0.5
    assert (s.newest_scrape, s.stalest_scrape) == (95, 95)  # max / min of timestamp(): each pod's last sample


def test_a_step_inside_a_scrape_interval_takes_one_decision_with_the_confirming_scrape_two_without():
    """Scrapes every 5 s at t = 5k, looks every 5 s; a 5x step at 602 s: the scrape at 605 holds 3/5 of it."""
    cap = 60.0
    spec = m.AutoscalingSpec(max_replicas=40, target_inferences_per_second_per_replica=cap,
                             metrics_window_seconds=15, scale_down_stabilization_seconds=120)
    trace = m.step_trace(4 * cap, 5.0, step_at=602, seconds=700)
    runs = {}
    for confirm in (True, False):
        r = m.simulate(trace, m.OurPolicy(spec, scrape_times=confirm), MODEL, 100.0, seed=3, per_replica_rps=cap,
                       scrape_s=5, window_s=15)
        runs[confirm] = [(t, b) for t, a, b in r.scale_log if t > 602 and b > a]
    assert len(runs[True]) == 1 and runs[True][0][1] >= 20  # 5 x 4 replicas' worth, in one decision
    assert len(runs[False]) == 2 and runs[False][0][1] < 20 <= runs[False][1][1]  # partial first, then the rest
    assert runs[True][0][0] - 602 <= 10  # the next scrape (610) and one recheck later


@pytest.mark.parametrize("rates, pending_pods, missing_pods, current, expected", [
    ([100, 100], 0, 0, 2, 4),      # ratio 2: ceil(2 × 2)
    ([52, 52], 0, 0, 2, 2),        # ratio 1.04: inside tolerance
    ([100, 100], 2, 0, 4, 4),      # 2 Pending pods filled with 0 on scale-up: ratio 1.0 -> keep
    ([150, 150], 2, 0, 4, 6),      # ratio 3 -> 1.5 with unready at 0 -> ceil(1.5 × 4)
    ([20, 20], 0, 2, 4, 3),        # ratio 0.4; 2 missing pods filled at target: 0.7 -> ceil(0.7 × 4)
])
def test_hpa_replica_calculator(rates, pending_pods, missing_pods, current, expected):
    hpa = m.Hpa(50.0, 1, 100)
    pods = []
    for i, r in enumerate(rates):
        pods.append(fake_pod(i, [(0, 0, 0, 0, 0, 0), (10, 10 * r, 10 * r, 0, 0, 0)]))
    for k in range(pending_pods):
        p = m.Pod(100 + k, 9.0, MODEL)  # created at 9 s: Pending until 19 s
        pods.append(p)
    for k in range(missing_pods):
        p = m.Pod(200 + k, -15.0, MODEL)  # Running (past pending_s), not scraped yet
        pods.append(p)
    view = m.View(10.0, current, pods, m.Prometheus(lambda: pods, 30))
    assert hpa.metric_replicas(view) == expected


def test_hpa_normalization_stabilizes_down_and_limits_up():
    hpa = m.Hpa(50.0, 1, 100)
    assert hpa.normalize(0.0, 2, 20) == 4  # max(2 × 2, 4)
    assert hpa.normalize(10.0, 10, 50) == 20  # 2 × 10
    # the highest recommendation of the last 300 s (50, at 10 s), then the scale-up limit 2 × 20
    assert hpa.normalize(100.0, 20, 5) == 40
    assert hpa.normalize(311.0, 20, 5) == 5  # 0 s and 10 s left the window: 5 (at 100 s) and 5
    assert hpa.normalize(312.0, 5, 0) == 5  # 5 recommended at 100 s and 311 s
    assert hpa.normalize(700.0, 5, 0) == 1  # all older than 300 s: 0, raised to minReplicas


def test_keda_average_value_ignores_readiness_and_reads_empty_as_zero():
    keda = m.Keda(50.0, 1, 100)
    pods = [fake_pod(1, [(0, 0, 0, 0, 0, 0), (10, 3000, 3000, 0, 0, 0)])] + [m.Pod(9, 5.0, MODEL)]
    view = m.View(10.0, 2, pods, m.Prometheus(lambda: pods, 30))
    assert keda.metric_replicas(view) == 6  # 300/s / 50 ; status.replicas (2) only for the tolerance test
    empty = m.View(10.0, 2, [m.Pod(9, 5.0, MODEL)], m.Prometheus(lambda: [], 30))
    assert keda.metric_replicas(empty) == 0  # then normalized to minReplicas by the HPA


def test_oracle_plans_ahead_by_the_startup_time():
    trace = m.Trace("t", np.array([10.0] * 100 + [100.0] * 100))
    oracle = m.Oracle(trace, per_replica_rps=10.0, startup_s=40.0, min_replicas=1, max_replicas=50)
    # created at 60 s, ready at 100 s when the load rises
    assert oracle.plan[59] == 1 and oracle.plan[60] == 10 and oracle.plan[150] == 10


def test_simulation_is_deterministic_and_counts_cost_and_slo():
    trace = m.step_trace(60, 3.0, step_at=120, seconds=360)
    hpa = lambda: m.Hpa(50.0, 1, 20)  # noqa: E731
    a = m.simulate(trace, hpa(), MODEL, 100.0, seed=5, per_replica_rps=50)
    b = m.simulate(trace, hpa(), MODEL, 100.0, seed=5, per_replica_rps=50)
    assert (a.replica_hours, a.minutes_ok, a.requests, a.scale_log) == (b.replica_hours, b.minutes_ok, b.requests,
                                                                       b.scale_log)
    assert a.minutes == 6 and a.scale_log and a.scale_log[0][1] == 2  # started at ceil(60 / 50)
    assert a.replica_hours >= 2 * 360 / 3600


def test_steady_replica_meets_the_slo_at_low_load_not_past_its_capacity():
    assert m.steady_slo_share(MODEL, 20.0, 100.0, minutes=5) == 1.0
    assert m.steady_slo_share(MODEL, 125.0, 100.0, minutes=5) == 0.0  # above 1 / per_item: the queue grows
