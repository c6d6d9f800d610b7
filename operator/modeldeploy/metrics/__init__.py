"""The operator's own Prometheus metrics: what the handlers call, and the endpoint that serves them.

Why the operator exports metrics at all: Triton's metrics say how a model serves, not whether its
ModelDeployment is Ready, Stalled, held at a compression gate, half-way through a canary or scaled by
the autoscaler; that is only in ``status``. Exporting the status as series lets alert rules
(charts/modeldeploy/files/prometheus-rules.yaml) and the dashboard join both on
``(namespace, modeldeployment)``. Every metric is listed in docs/monitoring.md.

The handlers' API (module-level, on one process-wide :class:`~modeldeploy.metrics.exporter.OperatorMetrics`):

- ``observe(namespace, name, status, spec=None)`` after every reconcile, with the status it computed;
- ``forget(namespace, name)`` when a reconcile finds the ModelDeployment gone or being deleted;
- ``record_reconcile(outcome, seconds)``, or ``with reconciling() as r: ...`` (``r.outcome = "retry"``);
- ``serve("0.0.0.0:8081")`` once at start (``modeldeploy operator --metrics-address``).

Layout: :mod:`.samples` is pure (status -> samples, the cardinality rules); :mod:`.exporter` holds the
prometheus-client registry and the HTTP server.
"""

from __future__ import annotations

from typing import Any, Mapping

from modeldeploy.metrics.exporter import OUTCOMES, OperatorMetrics, parse_address

__all__ = ["OUTCOMES", "OperatorMetrics", "default", "forget", "observe", "parse_address", "reconciling",
           "record_reconcile", "serve"]

_default = OperatorMetrics(process=True)


def default() -> OperatorMetrics:
    """The process-wide metrics the handlers write to and ``serve`` exposes."""
    return _default


def record_reconcile(outcome: str, seconds: float) -> None:
    _default.record_reconcile(outcome, seconds)


def reconciling():
    return _default.reconciling()


def observe(namespace: str, name: str, status: Mapping[str, Any] | None, spec: Mapping[str, Any] | None = None) -> None:
    _default.observe(namespace, name, status, spec)


def forget(namespace: str, name: str) -> None:
    _default.forget(namespace, name)


def serve(address: str):
    return _default.serve(address)
