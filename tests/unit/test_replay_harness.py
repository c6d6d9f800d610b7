"""The replay benchmark harness (tests/bench/replay_analysis.py) on small synthetic series."""

import importlib.util
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from modeldeploy.api import canary as cs
from modeldeploy.policy import measurements as ms
from modeldeploy.reconcile import analysis as ra

PATH = Path(__file__).resolve().parents[2] / "tests" / "bench" / "replay_analysis.py"
spec = importlib.util.spec_from_file_location("replay_analysis", PATH)
replay = importlib.util.module_from_spec(spec)
sys.modules["replay_analysis"] = replay  # dataclasses look their module up there
spec.loader.exec_module(replay)


@pytest.fixture(scope="module")
def recording():
    return replay.synthesize(seconds=240, rate=200, weight=10, stable_pods=2, seed=3)


def series(rec, name, pod):
    return next(s for s in rec["series"] if s["labels"]["__name__"] == name and s["labels"]["pod"] == pod)


def test_synthetic_recording_looks_like_triton_through_prometheus(recording):
    assert recording["format"] == replay.FORMAT and recording["scrape_interval"] == 2.0
    pods = sorted({s["labels"]["pod"] for s in recording["series"]})
    assert pods == ["digits-canary-0", "digits-stable-0", "digits-stable-1"]
    success = [v for _, v in series(recording, ms.SUCCESS, "digits-canary-0")["points"]]
    assert success == sorted(success) and 240 * 20 * 0.8 < success[-1] < 240 * 20 * 1.2  # 10% of 200/s
    p99 = [s for s in recording["series"] if s["labels"].get("quantile") == "0.99"
           and s["labels"]["pod"] == "digits-stable-0"][0]["points"]
    p50 = [s for s in recording["series"] if s["labels"].get("quantile") == "0.5"
           and s["labels"]["pod"] == "digits-stable-0"][0]["points"]
    assert all(b[1] >= a[1] for a, b in zip(p50, p99))  # quantiles ordered at every scrape
    assert 10_000 < p50[-1][1] < 12_000  # lognormal median 10 ms x the pod's speed (5% spread)


def test_summary_covers_48_to_60_seconds():
    summary = replay._Summary(t0=0.0)
    for t in range(0, 100):
        summary.observe(float(t), float(t))  # value = its time
    reading = summary.read(99.5)
    oldest = min(summary.buckets[summary.current])
    assert 99.5 - 60 <= oldest <= 99.5 - 48  # the reading covers the last 48-60 s
    assert reading[0.5] == sorted(summary.buckets[summary.current])[len(summary.buckets[summary.current]) // 2]


def test_steps_round_trip_keeps_every_increment(recording):
    steps = replay.to_steps(recording)
    back = replay.to_steps(replay.to_recording(steps, 1_000.0, recording["revisions"]))
    for a, b in zip(steps.pods, back.pods):
        assert (a.pod, a.role) == (b.pod, b.role)
        assert a.success == b.success and a.failure == b.failure and a.duration == b.duration
        assert a.quantiles == b.quantiles


def test_resample_takes_whole_blocks_for_all_pods_together(recording):
    steps = replay.to_steps(recording)
    run = replay.resample([steps], 90, 30, random.Random(1))
    assert all(len(p.success) == 90 for p in run.pods)
    for k in (0, 30, 60):  # each block of 30 steps is one contiguous stretch of the source, same for every pod
        block = run.pods[0].success[k:k + 30]
        starts = [i for i in range(len(steps.pods[0].success) - 29) if steps.pods[0].success[i:i + 30] == block]
        assert starts
        assert any(steps.pods[1].success[i:i + 30] == run.pods[1].success[k:k + 30] for i in starts)


def test_injected_faults_touch_only_the_canary(recording):
    steps = replay.to_steps(recording)
    rng = random.Random(2)
    run = replay.resample([steps], 60, 30, rng)
    before = [(list(p.success), list(p.failure), [dict(q) for q in p.quantiles]) for p in run.pods]
    replay.inject(run.pods, replay.Fault("error", 0.2, at_step=10), rng, None)
    for p, (succ, fail, _) in zip(run.pods, before):
        assert [a + b for a, b in zip(p.success, p.failure)] == [a + b for a, b in zip(succ, fail)]
        moved = sum(p.failure) - sum(fail)
        assert (moved > 0) == (p.role == "canary")
        assert p.failure[:10] == fail[:10]
    replay.inject(run.pods, replay.Fault("latency", 1.5, at_step=0), rng, 20_000.0)
    canary = next(p for p in run.pods if p.role == "canary")
    i = next(i for i, p in enumerate(run.pods) if p.role == "canary")
    assert all(canary.quantiles[k][0.99] == before[i][2][k][0.99] + 10_000 for k in range(60) if 0.99 in
               canary.quantiles[k])


def test_the_replay_provider_answers_the_readers_queries(recording):
    provider = replay.ReplayProvider(recording)
    t0 = datetime.fromtimestamp(recording["canary_start"], timezone.utc)
    target = ra.AnalysisTarget(replay.NAMESPACE, replay.NAME, replay.MODEL, "a1", "s0")
    data = ra.measure(provider, target, cs.AnalysisSpec(), started_at=t0, now=t0 + timedelta(seconds=100))
    assert data.unavailable is None
    direct = ms.revision_data("a1", [ms.RawSeries(s["labels"], tuple(map(tuple, s["points"])))
                                     for s in recording["series"] if s["labels"]["revision"] == "a1"
                                     and s["points"] and True], since=t0.timestamp())
    in_range = [i for i in direct.intervals if i.end <= t0.timestamp() + 100]
    assert data.canary.requests == sum(i.requests for i in in_range)
    assert data.stable.pods == ("digits-stable-0", "digits-stable-1")
    down = replay.ReplayProvider(recording, outages=[(t0.timestamp(), t0.timestamp() + 1000)])
    assert ra.measure(down, target, cs.AnalysisSpec(), started_at=t0, now=t0 + timedelta(seconds=100)).unavailable


def test_detectors_on_a_clearly_bad_canary_and_on_an_outage(recording):
    steps = replay.to_steps(recording)
    t0 = recording["canary_start"]
    stable_p99 = replay.median_stable_p99_us(steps)
    bad = replay.resample([steps], 120, 30, random.Random(5), replay.Fault("error", 0.2), stable_p99)
    bad_rec = replay.to_recording(bad, t0, recording["revisions"])
    assert replay.ours(bad_rec, 240).rollback_at == 10  # 20% failing: the first look
    assert replay.argo(bad, 240, 1e9).rollback_at == 2  # its first measurement
    assert replay.flagger(bad, 240, 1e9, threshold=1).rollback_at == 120  # fails at 60 s, rolls back at the next tick

    outage = [(0.0, 1000.0)]
    clean = replay.resample([steps], 120, 30, random.Random(6))
    clean_rec = replay.to_recording(clean, t0, recording["revisions"])
    held = replay.ours(clean_rec, 600, outages=[(t0, t0 + 1000)])
    assert held.rollback_at is None and held.holds == 60  # every look held, none decided
    assert replay.flagger(clean, 600, 1e9, outages=outage).rollback_at == 360  # 5 failed checks, then the 6th tick
    assert replay.argo(clean, 600, 1e9, outages=outage).rollback_at == 240  # 5 errors in a row > limit 4


def test_benchmark_rows_and_table(recording):
    rows = replay.run_benchmark([recording], runs=3, seconds=120, block=60, seed=1, scenarios=("aa", "error"))
    assert [(r.scenario, r.detector, r.runs) for r in rows] == [
        ("aa", "ours", 3), ("aa", "flagger", 3), ("aa", "argo", 3),
        ("error", "ours", 3), ("error", "flagger", 3), ("error", "argo", 3)]
    table = replay.markdown(rows)
    assert table.splitlines()[0] == "| scenario | detector | rolled back | detection p50 | detection p95 |"
    assert len(table.splitlines()) == 8


def test_main_runs_end_to_end(capsys):
    assert replay.main(["--synthetic", "1", "--synthetic-seconds", "120", "--runs", "2", "--seconds", "60",
                        "--scenario", "aa"]) == 0
    out = capsys.readouterr().out
    assert "| aa | ours | " in out and "| aa | argo | " in out


def test_the_recorded_sandbox_a_a_canary_is_never_rolled_back_and_an_error_canary_on_it_is():
    """The real recording (docs/benchmarks.md, canary rollouts): a regression guard for the analysis on real
    Triton/Prometheus series. Deterministic: the bootstrap is seeded."""
    import json

    path = Path(__file__).resolve().parents[1] / "fixtures" / "canary-aa-sandbox.json"
    rec = json.loads(path.read_text())
    rows = {(r.scenario, r.detector): r for r in replay.run_benchmark(
        [rec], runs=20, seconds=300, block=60, seed=1, scenarios=("aa", "error"))}
    assert rows[("aa", "ours")].runs == 20 and rows[("aa", "ours")].rollbacks == 0
    assert rows[("error", "ours")].rollbacks == 20 and max(rows[("error", "ours")].times) <= 120
