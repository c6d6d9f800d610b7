"""PromQL for Triton's own metrics, per ModelDeployment, revision or track. Pure strings.

Canary analysis (per revision) and autoscaling (per track or whole ModelDeployment) ask the same
few questions of the same series, so the queries live here once. The series are Triton 2.51's
(``nv_inference_*``, see shared FACTS) with the target labels every scrape config of this project
attaches (adapters/prometheus.py lists them).

Aggregation across pods: counters and durations are summed then divided (a mean over all requests);
summary quantiles cannot be averaged across pods, so a p99 is the worst pod's (``max``), which errs
on the side of calling a revision slow.

>>> sel = selector("ns", "digits", revision="abc")
>>> sel
'namespace="ns",modeldeployment="digits",revision="abc"'
>>> error_ratio(sel, "30s")
'sum(increase(nv_inference_request_failure{namespace="ns",modeldeployment="digits",revision="abc"}[30s])) / (sum(increase(nv_inference_request_success{namespace="ns",modeldeployment="digits",revision="abc"}[30s])) + sum(increase(nv_inference_request_failure{namespace="ns",modeldeployment="digits",revision="abc"}[30s])))'
"""

from __future__ import annotations

import re
from typing import Sequence

from modeldeploy.render.names import fit


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(namespace: str, modeldeployment: str, revision: str | None = None, track: str | None = None,
             model: str | None = None) -> str:
    """Label matchers (without braces) for one ModelDeployment's series, optionally one revision/track
    and one Triton model. ``modeldeployment`` is the full name; the label holds it cut to 63 characters."""
    parts = [("namespace", namespace), ("modeldeployment", fit(modeldeployment))]
    for key, value in (("revision", revision), ("track", track), ("model", model)):
        if value is not None:
            parts.append((key, value))
    return ",".join(f"{k}={_quote(v)}" for k, v in parts)


def requests(sel: str, window: str) -> str:
    """Requests (successful + failed) in ``window``."""
    return (f"sum(increase(nv_inference_request_success{{{sel}}}[{window}])) + "
            f"sum(increase(nv_inference_request_failure{{{sel}}}[{window}]))")


def failures(sel: str, window: str) -> str:
    return f"sum(increase(nv_inference_request_failure{{{sel}}}[{window}]))"


def error_ratio(sel: str, window: str) -> str:
    """Failed / all requests in ``window`` (NaN when there were none: no data, not zero)."""
    return f"{failures(sel, window)} / ({requests(sel, window)})"


def request_rate(sel: str, window: str) -> str:
    """Requests per second (successful + failed), summed over pods."""
    return (f"sum(rate(nv_inference_request_success{{{sel}}}[{window}])) + "
            f"sum(rate(nv_inference_request_failure{{{sel}}}[{window}]))")


def inference_rate(sel: str, window: str) -> str:
    """Inferences per second (a batch of 8 counts 8), summed over pods."""
    return f"sum(rate(nv_inference_count{{{sel}}}[{window}]))"


def p99_latency_us(sel: str, quantile: str = "0.99") -> str:
    """The worst pod's request-latency quantile (Triton's summary, its own sliding window), in µs."""
    return f'max(nv_inference_request_summary_us{{quantile="{quantile}",{sel}}})'


def mean_latency_us(sel: str, window: str) -> str:
    """Mean end-to-end request duration in ``window`` (all pods), in µs."""
    return (f"sum(rate(nv_inference_request_duration_us{{{sel}}}[{window}])) / "
            f"sum(rate(nv_inference_request_success{{{sel}}}[{window}]))")


def mean_queue_us(sel: str, window: str) -> str:
    """Mean time a request waited in Triton's queue in ``window``, in µs."""
    return (f"sum(rate(nv_inference_queue_duration_us{{{sel}}}[{window}])) / "
            f"sum(rate(nv_inference_request_success{{{sel}}}[{window}]))")


def queue_to_compute(sel: str, window: str) -> str:
    """NVIDIA's saturation signal: queue time over compute time (1.0 = waiting as long as computing)."""
    return (f"sum(rate(nv_inference_queue_duration_us{{{sel}}}[{window}])) / "
            f"sum(rate(nv_inference_compute_infer_duration_us{{{sel}}}[{window}]))")


def pending_requests(sel: str) -> str:
    """Requests waiting in Triton right now, summed over pods."""
    return f"sum(nv_inference_pending_request_count{{{sel}}})"


def revisions_selector(namespace: str, modeldeployment: str, revisions: Sequence[str],
                       model: str | None = None) -> str:
    """Label matchers for several revisions of one ModelDeployment at once (one query for canary and stable).

    >>> revisions_selector("ns", "digits", ["abc", "def"], model="digits")
    'namespace="ns",modeldeployment="digits",model="digits",revision=~"abc|def"'
    """
    base = selector(namespace, modeldeployment, model=model)
    pattern = "|".join(re.sub(r"([^A-Za-z0-9_-])", r"\\\1", r) for r in revisions)
    return f"{base},revision=~{_quote(pattern)}"


def raw_samples(names: Sequence[str], sel: str, seconds: int) -> str:
    """The raw samples of these series over the last ``seconds``: a range vector, to be evaluated as an
    instant query (each point as scraped, with its timestamp; see policy/measurements.py for why).

    >>> raw_samples(["nv_inference_request_success"], 'revision="a"', 90)
    'nv_inference_request_success{revision="a"}[90s]'
    >>> raw_samples(["a_total", "b_total"], 'pod="p"', 60)
    '{__name__=~"a_total|b_total",pod="p"}[60s]'
    """
    if len(names) == 1:
        return f"{names[0]}{{{sel}}}[{int(seconds)}s]"
    return f'{{__name__=~"{"|".join(names)}",{sel}}}[{int(seconds)}s]'

def pending_growth(sel: str, window: str, window_seconds: float) -> str:
    """How fast Triton's queues grow over ``window`` (requests per second, summed over pods): the load
    the pods do not serve (an overloaded replica serves at its capacity whatever the load). ``delta``
    takes the same first and last samples as ``rate`` does, so served rate + growth is the arrival rate
    over one and the same interval."""
    return f"sum(delta(nv_inference_pending_request_count{{{sel}}}[{window}])) / {window_seconds:g}"


def recent_arrival_rate(sel: str, window: str) -> str:
    """Requests per second arriving at the pods over their last scrape interval: served (``irate``, every pod)
    plus the queue's growth over the same two samples (``idelta`` of the gauge, turned into a rate through the
    counter's own ``irate / idelta``), summed. ``window`` only bounds how old the two samples may be.

    The growth term needs the counter to have moved (its interval is known only through ``irate / idelta``):
    a pod that served nothing in its last interval — idle, just started, terminating — leaves it out
    (``> 0`` filters it; its growth is lost, which only errs low). Without that filter its 0/0 is NaN, and one
    NaN makes the whole sum NaN: one idle pod would blank the signal for every pod (it did, in the sandbox,
    after every scale-down). When no pod moved, the growth term is 0 (``or vector(0)``)."""
    served = f"nv_inference_request_success{{{sel}}}"
    return (f"sum(irate({served}[{window}])) + (sum(irate({served}[{window}]) * "
            f"idelta(nv_inference_pending_request_count{{{sel}}}[{window}]) / (idelta({served}[{window}]) > 0))"
            f" or vector(0))")


def scrape_time(sel: str, newest: bool = True) -> str:
    """Unix time of the newest sample of any pod (``newest``), or of the pod scraped least recently (the
    oldest of the pods' newest samples): when every pod has a sample newer than some time, a rate over each
    pod's last interval no longer reaches back before it.

    >>> scrape_time('namespace="ns"', newest=False)
    'min(timestamp(nv_inference_request_success{namespace="ns"}))'
    """
    return f"{'max' if newest else 'min'}(timestamp(nv_inference_request_success{{{sel}}}))"
