"""Read what canary analysis judges from Prometheus: the I/O half of the verdict.

``measure`` asks a :class:`~modeldeploy.adapters.prometheus.SeriesProvider` for the raw samples of
Triton's counters and latency summaries of the canary and stable revisions (one query for both
revisions, one more for the summaries, one range query per custom metric and revision) and turns them
into :class:`~modeldeploy.policy.measurements.Measurements` with the pure builders. Everything that
can go wrong with the metrics backend becomes ``Measurements.unavailable`` (the verdict is then
NoData and the rollout holds) — never an exception, never zeros.

The range: from the analysis start (``status.canary.analysisStartedAt``) or ``now - window``,
whichever is later, to ``now``. Counters are read from :data:`LOOKBACK_PAD_S` earlier, so that the
first interval of the range has its starting sample and every latency summary reading can be bounded
by the counters of the 60 s before it.

Worked example: canary ``a1``, stable ``s0``, window 5 min, started 40 s ago, now = 12:00:40 ->
``{__name__=~"nv_inference_request_success|nv_inference_request_failure|nv_inference_request_duration_us",
namespace="ns",modeldeployment="digits",model="digits",revision=~"a1|s0"}[115s]`` at 12:00:40, intervals
kept from 12:00:00.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from modeldeploy.adapters.prometheus import MetricsUnavailable, Series, SeriesProvider
from modeldeploy.api import canary as cs
from modeldeploy.policy import measurements as ms
from modeldeploy.render import promql

#: Extra history read before the range: one summary window (60 s) plus a few scrapes.
LOOKBACK_PAD_S = 75


@dataclass(frozen=True)
class AnalysisTarget:
    """Which series belong to this rollout."""

    namespace: str
    name: str  # the ModelDeployment
    model: str  # Triton's model name (the ``model`` label)
    canary_revision: str
    stable_revision: str | None


def analysis_range(spec: cs.AnalysisSpec, started_at: datetime, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) of the data judged at ``now``."""
    return max(started_at, now - timedelta(seconds=spec.window_seconds)), now


def _counter_names(spec: cs.AnalysisSpec) -> list[str]:
    names = [ms.SUCCESS, ms.FAILURE, ms.DURATION]
    if any(m.kind == cs.QUEUE_TIME for m in spec.metrics):
        names.append(ms.QUEUE)
    return names


def measure(provider: SeriesProvider, target: AnalysisTarget, spec: cs.AnalysisSpec, *, started_at: datetime,
            now: datetime) -> ms.Measurements:
    """Canary and stable measurements over the analysis range, or why there are none."""
    start, end = analysis_range(spec, started_at, now)
    revisions = [target.canary_revision] + ([target.stable_revision] if target.stable_revision else [])
    sel = promql.revisions_selector(target.namespace, target.name, revisions, model=target.model)
    lookback = math.ceil((end - start).total_seconds()) + LOOKBACK_PAD_S
    try:
        raw = provider.query_series(promql.raw_samples(_counter_names(spec), sel, lookback), at=now)
        if any(m.kind == cs.LATENCY_P99 for m in spec.metrics):
            raw += provider.query_series(promql.raw_samples([ms.SUMMARY], sel, LOOKBACK_PAD_S), at=now)
        by_rev: dict[str, list[ms.RawSeries]] = {}
        for s in raw:
            by_rev.setdefault(s.labels.get("revision", ""), []).append(ms.RawSeries(s.labels, s.points))
        if not by_rev.get(target.canary_revision):
            return ms.Measurements(start.timestamp(), end.timestamp(), canary_unseen=True, unavailable=(
                f"Prometheus has no series of canary revision {target.canary_revision} "
                f"(namespace {target.namespace}, {target.name}); are its pods scraped?"))
        custom = {rev: _custom_samples(provider, target, spec, rev, start, end) for rev in revisions}
    except MetricsUnavailable as exc:
        return ms.Measurements(start.timestamp(), end.timestamp(), unavailable=str(exc))
    since = start.timestamp()
    canary = ms.revision_data(target.canary_revision, by_rev[target.canary_revision], since=since,
                              custom=custom[target.canary_revision])
    stable = None
    if target.stable_revision and by_rev.get(target.stable_revision):
        stable = ms.revision_data(target.stable_revision, by_rev[target.stable_revision], since=since,
                                  custom=custom[target.stable_revision])
        if not stable.intervals and not stable.tails and not any(stable.custom.values()):
            stable = None
    return ms.Measurements(start.timestamp(), end.timestamp(), canary, stable)


def _custom_samples(provider: SeriesProvider, target: AnalysisTarget, spec: cs.AnalysisSpec, revision: str,
                    start: datetime, end: datetime) -> dict[str, tuple[float, ...]]:
    out: dict[str, tuple[float, ...]] = {}
    for check in spec.metrics:
        if check.query is None or (revision != target.canary_revision and not check.relative):
            continue
        query = cs.render_query(check.query, namespace=target.namespace, revision=revision, model=target.model)
        series: list[Series] = provider.query_range(query, start, end, spec.interval_seconds)
        out[check.name] = tuple(v for s in series for _, v in s.points if math.isfinite(v))
    return out
