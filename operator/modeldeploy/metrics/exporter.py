"""The operator's metrics registry and HTTP endpoint, on ``prometheus-client``.

Two kinds of metrics, two mechanisms:

- **Per-ModelDeployment state** (phase, conditions, replicas, canary, autoscaler, compression) is a
  snapshot: :class:`StatusCollector` keeps the latest samples of each ModelDeployment (computed by the
  pure :func:`modeldeploy.metrics.samples.samples`) and renders them at scrape time, the way
  kube-state-metrics renders objects. ``forget`` drops a ModelDeployment, so its series disappear
  with it instead of lingering at their last value (what labelled ``Gauge`` children would do unless
  every label combination were removed one by one).
- **Reconcile activity** is counted as it happens: ``modeldeploy_reconcile_total{outcome}`` and
  ``modeldeploy_reconcile_duration_seconds{outcome}``, with ``outcome`` one of :data:`OUTCOMES`; every
  outcome's series exists from the start, so ``rate()`` and ratios work before the first error.

Why a registry of our own and not prometheus-client's global one: tests build as many independent
exporters as they like, and nothing another library registers globally ends up on our endpoint.
Thread safety: Kopf runs handlers in a thread pool; the collector's dictionary is guarded by a lock,
and the client's counters are thread-safe.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modeldeploy import __version__
from modeldeploy.metrics.samples import FAMILIES, Sample, samples

#: Reconcile outcomes: ``success`` (status computed and written or unchanged), ``retry`` (a temporary
#: failure the operator retries, e.g. an apply refused), ``error`` (an exception escaped the reconcile).
OUTCOMES = ("success", "retry", "error")
#: Reconcile durations: a status-only pass takes milliseconds, an apply of three objects tens of
#: milliseconds, a slow API server seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class StatusCollector(Collector):
    """The latest samples per ModelDeployment, rendered as gauge families at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_object: dict[tuple[str, str], list[Sample]] = {}

    def update(self, namespace: str, name: str, new: list[Sample]) -> None:
        with self._lock:
            self._by_object[(namespace, name)] = new

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._by_object.pop((namespace, name), None)

    def keys(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._by_object)

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(f.name, f.help, labels=f.labels) for f in FAMILIES.values()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            current = [s for key in sorted(self._by_object) for s in self._by_object[key]]
        families = {name: GaugeMetricFamily(f.name, f.help, labels=f.labels) for name, f in FAMILIES.items()}
        for sample in current:
            families[sample.name].add_metric(list(sample.labels), sample.value)
        yield from families.values()


@dataclass
class ReconcileTimer:
    """Set ``outcome`` inside a :meth:`OperatorMetrics.reconciling` block to record something other than
    success (an exception that escapes records ``error`` unless ``outcome`` was set before it)."""

    outcome: str | None = None


class OperatorMetrics:
    """Everything the operator exports, on one registry.

    >>> m = OperatorMetrics()
    >>> m.observe("ml", "digits", {"phase": "Ready", "readyReplicas": 1}, {"replicas": 1})
    >>> m.record_reconcile("success", 0.02)
    >>> text = m.exposition().decode()
    >>> 'modeldeploy_phase{modeldeployment="digits",namespace="ml",phase="Ready"} 1.0' in text
    True
    >>> 'modeldeploy_reconcile_total{outcome="success"} 1.0' in text
    True
    >>> m.forget("ml", "digits")
    >>> "digits" in m.exposition().decode()
    False
    """

    def __init__(self, registry: CollectorRegistry | None = None, version: str = __version__,
                 process: bool = False) -> None:
        self.registry = registry or CollectorRegistry()
        Info("modeldeploy_operator", "1 while the operator runs; its version.",
             registry=self.registry).info({"version": version})
        self._reconciles = Counter("modeldeploy_reconcile", "Reconciles of a ModelDeployment, by outcome.",
                                   ["outcome"], registry=self.registry)
        self._durations = Histogram("modeldeploy_reconcile_duration_seconds",
                                    "Time one reconcile of a ModelDeployment took, by outcome.", ["outcome"],
                                    buckets=DURATION_BUCKETS, registry=self.registry)
        for outcome in OUTCOMES:
            self._reconciles.labels(outcome)
            self._durations.labels(outcome)
        self.status = StatusCollector()
        self.registry.register(self.status)
        if process:  # process_* (memory, CPU, open files, start time) of the operator process, on Linux
            ProcessCollector(registry=self.registry)

    def record_reconcile(self, outcome: str, seconds: float) -> None:
        """Count one reconcile and its duration. ``outcome`` must be one of :data:`OUTCOMES`."""
        if outcome not in OUTCOMES:
            raise ValueError(f"reconcile outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        if seconds < 0:
            raise ValueError(f"reconcile duration {seconds} is negative")
        self._reconciles.labels(outcome).inc()
        self._durations.labels(outcome).observe(seconds)

    @contextlib.contextmanager
    def reconciling(self, clock: Callable[[], float] = time.perf_counter) -> Iterator[ReconcileTimer]:
        """Time the block and record it: ``success``, ``error`` when an exception escapes, or whatever
        the block set on the yielded timer (e.g. ``retry`` before raising Kopf's TemporaryError)."""
        timer = ReconcileTimer()
        start = clock()
        try:
            yield timer
        except BaseException:
            self.record_reconcile(timer.outcome or "error", clock() - start)
            raise
        self.record_reconcile(timer.outcome or "success", clock() - start)

    def observe(self, namespace: str, name: str, status: Mapping[str, Any] | None,
                spec: Mapping[str, Any] | None = None) -> None:
        """Replace the ModelDeployment's series with those of ``status`` (and ``spec``: desired replicas,
        latency objective). Call it with the status the reconcile computed, written or not."""
        self.status.update(namespace, name, samples(namespace, name, status, spec))

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a ModelDeployment that is gone (or being deleted)."""
        self.status.remove(namespace, name)

    def exposition(self) -> bytes:
        """The text a scrape gets (Prometheus text format)."""
        return generate_latest(self.registry)

    def serve(self, address: str) -> tuple[Any, threading.Thread]:
        """Serve ``/metrics`` on ``address`` (``HOST:PORT``; port 0 picks a free one) from a daemon thread.
        Returns (server, thread); ``server.server_address`` has the port bound."""
        from prometheus_client import start_http_server

        host, port = parse_address(address)
        return start_http_server(port, addr=host, registry=self.registry)


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, meaning every interface) -> (host, port).

    >>> parse_address("127.0.0.1:8081"), parse_address(":9000"), parse_address("[::1]:80")
    (('127.0.0.1', 8081), ('0.0.0.0', 9000), ('::1', 80))
    >>> parse_address("8081")
    Traceback (most recent call last):
    ...
    ValueError: metrics address '8081': expected HOST:PORT, e.g. 0.0.0.0:8081
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"metrics address {address!r}: expected HOST:PORT, e.g. 0.0.0.0:8081")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
