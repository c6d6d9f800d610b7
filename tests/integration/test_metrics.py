"""Triton's metrics reach the sandbox's Prometheus, labelled by revision, as canary analysis will read them.

The digits ModelDeployment runs on the pod runner's node (a real tritonserver); the runner writes the pod
into Prometheus' file_sd targets once it is Running, with the pod's modeldeploy.io labels as target labels
(``revision``, ``track``, ``modeldeployment``, ``modeldeploy_model``). After N inferences the per-revision
request count in Prometheus must equal N, the p99 latency summary must have a value, and Triton's own
``model``/``version`` labels must come through unrenamed. Deleting the ModelDeployment removes the target.
"""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import pytest
from kubernetes import client

from modeldeploy.api import constants as c
from modeldeploy.sandbox import prometheus as prom

from .conftest import wait_for
from .test_dataplane import http_port, local_md
from .test_operator import create_md, pods_of, wait_ready

pytestmark = pytest.mark.integration

N = 40
BATCH = 4


@pytest.fixture(scope="module")
def prometheus(sandbox):
    from prometheus_api_client import PrometheusConnect

    if prom.find_binary() is None:
        pytest.skip("prometheus is not installed (make setup, or apt-get install prometheus)")
    url = sandbox.prometheus_url
    assert url, ("the sandbox runs no Prometheus although the binary is installed: it was started before; "
                 "run `modeldeploy sandbox down && modeldeploy sandbox up`")
    return PrometheusConnect(url=url, disable_ssl=True)


def values(prometheus, query: str) -> list[tuple[dict, float]]:
    return [(r["metric"], float(r["value"][1])) for r in prometheus.custom_query(query)]


def test_triton_metrics_per_revision_reach_prometheus(api, operator, namespace, runner_node, digits_model,  # noqa: F811
                                                      prometheus):
    import tritonclient.http as httpclient

    out, _ = digits_model
    model = out / "model.onnx"
    create_md(api, namespace, local_md("metrics", f"file://{model}",
                                       sha256=hashlib.sha256(model.read_bytes()).hexdigest()))
    wait_ready(api, namespace, "metrics", timeout=120)
    pod = next(p for p in pods_of(api, namespace, "metrics") if p.metadata.deletion_timestamp is None)
    revision = pod.metadata.labels[c.LABEL_REVISION]
    pod_sel = f'namespace="{namespace}", revision="{revision}"'

    x = np.load(out / "digits_test.npz")["x_test"].astype(np.float32)[:BATCH]
    triton = httpclient.InferenceServerClient(f"127.0.0.1:{http_port(api, namespace, 'metrics')}")
    try:
        for _ in range(N):
            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            triton.infer("digits", [inp], outputs=[httpclient.InferRequestedOutput("probs")])
    finally:
        triton.close()  # an open keep-alive connection would make Triton wait 30 s at shutdown
    sent = time.monotonic()

    count = f"sum by (revision) (nv_inference_request_success{{{pod_sel}}})"
    wait_for(lambda: [v for _, v in values(prometheus, count)] == [N], timeout=30, interval=0.25,
             what=f"{count} == {N} (last: {values(prometheus, count)})")
    lag = time.monotonic() - sent
    print(f"\nPrometheus saw all {N} requests of revision {revision} {lag:.1f}s after the last one")

    p99 = f'nv_inference_request_summary_us{{quantile="0.99", {pod_sel}}}'
    ((labels, value),) = wait_for(lambda: [(m, v) for m, v in values(prometheus, p99) if math.isfinite(v)],
                                  timeout=30, what=f"a finite value for {p99}")
    assert value > 0
    # Triton's own labels untouched, ours beside them, nothing renamed to exported_*.
    assert labels["model"] == "digits" and labels["version"] == "1", labels
    assert labels["modeldeploy_model"] == "digits" and labels["modeldeployment"] == "metrics", labels
    assert labels["track"] == c.TRACK_STABLE and labels["pod"] == pod.metadata.name, labels
    assert labels["node"] == runner_node and labels["job"] == prom.JOB, labels
    assert not [k for k in labels if k.startswith("exported_")], labels
    assert [v for _, v in values(prometheus, f"sum(nv_inference_count{{{pod_sel}}})")] == [N * BATCH]

    # The ModelDeployment goes, its pod goes, the runner drops the target.
    client.CustomObjectsApi(api).delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, "metrics")
    deleted = time.monotonic()

    def target_gone():
        active = prometheus.get_targets(state="active")["activeTargets"]
        return not [t for t in active if t["labels"].get("namespace") == namespace]
    wait_for(target_gone, timeout=60, what=f"no Prometheus target left in namespace {namespace}")
    print(f"target gone {time.monotonic() - deleted:.1f}s after the ModelDeployment was deleted")


def test_operator_is_told_where_prometheus_is(operator, prometheus):
    wait_for(lambda: "Prometheus http://" in operator.log_since(0), 30, what="the operator's Prometheus line")
    line = next(l for l in operator.log_since(0).splitlines() if "Prometheus http://" in l)
    assert ": ready (HTTP 200)" in line, line
