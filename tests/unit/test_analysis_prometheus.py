"""The metrics reader against a real Prometheus: raw samples, labels, regex revisions.

Two tiny exporters stand in for a canary and a stable Triton pod: each scrape of ``/metrics`` adds a
known number of requests, failures and request time to Triton-named counters, and serves fixed
summary quantiles. Prometheus scrapes them every 2 s with the target labels our scrape configs attach.
The reader (reconcile/analysis.py through adapters/prometheus.PrometheusProvider) must then see every
interval's exact increase — what query_range with rate() would blur — and the latest quantiles with
request bounds, and the verdict on the two must follow.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modeldeploy.adapters.prometheus import MetricsUnavailable, PrometheusProvider
from modeldeploy.api import canary as cs
from modeldeploy.policy import analysis as an
from modeldeploy.reconcile import analysis as ra
from modeldeploy.sandbox import prometheus as prom

MODEL = "digits"


class Exporter:
    """Serves Triton-named metrics; every scrape adds ``per_scrape`` requests (``failures`` of them failed)."""

    def __init__(self, per_scrape: int, failures: int, latency_us: float, p99_us: float):
        self.per_scrape, self.failures, self.latency_us, self.p99_us = per_scrape, failures, latency_us, p99_us
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def render(self) -> str:
        self.scrapes += 1
        ok = self.scrapes * (self.per_scrape - self.failures)
        failed = self.scrapes * self.failures
        lab = f'model="{MODEL}",version="1"'
        lines = [
            "# TYPE nv_inference_request_success counter", f"nv_inference_request_success{{{lab}}} {ok}",
            "# TYPE nv_inference_request_failure counter",
            f'nv_inference_request_failure{{{lab},reason="BACKEND"}} {failed}',
            f'nv_inference_request_failure{{{lab},reason="REJECTED"}} 0',
            "# TYPE nv_inference_request_duration_us counter",
            f"nv_inference_request_duration_us{{{lab}}} {ok * self.latency_us}",
            "# TYPE nv_inference_request_summary_us summary",
        ]
        for q, factor in (("0.5", 0.8), ("0.9", 0.9), ("0.95", 0.95), ("0.99", 1.0), ("0.999", 1.2)):
            lines.append(f'nv_inference_request_summary_us{{{lab},quantile="{q}"}} {self.p99_us * factor}')
        lines += [f"nv_inference_request_summary_us_sum{{{lab}}} {ok * self.latency_us}",
                  f"nv_inference_request_summary_us_count{{{lab}}} {ok}", ""]
        return "\n".join(lines)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """A real Prometheus scraping the two exporters with static targets and our target labels (the sandbox's
    own build when made, else Debian's, which has no Kubernetes discovery but needs none here)."""
    import shutil
    import subprocess

    import yaml

    binary = prom.find_binary() or shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (make setup)")
    home = tmp_path_factory.mktemp("prometheus")
    canary = Exporter(per_scrape=20, failures=2, latency_us=9000, p99_us=20000)
    stable = Exporter(per_scrape=90, failures=0, latency_us=9000, p99_us=12000)
    targets = [{"targets": [f"127.0.0.1:{e.port}"],
                "labels": {"namespace": "ns-analysis", "pod": pod, "modeldeployment": "digits", "revision": rev,
                           "track": track, "modeldeploy_model": MODEL}}
               for e, pod, rev, track in ((canary, "digits-canary-0", "a1", "canary"),
                                          (stable, "digits-stable-0", "s0", "stable"))]
    config = {"global": {"scrape_interval": prom.SCRAPE_INTERVAL, "evaluation_interval": prom.SCRAPE_INTERVAL},
              "scrape_configs": [{"job_name": prom.JOB, "static_configs": targets}]}
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = prom._free_port()
    log = open(home / "prometheus.log", "ab")
    proc = subprocess.Popen([str(binary), f"--config.file={home / 'prometheus.yml'}",
                             f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        prom.wait_ready(url, proc, home / "prometheus.log", 30)
        yield url, canary, stable
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        canary.close()
        stable.close()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_reader_sees_every_scrape_and_the_verdict_follows(prometheus):
    url, canary, stable = prometheus
    provider = PrometheusProvider(url)
    started = datetime.now(timezone.utc)
    target = ra.AnalysisTarget("ns-analysis", "digits", MODEL, "a1", "s0")
    spec = cs.AnalysisSpec(min_requests=50)

    def judged():
        now = datetime.now(timezone.utc)
        data = ra.measure(provider, target, spec, started_at=started, now=now)
        if data.unavailable is not None or not data.canary or not data.stable or len(data.canary.intervals) < 4:
            return None
        return data, an.judge(spec, data, started_at=started, now=now)

    # the error test needs cells that both revisions' scrapes have covered (and ~6 canary failures):
    # a few scrapes after the start, later under load; the deadline is generous
    data, verdict = wait_for(lambda: (r := judged()) and {c.name for c in r[1].failed} >= {"errorRate"} and r,
                             90, "a verdict with the error-rate check failed")
    # every interval holds whole scrapes' increases (one, or more if a scrape was lost under load):
    # no extrapolation, no resampling
    assert all(i.failures > 0 and i.failures % 2 == 0 and i.successes == 9 * i.failures for i in data.canary.intervals)
    assert all(i.failures == 0 and i.successes > 0 and i.successes % 90 == 0 for i in data.stable.intervals)
    assert {(i.successes, i.failures) for i in data.canary.intervals} >= {(18, 2)}
    assert {i.mean_latency_ms for i in data.canary.intervals} == {9.0}
    (tail,) = data.canary.tails
    assert tail.pod == "digits-canary-0" and tail.value(0.99) == 20000 and tail.value(0.5) == 16000
    assert 0 < tail.requests_min <= tail.requests_max
    # 10% of the canary's requests fail, none of stable's; its p50 (16 ms) is above 1.2 x stable's p99 (14.4 ms)
    assert verdict.outcome is an.Outcome.FAIL, verdict.message
    assert {c.name for c in verdict.failed} == {"errorRate", "latencyP99"}, verdict.message
    assert verdict.evidence["errorRate"]["through"] > started.timestamp()


def test_unreachable_prometheus_is_metrics_unavailable():
    provider = PrometheusProvider("http://127.0.0.1:9", timeout=1.0)
    began = time.monotonic()
    with pytest.raises(MetricsUnavailable, match="127.0.0.1:9"):
        provider.query_series("up[1m]")
    # one quick retry, not the client's default 3 with 1 s backoff (~6 s): a hold is reported within an interval
    assert time.monotonic() - began < 4.0
    data = ra.measure(provider, ra.AnalysisTarget("ns", "d", "m", "a", "b"), cs.AnalysisSpec(),
                      started_at=datetime.now(timezone.utc) - timedelta(seconds=30), now=datetime.now(timezone.utc))
    assert data.unavailable and "127.0.0.1:9" in data.unavailable


def test_range_query_for_custom_metrics(prometheus):
    url, *_ = prometheus
    provider = PrometheusProvider(url)
    now = datetime.now(timezone.utc)
    query = cs.render_query('sum(nv_inference_request_success{namespace="{{namespace}}",revision="{{revision}}"})',
                            namespace="ns-analysis", revision="s0", model=MODEL)
    series = wait_for(lambda: provider.query_range(query, now - timedelta(seconds=10), datetime.now(timezone.utc),
                                                   2.0), 30, query)
    assert len(series) == 1 and len(series[0].points) >= 2
    values = [v for _, v in series[0].points]
    assert values == sorted(values) and all(v % 90 == 0 for v in values)


def test_recorder_captures_what_the_replay_reads(prometheus):
    import importlib.util
    import sys

    url, *_ = prometheus
    root = __import__("pathlib").Path(__file__).resolve().parents[2] / "tests" / "bench"
    modules = {}
    for name in ("record_canary_series", "replay_analysis"):
        spec = importlib.util.spec_from_file_location(name, root / f"{name}.py")
        modules[name] = importlib.util.module_from_spec(spec)
        sys.modules[name] = modules[name]
        spec.loader.exec_module(modules[name])
    began = datetime.now(timezone.utc)

    def recorded():
        data = modules["record_canary_series"].record(
            PrometheusProvider(url), namespace="ns-analysis", name="digits", canary="a1", stable="s0",
            start=began - timedelta(seconds=20), end=datetime.now(timezone.utc), note="exporters")
        success = [s for s in data["series"] if s["labels"]["__name__"] == "nv_inference_request_success"]
        return data if len(success) == 2 and all(len(s["points"]) >= 4 for s in success) else None

    data = wait_for(recorded, 60, "4 scrapes of each exporter")
    names = {(s["labels"]["__name__"], s["labels"]["revision"]) for s in data["series"]}
    assert ("nv_inference_request_success", "a1") in names and ("nv_inference_request_summary_us", "s0") in names
    steps = modules["replay_analysis"].to_steps(data)
    canary = next(p for p in steps.pods if p.role == "canary")
    assert all(v % 18 == 0 for v in canary.success) and sum(canary.success) > 0 and sum(canary.failure) > 0
