"""Replay benchmark: our canary analysis vs Flagger's and Argo Rollouts' defaults on the same metric series.

What it measures, for each detector, on many canary runs built from recorded Prometheus series:

- **false rollbacks** on A/A canaries (the canary serves the same model as stable): the share of runs
  rolled back within the rollout's duration;
- **detection time** of a bad canary (error rate +1 pp, or p99 x1.5 from an added delay, from the first
  canary request): p50/p95 of the time from the fault to the rollback decision, and how many runs
  were not rolled back at all;
- **a Prometheus outage** (10 min, mid-rollout): rollbacks and promotions caused by missing data.

The time from the decision to 100 % of the traffic back on stable (route update, pods) is not in these
numbers: the sandbox e2e measures it.

Recordings (``--recording FILE``, repeatable) are JSON written by ``record_canary_series.py``: the raw
samples of Triton's counters and request-latency summaries per pod, for a canary and a stable
revision, exactly as Prometheus stored them (format below). Until real ones exist, ``--synthetic N``
builds N recordings by simulating requests (lognormal latencies with a per-pod random speed, Poisson
arrivals, independent failures) and computing the counters and prometheus-cpp's sliding-window
summaries (60 s, 5 age buckets) the way Triton would export them: those rows are labelled synthetic.

How runs are built from recordings (resampling): a moving-block bootstrap of scrape intervals. Each
recording becomes, per pod, a sequence of per-scrape increments (requests, failures, summed latency)
and the summary reading at the end of each scrape. A run concatenates blocks of ``--block`` seconds
(default 60 s: one summary window, so the readings inside a block stay consistent with its counters)
starting at random places in a random recording; all pods take the same block, so the coupling of
canary and stable through shared load is kept. Counters are re-accumulated from the increments. Faults
are injected into the canary pods' increments and readings from ``--fault-at``: failures drawn as
Binomial(successes, +pp), latency shifted by a constant delay that makes p99 x1.5 (readings + delay,
summed latency + delay x requests). What resampling cannot create: new pods (pod-level speed
differences in the recordings are replayed as recorded) and the 60 s of mixed readings right after a
latency fault (readings jump at once; this favours every detector equally).

The three detectors, on the same series:

- **ours**: ``reconcile.analysis.measure`` through a replay SeriesProvider that answers its exact
  queries from the run, then ``policy.analysis.judge``, every ``interval`` (10 s) with the default
  checks (error rate <= 1.5x stable, p99 <= 1.2x stable, significance 0.005 each), failureLimit 0; NoData
  holds.
- **Flagger** (``pkg/controller/scheduler.go``, ``scheduler_metrics.go``): every ``--flagger-interval``
  (its default 1m), request-success-rate >= 99 % and request-duration p99 <= limit over the last
  minute; a check without values fails too ("no values found": halt); ``failedChecks`` counts every
  failed tick (never reset during a rollout); at the start of a tick with failedChecks >= threshold (5) it
  rolls back.
- **Argo Rollouts** (``analysis/analysis.go``, ``utils/evaluate``): an AnalysisRun measuring at start and
  every ``--argo-interval`` (60 s; the docs' examples use 5m), ``successCondition: result[0] >= 0.99``
  and ``result[0] <= limit``, failureLimit 0 (the first failed measurement aborts), a NaN result fails
  its condition, an unanswered query is an Error and more than consecutiveErrorLimit (4) errors in a row
  abort.

Their p99 is Triton's summary p99 (the slowest canary pod's), as a Flagger MetricTemplate or an Argo
query on Triton would read it; their latency limit is ``--relative-limit`` (1.2) x stable's median p99 over
the run, so all three judge the same limit.

Recording format ``modeldeploy-canary-series/1``::

    {"format": "modeldeploy-canary-series/1", "scrape_interval": 2.0,
     "revisions": {"canary": "a1", "stable": "s0"}, "canary_start": 1796126400.0,
     "source": {...free text: where and how it was recorded...},
     "series": [{"labels": {"__name__": "nv_inference_request_success", "pod": "...", "revision": "a1",
                            "namespace": "...", "modeldeployment": "...", "model": "..."},
                 "points": [[unix_seconds, value], ...]}, ...]}

Usage:
    python tests/bench/replay_analysis.py --synthetic 4 --runs 200 --seconds 600
    python tests/bench/replay_analysis.py --recording aa1.json --recording aa2.json --runs 200
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

from modeldeploy.adapters.prometheus import MetricsUnavailable, Series  # noqa: E402
from modeldeploy.api import canary as cs  # noqa: E402
from modeldeploy.policy import analysis as an  # noqa: E402
from modeldeploy.policy import measurements as ms  # noqa: E402
from modeldeploy.reconcile import analysis as ra  # noqa: E402

FORMAT = "modeldeploy-canary-series/1"
QUANTILES = tuple(q for q, _ in cs.SUMMARY_QUANTILES)  # what the operator's Triton reports (synthetic runs)
NAMESPACE, NAME, MODEL = "bench", "digits", "digits"


# --- per-pod step view of a recording ---------------------------------------------------------------


@dataclass
class PodSteps:
    """One pod on the scrape grid: increments per step and the summary reading at each step's end."""

    pod: str
    role: str  # canary | stable
    success: list[float] = field(default_factory=list)
    failure: list[float] = field(default_factory=list)
    duration: list[float] = field(default_factory=list)  # µs, summed over successes
    queue: list[float] = field(default_factory=list)
    quantiles: list[dict[float, float]] = field(default_factory=list)  # reading at the step's end (µs)


@dataclass
class Steps:
    scrape: float
    pods: list[PodSteps]

    @property
    def length(self) -> int:
        return min(len(p.success) for p in self.pods) if self.pods else 0


def _increments(points: Sequence[Sequence[float]], grid: Sequence[float]) -> list[float]:
    """Per grid step, the counter increase (reset: the new value) between the samples nearest the steps."""
    times = [p[0] for p in points]
    values = [_at(points, t, times) for t in grid]
    out = []
    for prev, cur in zip(values, values[1:]):
        if prev is None or cur is None:
            out.append(0.0)
        else:
            out.append(cur - prev if cur >= prev else cur)
    return out


def _at(points: Sequence[Sequence[float]], t: float, times: Sequence[float] | None = None) -> float | None:
    """The last sample at or before t (None before the first)."""
    times = times if times is not None else [p[0] for p in points]
    i = bisect.bisect_right(times, t + 1e-6) - 1
    return points[i][1] if i >= 0 else None


def to_steps(recording: dict[str, Any]) -> Steps:
    scrape = float(recording["scrape_interval"])
    roles = {v: k for k, v in recording["revisions"].items()}
    by_pod: dict[str, dict[str, list]] = {}
    t_min, t_max = math.inf, -math.inf
    for s in recording["series"]:
        labels, points = s["labels"], s["points"]
        if not points:
            continue
        t_min, t_max = min(t_min, points[0][0]), max(t_max, points[-1][0])
        by_pod.setdefault(labels["pod"], {"role": roles.get(labels.get("revision")), "series": []})["series"].append(s)
    grid = [t_min + k * scrape for k in range(int((t_max - t_min) / scrape) + 1)]
    pods = []
    for pod, info in sorted(by_pod.items()):
        if info["role"] is None:
            continue
        ps = PodSteps(pod, info["role"])
        sums = {ms.SUCCESS: None, ms.FAILURE: None, ms.DURATION: None, ms.QUEUE: None}
        quantile_points: dict[float, list] = {}
        for s in info["series"]:
            name = s["labels"]["__name__"]
            if name == ms.SUMMARY and "quantile" in s["labels"]:
                quantile_points[float(s["labels"]["quantile"])] = s["points"]
            elif name in sums:
                inc = _increments(s["points"], grid)
                sums[name] = inc if sums[name] is None else [a + b for a, b in zip(sums[name], inc)]
        zeros = [0.0] * (len(grid) - 1)
        ps.success, ps.failure = sums[ms.SUCCESS] or zeros, sums[ms.FAILURE] or zeros
        ps.duration, ps.queue = sums[ms.DURATION] or zeros, sums[ms.QUEUE] or zeros
        qtimes = {q: [p[0] for p in pts] for q, pts in quantile_points.items()}
        ps.quantiles = [{q: v for q, pts in quantile_points.items() if (v := _at(pts, t, qtimes[q])) is not None
                         and math.isfinite(v)} for t in grid[1:]]
        pods.append(ps)
    return Steps(scrape, pods)


# --- resampling and fault injection -----------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    kind: str  # "error" | "latency"
    size: float  # +fraction of requests failing | p99 factor
    at_step: int = 0


def resample(sources: Sequence[Steps], steps: int, block_steps: int, rng: random.Random,
             fault: Fault | None = None, stable_p99_us: float | None = None) -> Steps:
    """A run of ``steps`` scrape intervals: blocks of ``block_steps`` from random places of random sources."""
    template = sources[0]
    roles = sorted({(p.role, i) for i, p in enumerate(template.pods)})
    out = [PodSteps(template.pods[i].pod, role) for role, i in roles]
    while len(out[0].success) < steps:
        src = rng.choice(sources)
        start = rng.randrange(0, max(1, src.length - block_steps))
        for target, (role, i) in zip(out, roles):
            pod = src.pods[i] if i < len(src.pods) and src.pods[i].role == role else \
                next(p for p in src.pods if p.role == role)
            sl = slice(start, start + block_steps)
            target.success += pod.success[sl]
            target.failure += pod.failure[sl]
            target.duration += pod.duration[sl]
            target.queue += pod.queue[sl]
            target.quantiles += [dict(q) for q in pod.quantiles[sl]]
    for p in out:
        del p.success[steps:], p.failure[steps:], p.duration[steps:], p.queue[steps:], p.quantiles[steps:]
    if fault is not None:
        inject(out, fault, rng, stable_p99_us)
    return Steps(template.scrape, out)


def inject(pods: Sequence[PodSteps], fault: Fault, rng: random.Random, stable_p99_us: float | None) -> None:
    """Apply ``fault`` to the canary pods from ``fault.at_step`` on."""
    for p in pods:
        if p.role != "canary":
            continue
        for k in range(fault.at_step, len(p.success)):
            if fault.kind == "error":
                s = int(p.success[k])
                extra = sum(rng.random() < fault.size for _ in range(s))
                if s:
                    p.duration[k] *= (s - extra) / s
                    p.queue[k] *= (s - extra) / s
                p.success[k] -= extra
                p.failure[k] += extra
            else:  # latency: a constant delay that makes stable's p99 x size
                delay = (fault.size - 1.0) * (stable_p99_us or 0.0)
                p.duration[k] += delay * p.success[k]
                p.quantiles[k] = {q: v + delay for q, v in p.quantiles[k].items()}


def to_recording(run: Steps, t0: float, revisions: dict[str, str]) -> dict[str, Any]:
    """Back to raw series (cumulative counters on a clean grid), as Prometheus would hold them."""
    series = []
    for p in run.pods:
        labels = {"pod": p.pod, "revision": revisions[p.role], "namespace": NAMESPACE, "modeldeployment": NAME,
                  "model": MODEL}
        times = [t0 + k * run.scrape for k in range(len(p.success) + 1)]
        for name, inc in ((ms.SUCCESS, p.success), (ms.FAILURE, p.failure), (ms.DURATION, p.duration),
                          (ms.QUEUE, p.queue)):
            total, points = 0.0, [[times[0], 0.0]]
            for t, d in zip(times[1:], inc):
                total += d
                points.append([t, total])
            series.append({"labels": {**labels, "__name__": name}, "points": points})
        for q in sorted({q for reading in p.quantiles for q in reading}):  # the quantiles recorded
            pts = [[t, reading[q]] for t, reading in zip(times[1:], p.quantiles) if q in reading]
            series.append({"labels": {**labels, "__name__": ms.SUMMARY, "quantile": str(q)}, "points": pts})
    return {"format": FORMAT, "scrape_interval": run.scrape, "revisions": revisions, "canary_start": t0,
            "series": series}


# --- synthetic recordings -----------------------------------------------------------------------------


class _Summary:
    """prometheus-cpp's TimeWindowQuantiles: every observation goes into 5 buckets, one reset every 12 s,
    the reading comes from the oldest (covering the last 48-60 s). Exact quantiles instead of CKMS."""

    def __init__(self, max_age: float = 60.0, buckets: int = 5, t0: float = 0.0):
        self.buckets: list[list[float]] = [[] for _ in range(buckets)]
        self.current, self.rotation, self.last = 0, max_age / buckets, t0

    def _rotate(self, t: float) -> None:
        while t - self.last > self.rotation:
            self.buckets[self.current] = []
            self.current = (self.current + 1) % len(self.buckets)
            self.last += self.rotation

    def observe(self, t: float, value: float) -> None:
        self._rotate(t)
        for b in self.buckets:
            b.append(value)

    def read(self, t: float) -> dict[float, float]:
        self._rotate(t)
        values = sorted(self.buckets[self.current])
        if not values:
            return {}
        return {q: values[min(len(values) - 1, int(q * len(values)))] for q in QUANTILES}


def synthesize(seconds: float = 600, rate: float = 100.0, weight: float = 10.0, stable_pods: int = 3,
               latency_ms: float = 10.0, sigma: float = 0.3, error_rate: float = 0.0005, pod_spread: float = 0.05,
               scrape: float = 2.0, seed: int = 0, t0: float = 1_796_126_400.0) -> dict[str, Any]:
    """A recording of an A/A canary (one canary pod at ``weight`` %, ``stable_pods`` stable pods)."""
    rng = random.Random(seed)
    pods = [("canary", f"{NAME}-canary-0", weight / 100 * rate)]
    pods += [("stable", f"{NAME}-stable-{i}", (1 - weight / 100) * rate / stable_pods) for i in range(stable_pods)]
    revisions = {"canary": "a1", "stable": "s0"}
    series = []
    for role, pod, pod_rate in pods:
        speed = math.exp(rng.gauss(0.0, pod_spread))  # a pod on a slightly faster or slower node
        mu = math.log(latency_ms * 1000 * speed)
        summary = _Summary(t0=t0)
        counters = {ms.SUCCESS: 0.0, ms.FAILURE: 0.0, ms.DURATION: 0.0, ms.QUEUE: 0.0}
        points: dict[str, list] = {k: [[t0, 0.0]] for k in counters}
        readings: dict[float, list] = {q: [] for q in QUANTILES}
        t = t0
        while t < t0 + seconds:
            # arrivals in (t, t + scrape], in time order
            arrival = t + rng.expovariate(pod_rate) if pod_rate > 0 else math.inf
            while arrival <= t + scrape:
                if rng.random() < error_rate:
                    counters[ms.FAILURE] += 1
                else:
                    value = rng.lognormvariate(mu, sigma)
                    counters[ms.SUCCESS] += 1
                    counters[ms.DURATION] += value
                    counters[ms.QUEUE] += value * 0.05
                    summary.observe(arrival, value)
                arrival += rng.expovariate(pod_rate)
            t += scrape
            for k, v in counters.items():
                points[k].append([t, v])
            for q, v in summary.read(t).items():
                readings[q].append([t, v])
        labels = {"pod": pod, "revision": revisions[role], "namespace": NAMESPACE, "modeldeployment": NAME,
                  "model": MODEL}
        for k, pts in points.items():
            series.append({"labels": {**labels, "__name__": k}, "points": pts})
        for q, pts in readings.items():
            series.append({"labels": {**labels, "__name__": ms.SUMMARY, "quantile": str(q)}, "points": pts})
    return {"format": FORMAT, "scrape_interval": scrape, "revisions": revisions, "canary_start": t0,
            "source": {"synthetic": True, "seconds": seconds, "rate": rate, "weight": weight,
                       "stable_pods": stable_pods, "latency_ms": latency_ms, "sigma": sigma,
                       "error_rate": error_rate, "pod_spread": pod_spread, "seed": seed},
            "series": series}


# --- a SeriesProvider over a recording --------------------------------------------------------------


class ReplayProvider:
    """Answers the queries ``reconcile.analysis.measure`` sends, from a recording; raises
    MetricsUnavailable inside ``outages`` [(start, end), ...] (unix seconds)."""

    _RANGE = re.compile(r"\[(\d+)s\]$")
    _NAMES = re.compile(r'__name__=~"([^"]+)"')
    _REVS = re.compile(r'revision=~"([^"]+)"')

    def __init__(self, recording: dict[str, Any], outages: Sequence[tuple[float, float]] = ()):
        self.series = [(s["labels"], [(float(t), float(v)) for t, v in s["points"]]) for s in recording["series"]]
        for _, pts in self.series:
            pts.sort()
        self.times = [[t for t, _ in pts] for _, pts in self.series]
        self.outages = list(outages)

    def _down(self, at: datetime) -> bool:
        t = at.timestamp()
        return any(a <= t < b for a, b in self.outages)

    def query_series(self, promql: str, at: datetime | None = None) -> list[Series]:
        assert at is not None
        if self._down(at):
            raise MetricsUnavailable("replay: Prometheus outage")
        seconds = int(self._RANGE.search(promql).group(1))
        m = self._NAMES.search(promql)
        names = set(m.group(1).split("|")) if m else {promql.split("{", 1)[0]}
        revs = set(self._REVS.search(promql).group(1).replace("\\", "").split("|"))
        t_end = at.timestamp()
        out = []
        for (labels, pts), times in zip(self.series, self.times):
            if labels.get("__name__") not in names or labels.get("revision") not in revs:
                continue
            lo, hi = bisect.bisect_right(times, t_end - seconds), bisect.bisect_right(times, t_end)
            if hi > lo:
                out.append(Series(labels, tuple(pts[lo:hi])))
        return out

    def query_range(self, promql: str, start: datetime, end: datetime, step_seconds: float) -> list[Series]:
        raise MetricsUnavailable("replay: custom queries are not recorded")

    def query(self, promql: str, at: datetime | None = None):
        raise MetricsUnavailable("replay: instant queries are not recorded")

    def is_online(self) -> bool:
        return True


# --- the three detectors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    rollback_at: float | None  # seconds after the canary start
    holds: int = 0  # judgements that held on missing data (ours)


def _canary_view(run: Steps, role: str):
    return [p for p in run.pods if p.role == role]


def ours(recording: dict[str, Any], seconds: float, spec: cs.AnalysisSpec | None = None,
         outages: Sequence[tuple[float, float]] = ()) -> Result:
    spec = spec or cs.AnalysisSpec()
    provider = ReplayProvider(recording, outages)
    t0 = float(recording["canary_start"])
    started = datetime.fromtimestamp(t0, timezone.utc)
    target = ra.AnalysisTarget(NAMESPACE, NAME, MODEL, recording["revisions"]["canary"],
                               recording["revisions"]["stable"])
    failures, previous, holds = 0, None, 0
    k = 1
    while k * spec.interval_seconds <= seconds:
        now = started + timedelta(seconds=k * spec.interval_seconds)
        data = ra.measure(provider, target, spec, started_at=started, now=now)
        verdict = an.judge(spec, data, started_at=started, now=now, previous=previous)
        previous = verdict.as_status()  # what status.canary.lastAnalysis would carry to the next look
        if verdict.outcome is an.Outcome.FAIL:
            failures += 1
            if failures > spec.failure_limit:
                return Result(k * spec.interval_seconds, holds)
        elif verdict.outcome is an.Outcome.NO_DATA:
            holds += 1
        k += 1
    return Result(None, holds)


class _View:
    """What a Prometheus query over the run would answer at time t (for the fixed-threshold detectors)."""

    def __init__(self, run: Steps):
        self.run = run

    def _step(self, t: float) -> int:
        return int(t / self.run.scrape)

    def success_rate(self, t: float, window: float) -> float | None:
        """Percent over the last ``window`` for the canary pods; None when no request (NaN)."""
        hi, lo = self._step(t), max(0, self._step(t - window))
        ok = sum(sum(p.success[lo:hi]) for p in _canary_view(self.run, "canary"))
        bad = sum(sum(p.failure[lo:hi]) for p in _canary_view(self.run, "canary"))
        return None if ok + bad == 0 else 100.0 * ok / (ok + bad)

    def p99_ms(self, t: float, role: str = "canary") -> float | None:
        k = self._step(t) - 1
        values = [p.quantiles[k].get(0.99) for p in _canary_view(self.run, role) if 0 <= k < len(p.quantiles)]
        values = [v for v in values if v is not None]
        return max(values) / 1000 if values else None


def flagger(run: Steps, seconds: float, latency_limit_ms: float, interval: float = 60.0, threshold: int = 5,
            min_success: float = 99.0, outages: Sequence[tuple[float, float]] = ()) -> Result:
    view, failed = _View(run), 0
    k = 1
    while k * interval <= seconds:
        t = k * interval
        if failed >= threshold:  # checked at the start of the tick, before the analysis
            return Result(t)
        down = any(a <= t < b for a, b in outages)
        rate = None if down else view.success_rate(t, 60.0)
        p99 = None if down else view.p99_ms(t)
        ok = rate is not None and rate >= min_success and p99 is not None and p99 <= latency_limit_ms
        failed += 0 if ok else 1
        k += 1
    return Result(None)


def argo(run: Steps, seconds: float, latency_limit_ms: float, interval: float = 60.0, failure_limit: int = 0,
         consecutive_error_limit: int = 4, min_success: float = 0.99,
         outages: Sequence[tuple[float, float]] = ()) -> Result:
    view, failed, errors = _View(run), 0, 0
    k = 0
    while k * interval <= seconds:
        t = max(k * interval, run.scrape)  # the first measurement as the run starts (first scrape)
        if any(a <= t < b for a, b in outages):
            errors += 1
            if errors > consecutive_error_limit:
                return Result(t)
            k += 1
            continue
        errors = 0
        rate = view.success_rate(t, interval)
        p99 = view.p99_ms(t)
        success_ok = rate is not None and rate / 100 >= min_success  # NaN >= 0.99 is false
        latency_ok = p99 is not None and p99 <= latency_limit_ms
        failed += (not success_ok) + (not latency_ok)
        if failed > failure_limit:
            return Result(t)
        k += 1
    return Result(None)


# --- scenarios ----------------------------------------------------------------------------------------


def median_stable_p99_us(run: Steps) -> float:
    values = [q[0.99] for p in run.pods if p.role == "stable" for q in p.quantiles if 0.99 in q]
    return statistics.median(values)


@dataclass
class Row:
    scenario: str
    detector: str
    runs: int = 0
    rollbacks: int = 0
    times: list[float] = field(default_factory=list)

    def cells(self) -> list[str]:
        share = f"{self.rollbacks}/{self.runs} ({100 * self.rollbacks / self.runs:.1f}%)" if self.runs else "-"
        if self.times:
            ordered = sorted(self.times)
            p50 = statistics.median(ordered)
            p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
            return [self.scenario, self.detector, share, f"{p50:.0f} s", f"{p95:.0f} s"]
        return [self.scenario, self.detector, share, "-", "-"]


SCENARIOS = ("aa", "error", "latency", "outage")


def run_benchmark(sources: Sequence[dict[str, Any]], runs: int, seconds: float, block: float, seed: int,
                  scenarios: Sequence[str] = SCENARIOS, relative_limit: float = 1.2, error_pp: float = 1.0,
                  latency_factor: float = 1.5, flagger_interval: float = 60.0, argo_interval: float = 60.0,
                  flagger_threshold: int = 5,
                  outage: tuple[float, float] = (60.0, 660.0), progress=None) -> list[Row]:
    steps_sources = [to_steps(r) for r in sources]
    scrape = steps_sources[0].scrape
    block_steps = max(1, int(block / scrape))
    rows: list[Row] = []
    for scenario in scenarios:
        rng = random.Random(f"{seed}-{scenario}")
        by = {d: Row(scenario, d) for d in ("ours", "flagger", "argo")}
        length = seconds if scenario != "outage" else max(seconds, outage[1] + 60)
        for i in range(runs):
            base = resample(steps_sources, int(length / scrape), block_steps, rng)
            stable_p99 = median_stable_p99_us(base)
            fault = None
            if scenario == "error":
                fault = Fault("error", error_pp / 100)
            elif scenario == "latency":
                fault = Fault("latency", latency_factor)
            run = base
            if fault is not None:
                run = Steps(base.scrape, [PodSteps(p.pod, p.role, list(p.success), list(p.failure), list(p.duration),
                                                   list(p.queue), [dict(q) for q in p.quantiles]) for p in base.pods])
                inject(run.pods, fault, rng, stable_p99)
            t0 = 1_796_126_400.0
            recording = to_recording(run, t0, {"canary": "a1", "stable": "s0"})
            outages_abs = [(t0 + outage[0], t0 + outage[1])] if scenario == "outage" else []
            outages_rel = [outage] if scenario == "outage" else []
            limit_ms = relative_limit * stable_p99 / 1000
            results = {
                "ours": ours(recording, length, outages=outages_abs),
                "flagger": flagger(run, length, limit_ms, interval=flagger_interval, threshold=flagger_threshold,
                                   outages=outages_rel),
                "argo": argo(run, length, limit_ms, interval=argo_interval, outages=outages_rel),
            }
            for name, res in results.items():
                row = by[name]
                row.runs += 1
                if res.rollback_at is not None:
                    row.rollbacks += 1
                    if fault is not None:
                        row.times.append(res.rollback_at)
            if progress:
                progress(scenario, i + 1, runs)
        rows.extend(by.values())
    return rows


def markdown(rows: Sequence[Row]) -> str:
    head = ["scenario", "detector", "rolled back", "detection p50", "detection p95"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recording", action="append", default=[], help="a recording (JSON); repeatable")
    parser.add_argument("--synthetic", type=int, default=0, help="build N synthetic recordings instead")
    parser.add_argument("--synthetic-rate", type=float, default=100.0, help="requests/s of a synthetic recording")
    parser.add_argument("--synthetic-seconds", type=float, default=600.0)
    parser.add_argument("--runs", type=int, default=200, help="resampled runs per scenario")
    parser.add_argument("--seconds", type=float, default=300.0, help="rollout duration judged per run")
    parser.add_argument("--block", type=float, default=60.0, help="bootstrap block length, seconds")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all")
    parser.add_argument("--flagger-interval", type=float, default=60.0)
    parser.add_argument("--flagger-threshold", type=int, default=5,
                        help="failed checks before rollback (5 as usually configured; Flagger's own default is 1)")
    parser.add_argument("--argo-interval", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    if args.synthetic:
        sources = [synthesize(seconds=args.synthetic_seconds, rate=args.synthetic_rate, seed=args.seed * 1000 + i)
                   for i in range(args.synthetic)]
    else:
        sources = [json.loads(Path(p).read_text()) for p in args.recording]
    if not sources:
        parser.error("give --recording FILE (repeatable) or --synthetic N")
    for s in sources:
        if s.get("format") != FORMAT:
            parser.error(f"not a {FORMAT} recording")
    began = time.monotonic()

    def progress(scenario, i, n):
        if i % 50 == 0 or i == n:
            print(f"[replay {time.monotonic() - began:5.0f}s] {scenario}: {i}/{n}", file=sys.stderr, flush=True)

    rows = run_benchmark(sources, args.runs, args.seconds, args.block, args.seed,
                         scenarios=args.scenario or SCENARIOS, flagger_interval=args.flagger_interval,
                         argo_interval=args.argo_interval, flagger_threshold=args.flagger_threshold,
                         progress=progress)
    kind = "synthetic" if args.synthetic else ", ".join(args.recording)
    print(f"recordings: {kind}; {args.runs} runs per scenario, {args.seconds:g} s each, blocks of {args.block:g} s, "
          f"Flagger every {args.flagger_interval:g} s (threshold {args.flagger_threshold}), Argo every "
          f"{args.argo_interval:g} s, ours every 10 s")
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
