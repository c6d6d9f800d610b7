"""ModelDeployments that run for real in the sandbox: placed on the pod runner's node.

They differ from examples/*.yaml only in placement (the runner node's pool selector and a toleration
of its taint, both ordinary spec.placement fields) and in the model URI, which points at a file the
sandbox built locally (file://), so nothing is downloaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from modeldeploy.api import constants as c
from modeldeploy.sandbox.podrunner import claim


def onnx_on_runner(name: str, model_name: str, model_path: Path | str, sha256: str | None = None,
                   uri: str | None = None, max_batch_size: int = 64) -> dict[str, Any]:
    """An ONNX model on the runner node (its pool selector and a toleration of its taint), one replica,
    one H100 asked for, dynamic batching up to ``max_batch_size`` with a 100 µs queue."""
    model: dict[str, Any] = {"uri": uri or f"file://{model_path}", "format": "onnx", "name": model_name}
    if sha256:
        model["sha256"] = sha256
    return {
        "apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name},
        "spec": {
            "model": model,
            "serving": {"maxBatchSize": max_batch_size, "dynamicBatching": {"maxQueueDelayMicroseconds": 100}},
            "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}},
            "placement": {
                "nodeSelector": {"modeldeploy.io/sandbox-pool": claim.POOL},
                "tolerations": [{"key": claim.RUNNER_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            },
            "replicas": 1,
        },
    }


def digits_on_runner(name: str, model_path: Path | str, sha256: str | None = None,
                     uri: str | None = None) -> dict[str, Any]:
    """The digits CNN (ONNX) on the runner node, one replica, dynamic batching up to 64."""
    return onnx_on_runner(name, "digits", model_path, sha256, uri, max_batch_size=64)


def model_store(namespace: str, claim_name: str = "model-store", size: str = "1Gi") -> list[dict[str, Any]]:
    """A PersistentVolume and the claim bound to it, for ``spec.compression.modelStore`` in the sandbox.

    The sandbox has no storage provisioner, so the volume is created by hand and pre-bound to the
    claim (``claimRef`` / ``volumeName``). Its ``hostPath`` is never used: the pod runner maps a claim
    to its own folder (``<runner root>/pvc/<namespace>/<claim>``), shared by every pod that mounts it.
    """
    pv_name = f"{namespace}-{claim_name}"[:253]
    return [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
         "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteMany"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "modeldeploy-sandbox",
                  "hostPath": {"path": f"/var/lib/modeldeploy-sandbox/{namespace}/{claim_name}"},
                  "claimRef": {"namespace": namespace, "name": claim_name}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim_name, "namespace": namespace},
         "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "modeldeploy-sandbox",
                  "volumeName": pv_name, "resources": {"requests": {"storage": size}}}},
    ]


def with_compression(md: dict[str, Any], recipe: dict[str, Any], claim_name: str = "model-store") -> dict[str, Any]:
    """``md`` with ``spec.compression`` set to ``recipe``, the model store ``claim_name``, and the Job placed on
    the runner node. That node is a GPU node (its ``nvidia.com/gpu`` taint keeps CPU pods away, as on a
    real cluster), so the CPU-only Job tolerates that taint here, which a real cluster would not need."""
    job = {"placement": {
        "nodeSelector": {"modeldeploy.io/sandbox-pool": claim.POOL},
        "tolerations": [{"key": claim.RUNNER_LABEL, "operator": "Exists", "effect": "NoSchedule"},
                        {"key": c.GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
    }}
    return {**md, "spec": {**md["spec"], "compression": {**recipe, "modelStore": {"claimName": claim_name}, "job": job}}}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pod_http_url(pod_ip: str, port: int = c.HTTP_PORT) -> str:
    """``host:port`` of a runner pod's Triton HTTP port: the pod's own IP on the container port."""
    return f"{pod_ip}:{port}"


def gateway_target(gateway_url: str, service: str, namespace: str) -> tuple[str, str]:
    """(``host:port`` to connect to, ``Host`` header) for a Service reached through the sandbox gateway.

    >>> gateway_target("http://10.244.3.1", "digits", "t-1")
    ('10.244.3.1:80', 'digits.t-1')
    """
    hostport = gateway_url.split("://", 1)[-1].rstrip("/")
    return (hostport if ":" in hostport else f"{hostport}:80"), f"{service}.{namespace}"


def triton_client(url: str, host: str | None = None, **kwargs):
    """A tritonclient HTTP client for ``url`` (host:port); with ``host``, every request carries that ``Host``
    header (how a request through the sandbox gateway names its Service: ``<service>.<namespace>``)."""
    import tritonclient.http as httpclient
    from tritonclient._plugin import InferenceServerClientPlugin

    class HostHeader(InferenceServerClientPlugin):
        def __call__(self, request):
            request.headers["Host"] = host

    client = httpclient.InferenceServerClient(url, **kwargs)
    if host:
        client.register_plugin(HostHeader())
    return client


def wait_routed(url: str, model: str, host: str | None = None, timeout: float = 60.0) -> None:
    """Wait until ``model`` answers ready at ``url`` (through the gateway: with the ``host`` header).

    A ModelDeployment is Ready when its pods are; the endpoint reaches a proxy a moment later (the
    EndpointSlice controller, then the proxy's own update), as on any cluster. A client that must not see
    that moment waits for the route, with a deadline, instead of sleeping."""
    import http.client
    import time

    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        conn = http.client.HTTPConnection(url, timeout=5)
        try:
            conn.request("GET", f"/v2/models/{model}/ready", headers={"Host": host} if host else {})
            status = conn.getresponse().status
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{model} not routed at {url} (Host {host}) within {timeout:.0f}s: {last}")
        time.sleep(0.2)


def classify_digits(url: str, x, model: str = "digits", batch: int = 32, host: str | None = None):
    """Class predictions for images ``x`` (N×1×8×8 float32) from Triton at ``url`` (host:port; ``host``: the
    Host header, for the gateway)."""
    import numpy as np
    import tritonclient.http as httpclient

    triton = triton_client(url, host)
    try:
        predictions = []
        for start in range(0, len(x), batch):
            chunk = np.ascontiguousarray(x[start:start + batch], dtype=np.float32)
            inp = httpclient.InferInput("input", list(chunk.shape), "FP32")
            inp.set_data_from_numpy(chunk)
            result = triton.infer(model, [inp], outputs=[httpclient.InferRequestedOutput("probs")])
            predictions.append(result.as_numpy("probs").argmax(axis=1))
        return np.concatenate(predictions)
    finally:
        triton.close()  # an open keep-alive connection would make Triton wait at shutdown


def minilm_on_runner(name: str, model_path: Path | str, sha256: str | None = None,
                     uri: str | None = None) -> dict[str, Any]:
    """all-MiniLM-L6-v2 (ONNX, two int64 inputs ``input_ids`` / ``attention_mask`` [batch, seq], output
    ``embedding`` [batch, 384]) on the runner node, one replica, dynamic batching up to 32.

    The dynamic batcher merges only requests whose sequence lengths agree, so clients pad to a fixed
    length (see :func:`embed_through_triton`).
    """
    return onnx_on_runner(name, "minilm", model_path, sha256, uri, max_batch_size=32)


def embed_through_triton(url: str, sentences, model: str = "minilm", batch: int = 16,
                         max_length: int = 128, pad_to: int | None = None, host: str | None = None):
    """Unit-length embeddings (float32 N×384) of ``sentences`` from Triton at ``url`` (host:port).

    Tokenized here (:func:`modeldeploy.models.minilm.encode`); each request carries up to ``batch``
    sentences padded to one length (the longest of the request, or ``pad_to``).
    """
    import numpy as np
    import tritonclient.http as httpclient

    from modeldeploy.models import minilm

    triton = triton_client(url, host)
    try:
        parts = []
        for start in range(0, len(sentences), batch):
            feed = minilm.encode(sentences[start:start + batch], max_length, pad_to=pad_to)
            inputs = []
            for key in minilm.INPUTS:
                inp = httpclient.InferInput(key, list(feed[key].shape), "INT64")
                inp.set_data_from_numpy(np.ascontiguousarray(feed[key]))
                inputs.append(inp)
            result = triton.infer(model, inputs, outputs=[httpclient.InferRequestedOutput("embedding")])
            parts.append(result.as_numpy("embedding"))
        return np.concatenate(parts) if parts else np.zeros((0, minilm.HIDDEN), np.float32)
    finally:
        triton.close()  # an open keep-alive connection would make Triton wait at shutdown


# --- python-backend models for canary rollouts: a version that is slower, or fails a share of requests ---------

#: Inputs and outputs of :func:`python_model_source`'s model: the digits model's, so the same requests fit both.
PYTHON_MODEL_INPUT, PYTHON_MODEL_OUTPUT = "input", "probs"
#: What a request this model failed on purpose says (clients tell the model's own failures from any other).
INJECTED_FAILURE = "injected failure"

_PYTHON_MODEL = '''"""A Triton python-backend model for canary tests: {note}.

Input ``input`` FP32 [1, 8, 8] per request (batch dimension first when the config batches), output ``probs``
FP32 [10] (uniform). Every call sleeps {delay_ms:g} ms; {failing}.
"""
import random
import time

import numpy as np
import triton_python_backend_utils as pb_utils

DELAY_S = {delay_s!r}
FAIL_EVERY = {fail_every!r}
FAIL_PROBABILITY = {fail_probability!r}


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        batching = config.as_dict().get("max_batch_size", 0) > 0
        dims = [1, 8, 8] if batching else [1, 1, 8, 8]
        config.add_input({{"name": "{input}", "data_type": "TYPE_FP32", "dims": dims}})
        config.add_output({{"name": "{output}", "data_type": "TYPE_FP32", "dims": [10] if batching else [1, 10]}})
        return config

    def initialize(self, args):
        self.requests = 0
        self.random = random.Random({seed!r})

    def execute(self, requests):
        if DELAY_S:
            time.sleep(DELAY_S)
        before, self.requests = self.requests, self.requests + len(requests)
        fail = bool(FAIL_EVERY) and self.requests // FAIL_EVERY > before // FAIL_EVERY
        fail = fail or any(self.random.random() < FAIL_PROBABILITY for _ in requests)
        if fail:
            # An exception fails the call (every request of a batch) and Triton counts it in
            # nv_inference_request_failure (reason BACKEND); an InferenceResponse(error=...) would be counted
            # as a success by Triton 2.51 (triton-inference-server/server#7713).
            raise pb_utils.TritonModelException("{failure}: request %d" % self.requests)
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "{input}").as_numpy()
            probs = np.full(x.shape[:-3] + (10,), 0.1, dtype=np.float32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("{output}", probs)]))
        return out
'''


def python_model_source(delay_ms: float = 0.0, fail_every: int = 0, fail_probability: float = 0.0,
                        note: str = "", seed: int = 0) -> str:
    """``model.py`` of a Triton python-backend model that answers the digits model's requests after sleeping
    ``delay_ms`` per call, and fails calls: the one whose request count reaches a multiple of ``fail_every``
    (0: never; exactly 1 in ``fail_every`` requests without batching), and each request with probability
    ``fail_probability`` (a generator seeded with ``seed``). Unbatched (``maxBatchSize: 0``, as
    :func:`python_on_runner` renders it) a call is one request, so those are the request failure rates; with
    batching a failing call fails its whole batch.

    Failures are exceptions raised by ``execute``, which Triton counts in ``nv_inference_request_failure``
    (what canary analysis reads); the HTTP client sees a 500 whose message holds :data:`INJECTED_FAILURE`.

    >>> src = python_model_source(delay_ms=5, fail_probability=0.01, note="1 % failing")
    >>> compile(src, "model.py", "exec") and "DELAY_S = 0.005" in src and "FAIL_PROBABILITY = 0.01" in src
    True
    """
    if delay_ms < 0 or fail_every < 0 or not 0.0 <= fail_probability <= 1.0:
        raise ValueError(f"need delay_ms >= 0, fail_every >= 0, 0 <= fail_probability <= 1; got {delay_ms}, "
                         f"{fail_every}, {fail_probability}")
    failing = [f"every {fail_every}th request fails its call"] if fail_every else []
    failing += [f"each request fails with probability {fail_probability:g}"] if fail_probability else []
    return _PYTHON_MODEL.format(note=note or "python test model", delay_ms=delay_ms, delay_s=delay_ms / 1000.0,
                                fail_every=int(fail_every), fail_probability=float(fail_probability),
                                failing="; ".join(failing) or "no request fails", input=PYTHON_MODEL_INPUT,
                                output=PYTHON_MODEL_OUTPUT, failure=INJECTED_FAILURE, seed=int(seed))


def write_python_model(folder: Path | str, delay_ms: float = 0.0, fail_every: int = 0, fail_probability: float = 0.0,
                       note: str = "", seed: int = 0) -> Path:
    """Write :func:`python_model_source` to ``folder/model.py`` and return its path (a ``file://`` model URI)."""
    path = Path(folder) / "model.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(python_model_source(delay_ms, fail_every, fail_probability, note, seed))
    return path


def python_on_runner(name: str, model_path: Path | str, version: int = 1, model_name: str = "canary",
                     replicas: int = 1, instances: int = 1) -> dict[str, Any]:
    """A ``format: python`` model (``model.py``, e.g. from :func:`write_python_model`) on the runner node,
    unbatched (one request per call, so a model's delay and failures are per request), ``instances`` model
    instances per pod (calls run in parallel; a model that sleeps needs several under load), ``replicas``
    pods, model version ``version``."""
    md = onnx_on_runner(name, model_name, model_path, sha256=file_sha256(Path(model_path)))
    md["spec"]["model"].update(format="python", version=version)
    md["spec"]["serving"] = {"maxBatchSize": 0, "instancesPerDevice": instances}
    md["spec"]["replicas"] = replicas
    return md


def canary_rollout(steps: list[dict[str, Any]], *, gateway: tuple[str, str] | None = ("gateway-system", "sandbox"),
                   hostnames: tuple[str, ...] = (), header: tuple[str, str] | None = None,
                   interval: str = "2s", min_requests: int = 50, metrics: list[dict[str, Any]] | None = None,
                   **analysis: Any) -> dict[str, Any]:
    """``spec.rollout`` of a canary with short steps for the sandbox: through the sandbox Gateway (``gateway``
    (namespace, name); None: replica ratio), optional ``hostnames`` and header match, judged every
    ``interval`` (``metrics``: the default checks when None; more analysis fields as keywords)."""
    canary: dict[str, Any] = {"steps": steps,
                              "analysis": {"interval": interval, "minRequests": min_requests, **analysis}}
    if metrics is not None:
        canary["analysis"]["metrics"] = metrics
    if gateway is not None:
        routing: dict[str, Any] = {"parentRefs": [{"namespace": gateway[0], "name": gateway[1]}]}
        if hostnames:
            routing["hostnames"] = list(hostnames)
        if header:
            routing["headerMatch"] = {"name": header[0], "value": header[1]}
        canary["trafficRouting"] = routing
    return {"strategy": "Canary", "canary": canary}


# --- a model with a fixed service time (autoscaling e2e, its benchmark and the demo) -----------------------
#: Triton python-backend ``model.py`` whose every request takes ``{service_seconds}`` s of wall time (a sleep, so the
#: time does not depend on how busy the shared CPU is), one request at a time per instance: one replica serves
#: exactly 1 / service time requests per second, and what is beyond that waits in Triton's queue.
FIXED_SERVICE_TIME_MODEL_PY = '''"""A model with a fixed service time of {service_ms:g} ms per request (modeldeploy sandbox)."""
import time

SERVICE_SECONDS = {service_seconds!r}


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        config.add_input({{"name": "x", "data_type": "TYPE_FP32", "dims": [1]}})
        config.add_output({{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}})
        return config

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        out = []
        for request in requests:
            time.sleep(SERVICE_SECONDS)
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            out.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("y", x)]))
        return out
'''

#: The HTTP/JSON body of one request to :func:`fixed_service_time_model` (one FP32 value, echoed back).
FIXED_SERVICE_TIME_REQUEST = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}'


def fixed_service_time_model(folder: Path | str, service_ms: float) -> Path:
    """Write ``folder/model.py``: a python-backend model taking ``service_ms`` per request (see
    :data:`FIXED_SERVICE_TIME_MODEL_PY`). Returns its path; its sha256 names the service time."""
    path = Path(folder) / "model.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FIXED_SERVICE_TIME_MODEL_PY.format(service_ms=service_ms, service_seconds=service_ms / 1000.0))
    return path


def autoscaled(body: dict[str, Any], **autoscaling: Any) -> dict[str, Any]:
    """``body`` with ``spec.autoscaling`` set to ``autoscaling`` and ``spec.replicas`` left out (the autoscaler
    owns the count; docs/autoscaling.md).

    >>> autoscaled({"spec": {"replicas": 1, "model": {}}}, maxReplicas=4, targetInferencesPerSecondPerReplica=10)
    {'spec': {'model': {}, 'autoscaling': {'maxReplicas': 4, 'targetInferencesPerSecondPerReplica': 10}}}
    """
    spec = {k: v for k, v in body["spec"].items() if k != "replicas"}
    return {**body, "spec": {**spec, "autoscaling": dict(autoscaling)}}


def parse_triton_counter(text: str, metric: str, model: str) -> float:
    """The sum of ``metric`` over the series of ``model`` in Triton's ``/metrics`` text (0 when none).

    >>> parse_triton_counter('# HELP x\\nnv_inference_request_success{model="m",version="1"} 12\\n'
    ...                      'nv_inference_request_success{model="other",version="1"} 5\\n', 'nv_inference_request_success', 'm')
    12.0
    """
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def pod_triton_counter(pod_ip: str, metric: str, model: str, timeout: float = 5.0) -> float:
    """``metric`` for ``model`` read at the pod itself (Triton's metrics port on the pod's IP), not through
    Prometheus: what one pod served, as that pod counts it."""
    import urllib.request

    with urllib.request.urlopen(f"http://{pod_ip}:{c.METRICS_PORT}/metrics", timeout=timeout) as resp:
        return parse_triton_counter(resp.read().decode(), metric, model)
