"""The metrics provider: one narrow interface to Prometheus for canary analysis and autoscaling.

Why a Protocol and not the client itself: the decisions that read metrics (the canary verdict, the
replica count) are pure functions of numbers, and must treat "no data" differently from "zero" — an
unreachable Prometheus, an empty result or a NaN must hold a rollout or keep the replica count, never
look like a healthy or idle model. This module is the only place that turns Prometheus' answers (or
its silence) into either numbers or :class:`MetricsUnavailable`, so that rule lives in one spot.
Flagger does the same with ``pkg/metrics/providers.Interface`` (``RunQuery``, ``IsOnline``).

Series labels (what the sandbox's scrape config and docs/monitoring.md attach to every Triton
series): ``namespace``, ``pod``, ``modeldeployment``, ``revision``, ``track``, ``modeldeploy_model``,
plus Triton's own ``model`` and ``version``. Query builders are in :mod:`modeldeploy.render.promql`.

The client is ``prometheus-api-client`` (sync); callers run in Kopf's thread pool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Protocol, Sequence


class MetricsUnavailable(RuntimeError):
    """Prometheus could not answer the question: unreachable, an error, or no usable value."""


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: its labels and value (NaN kept as NaN; callers decide)."""

    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Series:
    """One series of a range-vector or range-query answer: labels and (unix seconds, value) points."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


class MetricsProvider(Protocol):
    """What analysis and autoscaling need from a metrics backend."""

    def query(self, promql: str, at: datetime | None = None) -> list[Sample]:
        """Evaluate an instant query (at ``at``, default now). Raises MetricsUnavailable when the
        backend cannot be reached or rejects the query; an empty list is a valid answer."""
        ...

    def is_online(self) -> bool:
        ...


class SeriesProvider(MetricsProvider, Protocol):
    """What canary analysis needs on top: raw samples and range queries (policy/measurements.py says why)."""

    def query_series(self, promql: str, at: datetime | None = None) -> list[Series]:
        """Evaluate an instant query whose result is a range vector (``metric{...}[90s]``): every series
        with its raw samples as scraped. MetricsUnavailable as for :meth:`query`."""
        ...

    def query_range(self, promql: str, start: datetime, end: datetime, step_seconds: float) -> list[Series]:
        """Evaluate ``promql`` at every ``step_seconds`` from ``start`` to ``end``."""
        ...


def scalar(samples: Sequence[Sample], what: str = "query") -> float:
    """The single finite value of a one-element result; MetricsUnavailable for empty, several or NaN.

    >>> scalar([Sample(0.5)])
    0.5
    >>> scalar([], "p99")
    Traceback (most recent call last):
    ...
    modeldeploy.adapters.prometheus.MetricsUnavailable: p99: no data
    """
    if not samples:
        raise MetricsUnavailable(f"{what}: no data")
    if len(samples) > 1:
        raise MetricsUnavailable(f"{what}: {len(samples)} series where one was expected")
    value = samples[0].value
    if not math.isfinite(value):
        raise MetricsUnavailable(f"{what}: value is {value}")
    return value


class PrometheusProvider:
    """:class:`MetricsProvider` over prometheus-api-client's ``PrometheusConnect``."""

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 1):
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.url = url.rstrip("/")
        self.timeout = timeout
        # The client's default (3 retries, backoff 1 s) blocks ~6 s per query while Prometheus is down;
        # callers poll again at their own interval, and a hold must be reported within one.
        retry = Retry(total=retries, backoff_factor=0.1, status_forcelist=[500, 502, 503, 504],
                      allowed_methods=["GET", "POST"])
        self._client = PrometheusConnect(url=self.url, disable_ssl=True, retry=retry)

    def query(self, promql: str, at: datetime | None = None) -> list[Sample]:
        params = {"timeout": f"{self.timeout:g}s"}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        try:
            result = self._client.custom_query(promql, params=params, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - the client raises requests/PrometheusApiClient errors alike
            raise MetricsUnavailable(f"Prometheus {self.url}: {_one_line(exc)}") from None
        out = []
        for item in result or ():
            try:
                out.append(Sample(float(item["value"][1]), dict(item.get("metric") or {})))
            except (KeyError, IndexError, TypeError, ValueError):
                raise MetricsUnavailable(f"Prometheus {self.url}: unexpected answer to {promql!r}") from None
        return out

    def query_series(self, promql: str, at: datetime | None = None) -> list[Series]:
        params = {"timeout": f"{self.timeout:g}s"}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        try:
            result = self._client.custom_query(promql, params=params, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            raise MetricsUnavailable(f"Prometheus {self.url}: {_one_line(exc)}") from None
        return self._series(result, promql)

    def query_range(self, promql: str, start: datetime, end: datetime, step_seconds: float) -> list[Series]:
        try:
            result = self._client.custom_query_range(promql, start_time=start, end_time=end,
                                                     step=f"{step_seconds:g}s",
                                                     params={"timeout": f"{self.timeout:g}s"}, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            raise MetricsUnavailable(f"Prometheus {self.url}: {_one_line(exc)}") from None
        return self._series(result, promql)

    def _series(self, result: object, promql: str) -> list[Series]:
        out = []
        for item in result or ():  # type: ignore[union-attr]
            try:
                raw = item["values"] if "values" in item else [item["value"]]
                points = tuple((float(t), float(v)) for t, v in raw)
            except (KeyError, IndexError, TypeError, ValueError):
                raise MetricsUnavailable(f"Prometheus {self.url}: unexpected answer to {promql!r}") from None
            out.append(Series(dict(item.get("metric") or {}), points))
        return out

    def is_online(self) -> bool:
        try:
            return bool(self._client.check_prometheus_connection(params={"timeout": f"{self.timeout:g}s"}))
        except Exception:  # noqa: BLE001
            return False


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] + ("…" if len(text) > limit else "")
