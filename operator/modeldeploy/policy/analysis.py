"""The canary analysis verdict: canary vs stable over a window, judged statistically. Pure.

``judge(spec, measurements, started_at=..., now=...)`` returns one of

- **Pass**: at least ``minRequests`` canary requests were seen and no check found a violation;
- **Fail**: a check found statistically significant evidence that the canary breaks a limit (the
  result carries the numbers: canary and stable values, the limit, the p-value and the threshold);
- **Inconclusive**: no violation found, but too few requests to pass yet (or no stable traffic to
  compare with);
- **NoData**: Prometheus could not answer, answered nothing for the canary, or a custom query had
  no value. The step machine *holds* on NoData: no promotion and no rollback on missing data.

Why statistics, and which
-------------------------
Fixed thresholds on one reading (Flagger's request-success-rate >= 99 % each minute, Argo Rollouts'
``successCondition``) make a trade-off between speed and false rollbacks: a short window makes one
unlucky minute fail a healthy canary, a long one makes a bad canary serve for minutes. A test instead
asks "is there enough evidence that the canary is worse?", which a clear regression answers within
seconds and an A/A canary (same model as stable) answers "no" with known probability. The choices:

- **Error rate** — counts, so exact binomial tests (Kayenta's judge uses Mann-Whitney on time series;
  counts allow more power). Against stable (``maxRatio`` rho): conditional on how many failures
  happened in a time bucket, under H0 "canary rate <= rho x stable rate" each failure is the canary's
  with probability rho*pi / (rho*pi + 1 - pi), pi the canary's share of that bucket's requests (the
  Poisson-rate comparison; with rho = 1 it is the one-sided exact test of two rates). The buckets
  (one per analysis interval) stratify the test, so a burst of errors while the canary's share was
  high is not blamed on the canary. Against ``max``: P(Binomial(n, max) >= failures).
- **p99 latency** — Triton gives no per-request latencies, only per-pod summary quantiles over a
  sliding 48-60 s window (policy/measurements.py), and consecutive readings share their requests, so
  they are not independent samples. The check tests the count behind the limit instead: "p99 <= L"
  means at most 1 % of requests take longer than L. If a canary pod's quantile q (0.5, 0.9, 0.95, 0.99)
  is above L, at least (1 - q - err_q) of the requests its summary covers took longer than L; with n
  requests covered (bounded by that pod's counters), that count is tested against Binomial(n, 0.01).
  L is ``max`` or ``maxRatio`` x stable's p99 (the slowest stable pod's, which errs towards passing).
  Power: a canary whose p95 is above L fails within one summary window at ~100+ requests; one whose
  slow requests are under 5 % of all is not caught by this check (the mean-latency check can be).
- **Mean latency, queue time** — one sample per pod and scrape interval (mean over that interval's
  requests; intervals hold different requests). Against stable: one-sided Mann-Whitney U of the
  canary's samples against ``maxRatio`` x stable's (H0: canary <= rho x stable in distribution),
  exact for small samples; against ``max``: a sign test (H0: median sample <= max).
- **Throughput** (requests/s per pod, per interval) and **custom PromQL** (one sample per step of a
  range query): the same Mann-Whitney / sign tests, in the direction the limit names.

Guarantee: with ``significance`` alpha, each check spends alpha / (k (k + 1)) on the analysis' k-th look
(k counts ``interval``s since the analysis started: at most one look per interval), and limits that a
check combines (``max`` and ``maxRatio``) split it equally. Summed over every look of a rollout this
is at most alpha, so **a canary that meets a check's limits is failed by that check with probability at
most alpha over the whole rollout**, however long it pauses (union bound: it holds for any dependence
between looks). Defaults: alpha 0.005 per check, two checks, so at most 1 % false rollbacks per
rollout. The assumptions: requests are independent given the time bucket (errors), interval samples
are independent (latency), and for relative p99 that stable's p99 reading is not far below its true
p99 (the ratio, 1.2 by default, is the margin). What Pass does **not** promise: that the canary is as
good as stable; a regression too small to show in the traffic seen passes (docs/canary.md has the
detectable sizes).

Worked example (error rate, maxRatio 1.5, look 4 so alpha_4 = 0.005 / 20 = 0.00025): canary 400
requests with 4 failures, stable 3600 with 0: pi = 0.1, each failure is the canary's with probability
0.15 / 1.05 = 0.143 under H0, all 4 are: p = 0.143^4 = 0.00042 > alpha_4, not failed yet (Pass: 400
requests >= minRequests 100, and no other check failed); a 5th canary failure gives p = 0.000059 -> Fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Sequence

from modeldeploy.api import canary as cs
from modeldeploy.api.conditions import format_time
from modeldeploy.policy import stats
from modeldeploy.policy.measurements import QUANTILE_ERRORS, Measurements, RevisionData

#: "p99 <= L" means at most this fraction of requests is slower than L.
P99_TAIL = 0.01


class Outcome(str, Enum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"
    NO_DATA = "NoData"


@dataclass(frozen=True)
class CheckResult:
    """One check's result and the numbers behind it (values in the check's units)."""

    name: str
    outcome: Outcome
    message: str
    canary: float | None = None
    stable: float | None = None
    limit: float | None = None  # the binding limit: max/min, or ratio x stable
    p_value: float | None = None
    alpha: float | None = None

    def as_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "result": self.outcome.value, "message": self.message}
        for key, value in (("canary", self.canary), ("stable", self.stable), ("limit", self.limit),
                           ("pValue", self.p_value), ("alpha", self.alpha)):
            if value is not None and math.isfinite(value):
                out[key] = _fmt_number(value)
        return out


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    at: datetime
    look: int
    alpha: float
    checks: tuple[CheckResult, ...]
    canary_requests: int
    stable_requests: int
    message: str

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.outcome is Outcome.FAIL)

    def as_status(self) -> dict[str, Any]:
        """``status.canary.lastAnalysis``."""
        return {
            "time": format_time(self.at),
            "result": self.outcome.value,
            "look": self.look,
            "alpha": _fmt_number(self.alpha),
            "canaryRequests": self.canary_requests,
            "stableRequests": self.stable_requests,
            "message": self.message,
            "checks": [c.as_status() for c in self.checks],
        }


def _fmt_number(value: float) -> float:
    """Status numbers with 4 significant digits (stable status for unchanged data; readable)."""
    return float(f"{value:.4g}")


def look_number(started_at: datetime, now: datetime, interval_seconds: float) -> int:
    """1 + whole intervals since the analysis started (looks at least an interval apart never share one).

    >>> from datetime import timedelta
    >>> t0 = datetime(2026, 1, 1)
    >>> [look_number(t0, t0 + timedelta(seconds=s), 10) for s in (0, 9.9, 10, 35)]
    [1, 1, 2, 4]
    """
    return max(0, math.floor((now - started_at).total_seconds() / interval_seconds)) + 1


def judge(spec: cs.AnalysisSpec, data: Measurements, *, started_at: datetime, now: datetime,
          previous_look: int = 0) -> Verdict:
    """The verdict on ``data`` (canary vs stable over one range) for the look that ``now`` is.

    ``previous_look`` (``status.canary.lastAnalysis.look``) keeps look numbers distinct even if two
    judgements fall in one interval (a clock step, an early requeue): each look spends its own alpha.
    """
    look = max(look_number(started_at, now, spec.interval_seconds), previous_look + 1)
    alpha = stats.look_alpha(spec.significance, look)
    if data.unavailable is not None or data.canary is None:
        why = data.unavailable or "no canary measurements"
        return Verdict(Outcome.NO_DATA, now, look, alpha, (), 0, 0,
                       f"metrics unavailable: {why}; holding (no promotion, no rollback)")
    canary, stable = data.canary, data.stable
    n_c = int(round(canary.requests))
    n_s = int(round(stable.requests)) if stable else 0
    checks = tuple(_CHECKS.get(m.kind, _custom)(m, canary, stable, alpha, data, spec) for m in spec.metrics)
    failed = [c for c in checks if c.outcome is Outcome.FAIL]
    if failed:
        outcome = Outcome.FAIL
        message = "; ".join(c.message for c in failed)
    elif any(c.outcome is Outcome.NO_DATA for c in checks):
        outcome = Outcome.NO_DATA
        message = "; ".join(c.message for c in checks if c.outcome is Outcome.NO_DATA) + "; holding"
    elif n_c < spec.min_requests:
        outcome = Outcome.INCONCLUSIVE
        message = f"{n_c}/{spec.min_requests} canary requests so far; no check failed"
    elif any(c.outcome is Outcome.INCONCLUSIVE for c in checks):
        outcome = Outcome.INCONCLUSIVE
        message = "; ".join(c.message for c in checks if c.outcome is Outcome.INCONCLUSIVE)
    else:
        outcome = Outcome.PASS
        message = f"{n_c} canary requests; " + "; ".join(c.message for c in checks)
    return Verdict(outcome, now, look, alpha, checks, n_c, n_s, message)


# --- checks -----------------------------------------------------------------------------------------


def _limits_alpha(check: cs.MetricCheck, alpha: float) -> float:
    """Each configured limit of a check gets an equal share of the check's alpha."""
    count = sum(v is not None for v in (check.max, check.min, check.max_ratio, check.min_ratio))
    return alpha / max(1, count)


def _result(check: cs.MetricCheck, tests: Sequence[tuple[float, float | None]], alpha: float, what: str,
            canary: float | None, stable: float | None, inconclusive: str | None = None) -> CheckResult:
    """Combine (p-value, limit) pairs of one check: Fail when any p-value is at or below its alpha."""
    a = _limits_alpha(check, alpha)
    worst = min(tests, key=lambda t: t[0]) if tests else None
    if worst is not None and worst[0] <= a:
        p, limit = worst
        return CheckResult(check.name, Outcome.FAIL, f"{check.name} {what} breaks {check.limits()} "
                           f"(p={p:.2g} <= {a:.2g})", canary, stable, limit, p, a)
    if inconclusive:
        return CheckResult(check.name, Outcome.INCONCLUSIVE, f"{check.name}: {inconclusive}", canary, stable,
                           worst[1] if worst else None, worst[0] if worst else None, a)
    p = worst[0] if worst else None
    return CheckResult(check.name, Outcome.PASS, f"{check.name} {what} within {check.limits()}"
                       + (f" (p={p:.2g})" if p is not None else ""), canary, stable,
                       worst[1] if worst else None, p, a)


def _error_rate(check: cs.MetricCheck, canary: RevisionData, stable: RevisionData | None, alpha: float,
                data: Measurements, spec: cs.AnalysisSpec) -> CheckResult:
    n_c, x_c = canary.requests, canary.failures
    rate_c = 100 * x_c / n_c if n_c > 0 else None
    rate_s = 100 * stable.failures / stable.requests if stable and stable.requests > 0 else None
    tests: list[tuple[float, float | None]] = []
    inconclusive = None
    if check.max is not None and n_c > 0:
        tests.append((stats.binom_sf(x_c, n_c, check.max / 100), check.max))
    if check.max_ratio is not None:
        if stable is None or stable.requests <= 0:
            inconclusive = "no stable requests to compare with"
        else:
            parts, x_total = _error_strata(canary, stable, check.max_ratio, data, spec.interval_seconds)
            limit = None if rate_s is None else check.max_ratio * rate_s
            tests.append((stats.sum_binom_sf(x_total, parts) if x_total > 0 else 1.0, limit))
    if n_c <= 0:
        inconclusive = "no canary requests yet"
    what = (f"{_pct(rate_c)} ({int(x_c)}/{int(n_c)} failed"
            + (f"; stable {_pct(rate_s)}, {int(stable.failures)}/{int(stable.requests)}" if rate_s is not None
               else "") + ")")
    return _result(check, tests, alpha, what, rate_c, rate_s, inconclusive)


def _error_strata(canary: RevisionData, stable: RevisionData, ratio: float, data: Measurements,
                  width: float) -> tuple[list[tuple[int, float]], int]:
    """(failures in bucket, P(a failure is the canary's under H0)) per time bucket, and the canary's
    failures in buckets that count (both revisions' requests known)."""
    buckets: dict[int, list[float]] = {}
    for rev, data_ in ((0, canary), (1, stable)):
        for i in data_.intervals:
            b = buckets.setdefault(math.floor((i.end - data.start) / width), [0.0, 0.0, 0.0, 0.0])
            b[2 * rev] += i.requests
            b[2 * rev + 1] += i.failures
    parts: list[tuple[int, float]] = []
    x_total = 0
    for n_c, x_c, n_s, x_s in buckets.values():
        f = int(round(x_c + x_s))
        if f == 0 or n_c + n_s <= 0:
            continue
        pi = n_c / (n_c + n_s)
        parts.append((f, ratio * pi / (ratio * pi + 1 - pi)))
        x_total += int(round(x_c))
    return parts, x_total


def _p99(check: cs.MetricCheck, canary: RevisionData, stable: RevisionData | None, alpha: float,
         data: Measurements, spec: cs.AnalysisSpec) -> CheckResult:
    c_p99 = _max_quantile(canary, 0.99)
    s_p99 = _max_quantile(stable, 0.99) if stable else None
    inconclusive = None
    limits: list[float] = []
    if check.max is not None:
        limits.append(check.max * 1000.0)
    if check.max_ratio is not None:
        if s_p99 is None:
            inconclusive = "no stable p99 to compare with"
        else:
            limits.append(check.max_ratio * s_p99)
    if not canary.tails:
        # No reading covering recent requests: too early, no recent traffic, or summaries switched off
        # (Triton's --metrics-config=summary_latencies=true). Never a pass.
        return CheckResult(check.name, Outcome.INCONCLUSIVE, f"{check.name}: no request latency summary "
                           "from the canary pods yet (needs requests in the last minute)")
    tests = []
    for limit in limits:
        k_lb = 0.0
        n_max = 0.0
        for tail in canary.tails:
            n_max += tail.requests_max
            above = [q for q, v in tail.quantiles if v > limit and q < 1.0]
            if above:
                q = min(above)
                k_lb += math.floor(max(0.0, 1.0 - q - QUANTILE_ERRORS.get(q, 0.001)) * tail.requests_min)
        tests.append((stats.binom_sf(k_lb, n_max, P99_TAIL), limit / 1000.0))
    what = f"p99 {_ms(c_p99)}" + (f" (stable {_ms(s_p99)})" if s_p99 is not None else "")
    return _result(check, tests, alpha, what, None if c_p99 is None else c_p99 / 1000,
                   None if s_p99 is None else s_p99 / 1000, inconclusive)


def _max_quantile(rev: RevisionData, q: float) -> float | None:
    values = [v for t in rev.tails if (v := t.value(q)) is not None]
    return max(values) if values else None


def _samples_check(check: cs.MetricCheck, x: Sequence[float], y: Sequence[float] | None, what: str,
                   canary: float | None, stable: float | None, alpha: float, unit: str = "") -> CheckResult:
    """Absolute limits by sign test, relative ones by Mann-Whitney U (x canary, y stable samples)."""
    tests: list[tuple[float, float | None]] = []
    inconclusive = None
    if check.max is not None and x:
        tests.append((stats.binom_sf(sum(v > check.max for v in x), len(x), 0.5), check.max))
    if check.min is not None and x:
        tests.append((stats.binom_sf(sum(v < check.min for v in x), len(x), 0.5), check.min))
    if check.max_ratio is not None or check.min_ratio is not None:
        if not y:
            inconclusive = "no stable samples to compare with"
        else:
            if check.max_ratio is not None:
                tests.append((stats.mann_whitney_greater(x, [check.max_ratio * v for v in y]),
                              None if stable is None else check.max_ratio * stable))
            if check.min_ratio is not None:
                tests.append((stats.mann_whitney_greater([check.min_ratio * v for v in y], x),
                              None if stable is None else check.min_ratio * stable))
    if not x and inconclusive is None:
        inconclusive = "no canary samples yet"
    return _result(check, tests, alpha, what, canary, stable, inconclusive)


def _interval_metric(value: Callable, total: Callable[[RevisionData], float | None], unit: str, label: str):
    def check_fn(check: cs.MetricCheck, canary: RevisionData, stable: RevisionData | None, alpha: float,
                 data: Measurements, spec: cs.AnalysisSpec) -> CheckResult:
        x = [v for i in canary.intervals if (v := value(i)) is not None]
        y = [v for i in stable.intervals if (v := value(i)) is not None] if stable else []
        c_val = total(canary)
        s_val = total(stable) if stable else None
        what = (f"{label} {_num(c_val, unit)} ({len(x)} samples"
                + (f"; stable {_num(s_val, unit)}, {len(y)} samples" if stable else "") + ")")
        return _samples_check(check, x, y, what, c_val, s_val, alpha, unit)
    return check_fn


def _mean(rev: RevisionData, field_name: str) -> float | None:
    succ = sum(i.successes for i in rev.intervals)
    return sum(getattr(i, field_name) for i in rev.intervals) / succ / 1000 if succ > 0 else None


def _per_pod_rate(rev: RevisionData) -> float | None:
    rates = [r for i in rev.intervals if (r := i.rate) is not None]
    return sum(rates) / len(rates) if rates else None


def _custom(check: cs.MetricCheck, canary: RevisionData, stable: RevisionData | None, alpha: float,
            data: Measurements, spec: cs.AnalysisSpec) -> CheckResult:
    x = [v for v in canary.custom.get(check.name, ()) if math.isfinite(v)]
    y = [v for v in stable.custom.get(check.name, ()) if math.isfinite(v)] if stable else []
    if not x:
        return CheckResult(check.name, Outcome.NO_DATA, f"{check.name}: the query returned no value for the canary")
    c_val = _median(x)
    s_val = _median(y) if y else None
    what = f"median {c_val:.4g} ({len(x)} samples" + (f"; stable {s_val:.4g}" if s_val is not None else "") + ")"
    return _samples_check(check, x, y if check.relative else None, what, c_val, s_val, alpha)


def _median(values: Sequence[float]) -> float:
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}%"


def _ms(value_us: float | None) -> str:
    return "n/a" if value_us is None else f"{value_us / 1000:.4g} ms"


def _num(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.4g}{unit}"


_CHECKS: dict[str, Callable[..., CheckResult]] = {
    cs.ERROR_RATE: _error_rate,
    cs.LATENCY_P99: _p99,
    cs.LATENCY_MEAN: _interval_metric(lambda i: i.mean_latency_ms, lambda r: _mean(r, "duration_us"), " ms",
                                      "mean latency"),
    cs.QUEUE_TIME: _interval_metric(lambda i: i.mean_queue_ms, lambda r: _mean(r, "queue_us"), " ms",
                                    "mean queue time"),
    cs.THROUGHPUT: _interval_metric(lambda i: i.rate, _per_pod_rate, " req/s per pod", "throughput"),
}
