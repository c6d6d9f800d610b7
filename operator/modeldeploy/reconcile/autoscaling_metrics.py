"""Observe the autoscaling signals of one ModelDeployment (or one track) through a MetricsProvider.

The I/O half of autoscaling: the policy (``policy/autoscaling.py``) is a pure function of the numbers
this returns. Only the queries the spec's targets need are run (the queries live in
``render/promql.py``), each on its own, so that one failing query costs only its own signal.

The rule for what is a number (the fail-static contract with the policy):

- unreachable Prometheus, an error, an empty result, several series where one was expected: ``None``
  (no data), with the first error kept in ``Signals.error``;
- NaN: no data too — except when the same window shows zero requests: a mean or a quantile over no
  requests is NaN, but the pods are idle, so latency, queue time and queue/compute read 0. (Without
  this rule an idle model could never scale in.)
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime

from modeldeploy.adapters.prometheus import MetricsProvider, MetricsUnavailable, Sample
from modeldeploy.api.autoscaling import AutoscalingSpec
from modeldeploy.policy.autoscaling import Signals
from modeldeploy.render import promql


def _value(samples: list[Sample], what: str) -> float:
    """The value of a one-series result (NaN kept); MetricsUnavailable for none or several."""
    if not samples:
        raise MetricsUnavailable(f"{what}: no data")
    if len(samples) > 1:
        raise MetricsUnavailable(f"{what}: {len(samples)} series where one was expected")
    return samples[0].value


def queries(spec: AutoscalingSpec, namespace: str, name: str, track: str | None = None,
            model: str | None = None) -> dict[str, str]:
    """Signals field -> PromQL, for the targets ``spec`` sets (request rate always: it tells idle from
    no data; the scrape times always: they confirm a scale-up)."""
    sel = promql.selector(namespace, name, track=track, model=model)
    window = f"{spec.metrics_window_seconds}s"
    out = {"request_rate": promql.request_rate(sel, window)}
    if spec.target_inferences_per_second_per_replica is not None:
        out["inference_rate"] = promql.inference_rate(sel, window)
        out["pending_growth"] = promql.pending_growth(sel, window, spec.metrics_window_seconds)
        out["recent_arrival_rate"] = promql.recent_arrival_rate(sel, window)
    if spec.target_pending_requests_per_replica is not None:
        out["pending_requests"] = promql.pending_requests(sel)
    if spec.target_p99_latency_ms is not None:
        out["p99_latency_us"] = promql.p99_latency_us(sel)
    if spec.target_queue_us is not None:
        out["queue_us"] = promql.mean_queue_us(sel, window)
    if spec.target_queue_to_compute_ratio is not None:
        out["queue_to_compute"] = promql.queue_to_compute(sel, window)
    # when the pods were last scraped: a scale-up waits for a newer scrape of every pod (policy docstring)
    out["newest_scrape"] = promql.scrape_time(sel, newest=True)
    out["stalest_scrape"] = promql.scrape_time(sel, newest=False)
    return out


_IDLE_NAN = ("p99_latency_us", "queue_us", "queue_to_compute")


def observe(provider: MetricsProvider, spec: AutoscalingSpec, namespace: str, name: str, *,
            track: str | None = None, model: str | None = None, at: datetime | None = None) -> Signals:
    """The signals for ModelDeployment ``namespace/name`` (one ``track`` when given: during a canary the
    whole ModelDeployment is observed and the policy splits the total). Never raises for metrics
    problems: what could not be read is ``None``."""
    values: dict[str, float | None] = {}
    error = None
    for field, query in queries(spec, namespace, name, track, model).items():
        try:
            values[field] = _value(provider.query(query, at), f"{field} of {namespace}/{name}")
        except MetricsUnavailable as exc:
            values[field] = None
            error = error or str(exc)
    idle = values.get("request_rate") == 0.0 or values.get("inference_rate") == 0.0
    for field, value in values.items():
        if value is not None and math.isnan(value):
            values[field] = 0.0 if (idle and field in _IDLE_NAN) else None
            if values[field] is None:
                error = error or f"{field} of {namespace}/{name}: value is NaN"
        elif value is not None and math.isinf(value):
            values[field] = None
            error = error or f"{field} of {namespace}/{name}: value is {value}"
    return replace(Signals(), error=error, **values)


def has_data(signals: Signals) -> bool:
    """True when at least one signal has a number (else: the no-data marker: hold, condition, Event)."""
    return any(getattr(signals, f) is not None for f in
               ("inference_rate", "pending_requests", "pending_growth", "recent_arrival_rate", "p99_latency_us",
                "queue_us", "queue_to_compute"))
