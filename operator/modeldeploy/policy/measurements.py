"""What canary analysis judges: per-pod, per-scrape measurements of one revision, built from raw samples. Pure.

**What a sample is, and why.** Triton 2.51 exports, per pod and model, counters (successful and failed
requests, the summed request duration and queue time in µs) and, with ``summary_latencies=true``,
summaries whose quantiles cover a sliding window. Prometheus keeps each scrape of those. Canary
analysis reads the *raw samples* of a range vector (an instant query of ``metric{...}[5m]``), not
``query_range``: query_range resamples at a step with a 5-minute lookback, so a missed scrape repeats
the previous value and two steps can straddle one scrape; raw samples give exact counter values with
their scrape timestamps. From them:

- :class:`PodInterval` — one pod, between two consecutive scrapes: how many requests succeeded and
  failed, and their summed duration and queue time. Intervals do not overlap, so two intervals hold
  different requests: these are the independent samples the latency tests rank (mean latency of an
  interval = duration / successes). Counter resets (a restarted Triton) follow Prometheus' rule: a
  decrease means the counter restarted from 0.
- :class:`PodTail` — one pod's latest request-latency quantiles and how many requests they can cover.
  Triton creates its summaries with prometheus-cpp's defaults (``family.Add(labels, quantiles)``:
  ``max_age`` 60 s in 5 age buckets), so a quantile read at a scrape covers the requests of the last
  48 to 60 s of that pod (:data:`SUMMARY_MIN_COVERAGE_S`, :data:`SUMMARY_MAX_AGE_S`); the counters of
  the same scrape bound that number from below and above. Consecutive quantile readings share most of
  their requests, so they are **not** independent samples: the p99 check uses them as a bracket on a
  count instead (policy/analysis.py).

Worked example: success counter samples (0 s, 100), (2 s, 110), (4 s, 5) for one pod give intervals
0-2 s with 10 requests and 2-4 s with 5 (the drop to 5 is a restart: 5 since it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from modeldeploy.api import canary as cs

Point = tuple[float, float]  # (unix seconds, value)

#: prometheus-cpp's Summary defaults, which Triton does not override (core src/metric_model_reporter.cc).
SUMMARY_MAX_AGE_S = 60.0
SUMMARY_AGE_BUCKETS = 5
SUMMARY_MIN_COVERAGE_S = SUMMARY_MAX_AGE_S - SUMMARY_MAX_AGE_S / SUMMARY_AGE_BUCKETS  # 48 s
#: Rank error of each quantile Triton reports: what the operator configures (api/canary.SUMMARY_QUANTILES), which
#: for 0.5-0.99 are Triton's defaults (core metric_model_reporter.h; 0.999's error was 1e-6 in older releases,
#: 0.001 since: the larger is used). A quantile not listed is taken with error 0.001.
QUANTILE_ERRORS: Mapping[float, float] = dict(cs.SUMMARY_QUANTILES)

#: Series names the reader asks for (Triton 2.51).
SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
DURATION = "nv_inference_request_duration_us"
QUEUE = "nv_inference_queue_duration_us"
SUMMARY = "nv_inference_request_summary_us"


@dataclass(frozen=True)
class PodInterval:
    """One pod between two consecutive scrapes (``start``, ``end`` in unix seconds)."""

    pod: str
    start: float
    end: float
    successes: float
    failures: float = 0.0
    duration_us: float = 0.0  # summed over the successful requests
    queue_us: float = 0.0

    @property
    def requests(self) -> float:
        return self.successes + self.failures

    @property
    def mean_latency_ms(self) -> float | None:
        return self.duration_us / self.successes / 1000.0 if self.successes > 0 else None

    @property
    def mean_queue_ms(self) -> float | None:
        return self.queue_us / self.successes / 1000.0 if self.successes > 0 else None

    @property
    def rate(self) -> float | None:
        return self.requests / (self.end - self.start) if self.end > self.start else None


@dataclass(frozen=True)
class PodTail:
    """One pod's latest latency quantiles (µs) and bounds on how many requests they summarise."""

    pod: str
    at: float
    quantiles: tuple[tuple[float, float], ...]  # (quantile, value in µs), by quantile, finite values only
    requests_min: float
    requests_max: float

    def value(self, quantile: float) -> float | None:
        for q, v in self.quantiles:
            if q == quantile:
                return v
        return None


@dataclass(frozen=True)
class RevisionData:
    """Everything measured for one revision over the analysis range."""

    revision: str
    intervals: tuple[PodInterval, ...] = ()
    tails: tuple[PodTail, ...] = ()
    custom: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # custom metric -> samples

    @property
    def requests(self) -> float:
        return sum(i.requests for i in self.intervals)

    @property
    def failures(self) -> float:
        return sum(i.failures for i in self.intervals)

    @property
    def pods(self) -> tuple[str, ...]:
        return tuple(sorted({i.pod for i in self.intervals} | {t.pod for t in self.tails}))


@dataclass(frozen=True)
class Measurements:
    """Canary and stable over [start, end] (unix seconds), or why there is nothing to judge."""

    start: float
    end: float
    canary: RevisionData | None = None
    stable: RevisionData | None = None
    unavailable: str | None = None  # Prometheus unreachable, an error, no canary series: hold
    canary_unseen: bool = False  # Prometheus answered, but holds no series of the canary (yet: a first scrape)


def deltas(points: Sequence[Point]) -> list[tuple[float, float, float]]:
    """(t0, t1, increase) between consecutive samples of one counter; a decrease is a reset.

    >>> deltas([(0, 100), (2, 110), (4, 5)])
    [(0, 2, 10), (2, 4, 5)]
    """
    out = []
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        if not (math.isfinite(v0) and math.isfinite(v1)) or t1 <= t0:
            continue
        out.append((t0, t1, v1 - v0 if v1 >= v0 else v1))
    return out


def pod_intervals(pod: str, success: Sequence[Point], failure: Iterable[Sequence[Point]] = (),
                  duration: Iterable[Sequence[Point]] = (), queue: Iterable[Sequence[Point]] = (),
                  since: float = -math.inf) -> tuple[PodInterval, ...]:
    """Intervals of one pod from its counters' raw samples (several series per counter are summed:
    Triton labels failures by ``reason``). Only intervals ending after ``since`` are kept.

    >>> [(i.start, i.end, i.successes, i.failures, i.mean_latency_ms) for i in pod_intervals(
    ...     "p", [(0, 0), (2, 10), (4, 30)], [[(0, 0), (2, 1), (4, 1)]], [[(0, 0), (2, 20000), (4, 60000)]])]
    [(0, 2, 10, 1.0, 2.0), (2, 4, 20, 0.0, 2.0)]
    """
    base = deltas(sorted(success))
    if not base:
        return ()
    ends = [t1 for _, t1, _ in base]

    def spread(series_list: Iterable[Sequence[Point]]) -> list[float]:
        acc = [0.0] * len(base)
        for series in series_list:
            for _, t1, d in deltas(sorted(series)):
                # the interval of the success counter that contains t1 (same scrape: same timestamp)
                k = _first_at_or_after(ends, t1)
                if k is not None and base[k][0] < t1:
                    acc[k] += d
        return acc

    fails, durs, queues = spread(failure), spread(duration), spread(queue)
    return tuple(PodInterval(pod, t0, t1, s, fails[k], durs[k], queues[k])
                 for k, (t0, t1, s) in enumerate(base) if t1 > since)


def _first_at_or_after(ends: Sequence[float], t: float) -> int | None:
    lo, hi = 0, len(ends)
    while lo < hi:
        mid = (lo + hi) // 2
        if ends[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(ends) else None


def pod_tail(pod: str, quantiles: Mapping[float, Sequence[Point]], success: Sequence[Point]) -> PodTail | None:
    """The pod's latest quantile reading and the requests it covers, bounded by the success counter.

    The reading at scrape time t covers the requests of (t - c, t] with 48 s <= c <= 60 s. Lower bound:
    the increase since the first sample at or after t - 48 s. Upper bound: the increase since the last
    sample at or before t - 60 s, or the counter itself when there is none (the pod is younger than
    the data, and a counter counts from the pod's start).

    >>> t = pod_tail("p", {0.99: [(58, 9000.0), (60, 9500.0)]}, [(t, t * 10) for t in range(0, 62, 2)])
    >>> (t.at, t.quantiles, t.requests_min, t.requests_max)
    (60, ((0.99, 9500.0),), 480, 600)
    """
    latest: dict[float, Point] = {}
    for q, points in quantiles.items():
        finite = [p for p in points if math.isfinite(p[1])]
        if finite:
            latest[q] = max(finite)
    if not latest:
        return None
    at = max(t for t, _ in latest.values())
    values = tuple(sorted((q, v) for q, (t, v) in latest.items() if t == at))
    succ = sorted(p for p in success if p[0] <= at)
    if not succ or succ[-1][0] != at:
        return None  # counters of that scrape are missing: cannot bound the count
    after = [p for p in succ if p[0] >= at - SUMMARY_MIN_COVERAGE_S]
    before = [p for p in succ if p[0] <= at - SUMMARY_MAX_AGE_S]
    lo = sum(d for _, _, d in deltas(after))
    hi = sum(d for _, _, d in deltas([before[-1]] + [p for p in succ if p[0] > before[-1][0]])) if before \
        else succ[-1][1]
    return PodTail(pod, at, values, requests_min=lo, requests_max=max(hi, lo))


@dataclass(frozen=True)
class RawSeries:
    """One series of a range-vector answer: labels (with ``__name__``) and raw points."""

    labels: Mapping[str, str]
    points: tuple[Point, ...]


def revision_data(revision: str, series: Iterable[RawSeries], *, since: float,
                  custom: Mapping[str, tuple[float, ...]] | None = None) -> RevisionData:
    """Group one revision's raw series by pod and metric name into intervals and tails."""
    by_pod: dict[str, dict[str, list[Sequence[Point]]]] = {}
    quantiles: dict[str, dict[float, Sequence[Point]]] = {}
    for s in series:
        pod = s.labels.get("pod", "")
        name = s.labels.get("__name__", "")
        if name == SUMMARY:
            try:
                q = float(s.labels.get("quantile", "nan"))
            except ValueError:
                continue
            if math.isfinite(q):
                quantiles.setdefault(pod, {})[q] = s.points
            continue
        by_pod.setdefault(pod, {}).setdefault(name, []).append(s.points)
    intervals: list[PodInterval] = []
    tails: list[PodTail] = []
    for pod in sorted(set(by_pod) | set(quantiles)):
        metrics = {name: [born_counting(points, since) for points in series_list]
                   for name, series_list in by_pod.get(pod, {}).items()}
        successes = metrics.get(SUCCESS) or []
        success = sorted(p for s in successes for p in s) if len(successes) == 1 else _sum_series(successes)
        intervals.extend(pod_intervals(pod, success, metrics.get(FAILURE, ()), metrics.get(DURATION, ()),
                                       metrics.get(QUEUE, ()), since=since))
        if pod in quantiles:
            tail = pod_tail(pod, quantiles[pod], success)
            if tail is not None:
                tails.append(tail)
    return RevisionData(revision, tuple(intervals), tuple(tails), dict(custom or {}))


def born_counting(points: Sequence[Point], since: float) -> Sequence[Point]:
    """A counter series first sampled after ``since`` was born in the range (the query reads back further
    than ``since``, so an older series has a sample before it): a counter counts from 0 at its birth, so
    its first value is an increase too. Without this, a new pod's requests before its first scrape —
    all of them, when a burst came before Prometheus found the pod — would never be counted.

    >>> born_counting([(10, 400.0), (12, 400.0)], since=5)
    [(5, 0.0), (10, 400.0), (12, 400.0)]
    >>> born_counting([(4, 100.0), (10, 400.0)], since=5)
    [(4, 100.0), (10, 400.0)]
    """
    finite = [t for t, v in points if math.isfinite(v)]
    if not finite or min(finite) <= since or not math.isfinite(since):
        return points
    return [(since, 0.0), *sorted(points)]


def _sum_series(series_list: Sequence[Sequence[Point]]) -> list[Point]:
    """Several success series of one pod (more than one Triton model version): summed per timestamp."""
    acc: dict[float, float] = {}
    for series in series_list:
        for t, v in series:
            acc[t] = acc.get(t, 0.0) + v
    return sorted(acc.items())
