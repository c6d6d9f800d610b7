"""The canary analysis verdict: canary vs stable over a window, judged statistically. Pure.

``judge(spec, measurements, started_at=..., now=...)`` returns one of

- **Pass**: at least ``minRequests`` canary requests were seen and no check found a violation;
- **Fail**: a check found statistically significant evidence that the canary breaks a limit (the
  result carries the numbers: canary and stable values, the limit, the p-value and the threshold);
- **Inconclusive**: no violation found, but too few requests to pass yet (or no stable traffic to
  compare with);
- **NoData**: Prometheus could not answer, answered nothing for the canary (once
  :data:`FIRST_SCRAPE_GRACE_S` passed since the analysis started: before, Inconclusive, because new
  pods are discovered and scraped a few seconds after they are Ready), or a custom query had no value.
  The step machine *holds* on NoData: no promotion and no rollback on missing data.

Why statistics, and which
-------------------------
Fixed thresholds on one reading (Flagger's request-success-rate >= 99 % each minute, Argo Rollouts'
``successCondition``) make a trade-off between speed and false rollbacks: a short window makes one
unlucky minute fail a healthy canary, a long one makes a bad canary serve for minutes. A test instead
asks "is there enough evidence that the canary is worse?", which a clear regression answers within
seconds and an A/A canary (same model as stable) answers "no" with known probability. The choices:

- **Error rate** — counts, judged by a *sequential* test: a mixture likelihood ratio (mSPRT) that is
  updated with every new failure and may be looked at any number of times (Ville's inequality: it
  reaches 1/alpha with probability at most alpha while the canary meets the limit). Against stable
  (``maxRatio`` rho): given that a failure happened in a 2-second stratum, under H0 "canary rate <=
  rho x stable rate" it is the canary's with probability rho*pi / (rho*pi + 1 - pi), pi the canary's
  share of that stratum's requests (the exact conditional comparison of two Poisson rates); the
  alternatives are rate ratios 2, 4, 8, 16, 64 x rho, equally weighted. The strata mean a burst of errors
  while the canary's share was high is not blamed on the canary. Against ``max``: each request fails
  with probability <= max under H0; alternatives 2..64 x max. Why sequential here and not the fixed
  tests below: errors are rare events, and a fixed test repeated every interval has to spend its alpha
  thinly (see Guarantee), so it needs 5-6 canary failures where the sequential one needs 4 (at 10 %
  traffic, none on stable) — at 10 canary requests/s with 1 % failing, ~40 s instead of 60 s+. Its
  state (the log likelihood ratios and the time processed) lives in ``status.canary.lastAnalysis.
  evidence``, so a restart continues it. Kayenta uses Mann-Whitney on time series for every metric;
  counts allow more power.
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

Guarantee: with ``significance`` alpha, the error-rate check fails a canary that meets its limits with
probability at most alpha over the whole rollout (the mSPRT above); every other check spends
alpha / (k (k + 1)) on the analysis' k-th look (k counts ``interval``s since the analysis started, at
least one more than the previous look), which sums to at most alpha over every look. Limits that a
check combines (``max`` and ``maxRatio``) split its alpha equally. So **a canary that meets a check's
limits is failed by that check with probability at most alpha over the whole rollout**, however long
it pauses (union bound: it holds for any dependence between looks). Defaults: alpha 0.005 per check, two checks, so at most 1 % false rollbacks per
rollout. The assumptions: requests are independent given the time bucket (errors), interval samples
are independent (latency), and for relative p99 that stable's p99 reading is not far below its true
p99 (the ratio, 1.2 by default, is the margin). What Pass does **not** promise: that the canary is as
good as stable; a regression too small to show in the traffic seen passes (docs/canary.md has the
detectable sizes).

Worked example (error rate, maxRatio 1.5, significance 0.005): canary 10 % of the requests, stable no
failure, the canary's 3 failures so far: under H0 each is the canary's with probability 0.15 / 1.05 =
0.143; under the alternative 64 x 1.5 it is 9.6 / 10.5 = 0.914, a likelihood ratio of 6.4 per failure.
The five alternatives give ratios 1.75, 2.8, 4.0, 5.1, 6.4 per failure; the mixture is (1/5) x (1.75^3 +
2.8^3 + 4.0^3 + 5.1^3 + 6.4^3) = 97 < 1/0.005 = 200: not yet. The 4th canary failure makes it 535 >= 200:
Fail, p <= 1/535 = 0.0019 (the always-valid p-value).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Mapping, Sequence

from modeldeploy.api import canary as cs
from modeldeploy.api.conditions import format_time
from modeldeploy.policy import stats
from modeldeploy.policy.measurements import QUANTILE_ERRORS, Measurements, RevisionData

#: "p99 <= L" means at most this fraction of requests is slower than L.
P99_TAIL = 0.01
#: How long after the analysis started a canary without any series is only not scraped *yet*: Prometheus
#: discovers a pod when it runs, and scrapes it at its next scrape (the sandbox: up to 5 s of discovery batching
#: plus its 2 s interval; Prometheus' default interval is 1 min). Until then: Inconclusive, not a metrics outage.
FIRST_SCRAPE_GRACE_S = 60.0


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
    evidence: Mapping[str, Any] = field(default_factory=dict)  # sequential tests' state, carried to the next look

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
            **({"evidence": dict(self.evidence)} if self.evidence else {}),
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
          previous: Mapping[str, Any] | None = None) -> Verdict:
    """The verdict on ``data`` (canary vs stable over one range) for the look that ``now`` is.

    ``previous`` is the stored ``status.canary.lastAnalysis`` (None for the first look): its ``look``
    keeps look numbers distinct even if two judgements fall in one interval (each look spends its own
    alpha), and its ``evidence`` carries the sequential error-rate test on.
    """
    previous = previous or {}
    look = max(look_number(started_at, now, spec.interval_seconds), int(previous.get("look") or 0) + 1)
    evidence_in: Mapping[str, Any] = previous.get("evidence") or {}
    alpha = stats.look_alpha(spec.significance, look)
    waited = (now - started_at).total_seconds()
    if data.canary_unseen and waited < FIRST_SCRAPE_GRACE_S:
        return Verdict(Outcome.INCONCLUSIVE, now, look, alpha, (), 0, 0,
                       f"{data.unavailable or 'no canary series'}: waiting for the first scrape of the canary's pods "
                       f"({waited:.0f}s of {FIRST_SCRAPE_GRACE_S:.0f}s)", dict(evidence_in))
    if data.unavailable is not None or data.canary is None:
        why = data.unavailable or "no canary measurements"
        return Verdict(Outcome.NO_DATA, now, look, alpha, (), 0, 0,
                       f"metrics unavailable: {why}; holding (no promotion, no rollback)", dict(evidence_in))
    canary, stable = data.canary, data.stable
    n_c = int(round(canary.requests))
    n_s = int(round(stable.requests)) if stable else 0
    evidence: dict[str, Any] = {}
    results = []
    for m in spec.metrics:
        if m.kind == cs.ERROR_RATE:
            result, state = _error_rate(m, canary, stable, data, spec, evidence_in.get(m.name), now)
            evidence[m.name] = state
        else:
            result = _CHECKS.get(m.kind, _custom)(m, canary, stable, alpha, data, spec)
        results.append(result)
    checks = tuple(results)
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
    return Verdict(outcome, now, look, alpha, checks, n_c, n_s, message, evidence)


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


#: Alternatives of the sequential error-rate test: rate ratio (or rate) this many times the limit.
ERROR_ALTERNATIVES = (2.0, 4.0, 8.0, 16.0, 64.0)
#: Width of the strata (time cells) the error-rate test conditions on.
STRATUM_S = 2.0
#: Only data this long before ``now`` is added to the evidence (scrapes still being ingested).
INGEST_LAG_S = 2.0


def _error_rate(check: cs.MetricCheck, canary: RevisionData, stable: RevisionData | None, data: Measurements,
                spec: cs.AnalysisSpec, state: Mapping[str, Any] | None, now: datetime
                ) -> tuple[CheckResult, dict[str, Any]]:
    """The sequential error-rate test: time cells not yet counted update the stored log likelihood ratios."""
    state = dict(state or {})
    through = float(state.get("through", data.start))
    limits = sum(v is not None for v in (check.max, check.max_ratio))
    a = spec.significance / max(1, limits)
    horizon = min(now.timestamp() - INGEST_LAG_S, _complete_until(canary, stable))
    strata, state["through"] = _cells(canary, stable, through, horizon)
    tests: list[tuple[float, float | None]] = []
    if check.max_ratio is not None:
        llr = list(state.get("relative") or [0.0] * len(ERROR_ALTERNATIVES))
        for n_c, x_c, n_s, x_s in strata.values():
            if n_c <= 0 or n_s <= 0 or x_c + x_s == 0:
                continue
            pi = n_c / (n_c + n_s)
            p0 = _share(check.max_ratio, pi)
            for k, g in enumerate(ERROR_ALTERNATIVES):
                p1 = _share(check.max_ratio * g, pi)
                llr[k] += x_c * math.log(p1 / p0) + x_s * math.log((1 - p1) / (1 - p0))
        state["relative"] = [round(v, 6) for v in llr]
        rate_s = 100 * stable.failures / stable.requests if stable and stable.requests > 0 else None
        tests.append((_always_valid_p(llr), None if rate_s is None else check.max_ratio * rate_s))
    if check.max is not None:
        p0 = check.max / 100
        llr = list(state.get("absolute") or [0.0] * len(ERROR_ALTERNATIVES))
        for n_c, x_c, _, _ in strata.values():
            if n_c <= 0:
                continue
            for k, g in enumerate(ERROR_ALTERNATIVES):
                if p0 <= 0.0:
                    llr[k] = math.inf if x_c > 0 else llr[k]
                    continue
                p1 = min(0.999, p0 * g)
                if p1 <= p0:
                    continue
                llr[k] += x_c * math.log(p1 / p0) + (n_c - x_c) * math.log((1 - p1) / (1 - p0))
        state["absolute"] = [v if math.isinf(v) else round(v, 6) for v in llr]
        tests.append((_always_valid_p(llr), check.max))
    n_c, x_c = canary.requests, canary.failures
    rate_c = 100 * x_c / n_c if n_c > 0 else None
    rate_s = 100 * stable.failures / stable.requests if stable and stable.requests > 0 else None
    inconclusive = None
    if n_c <= 0:
        inconclusive = "no canary requests yet"
    elif check.max_ratio is not None and (stable is None or stable.requests <= 0):
        inconclusive = "no stable requests to compare with"
    what = (f"{_pct(rate_c)} ({int(x_c)}/{int(n_c)} failed"
            + (f"; stable {_pct(rate_s)}, {int(stable.failures)}/{int(stable.requests)}" if rate_s is not None
               else "") + ")")
    result = _result(check, tests, a * limits, what, rate_c, rate_s, inconclusive)
    return result, state


def _complete_until(*revisions: RevisionData | None) -> float:
    """The time up to which every pod still being scraped has reported (pods silent for more than three of
    their scrape intervals are taken as gone)."""
    ends = []
    for rev in revisions:
        for pod in (rev.pods if rev else ()):
            ivs = [i for i in rev.intervals if i.pod == pod]
            if ivs:
                ends.append((max(i.end for i in ivs), statistics.median(i.end - i.start for i in ivs)))
    if not ends:
        return -math.inf
    latest = max(e for e, _ in ends)
    active = [e for e, step in ends if e >= latest - 3 * step]
    return min(active)


def _cells(canary: RevisionData, stable: RevisionData | None, through: float, horizon: float
           ) -> tuple[dict[int, list[float]], float]:
    """[canary requests, canary failures, stable requests, stable failures] per STRATUM_S cell inside
    (through, horizon]. Each scrape interval's counts are spread evenly over its span (linear interpolation
    of the counters), so the two revisions, scraped at different moments, are compared over the same time.
    Also returns the new ``through``: the end of the last cell counted."""
    cells: dict[int, list[float]] = {}
    if not (math.isfinite(through) and math.isfinite(horizon)):  # no pod has a complete interval yet
        return cells, through
    first, last = math.ceil(through / STRATUM_S - 1e-9), math.floor(horizon / STRATUM_S + 1e-9)
    if last <= first:
        return cells, through
    lo, hi = first * STRATUM_S, last * STRATUM_S
    for rev, rdata in ((0, canary), (1, stable)):
        for i in (rdata.intervals if rdata else ()):
            if i.end <= lo or i.start >= hi or i.end <= i.start:
                continue
            span = i.end - i.start
            for k in range(max(first, math.floor(i.start / STRATUM_S)), min(last, math.ceil(i.end / STRATUM_S))):
                overlap = min(i.end, (k + 1) * STRATUM_S) - max(i.start, k * STRATUM_S)
                if overlap <= 0:
                    continue
                cell = cells.setdefault(k, [0.0, 0.0, 0.0, 0.0])
                cell[2 * rev] += i.requests * overlap / span
                cell[2 * rev + 1] += i.failures * overlap / span
    return cells, last * STRATUM_S


def _share(ratio: float, pi: float) -> float:
    """P(a failure is the canary's) when its rate is ``ratio`` x stable's and it has ``pi`` of the requests."""
    return ratio * pi / (ratio * pi + 1 - pi)


def _always_valid_p(llr: Sequence[float]) -> float:
    """1 / (the equally weighted mixture of the likelihood ratios), capped at 1."""
    top = max(llr)
    if math.isinf(top):
        return 0.0
    log_mix = top + math.log(sum(math.exp(v - top) for v in llr) / len(llr))
    return 1.0 if log_mix <= 0 else math.exp(-log_mix)


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
    cs.LATENCY_P99: _p99,
    cs.LATENCY_MEAN: _interval_metric(lambda i: i.mean_latency_ms, lambda r: _mean(r, "duration_us"), " ms",
                                      "mean latency"),
    cs.QUEUE_TIME: _interval_metric(lambda i: i.mean_queue_ms, lambda r: _mean(r, "queue_us"), " ms",
                                    "mean queue time"),
    cs.THROUGHPUT: _interval_metric(lambda i: i.rate, _per_pod_rate, " req/s per pod", "throughput"),
}
