"""Node builders: the fake GPU pool must look like what gpu-feature-discovery publishes."""

import pytest

from modeldeploy.sandbox import nodes


def by_name():
    return {n["metadata"]["name"]: n for n in nodes.default_nodes()}


def test_default_pool_names():
    assert list(by_name()) == ["gpu-h100-0", "gpu-h100-1", "gpu-a100-0", "cpu-0"]


@pytest.mark.parametrize(
    "name, product, memory",
    [
        ("gpu-h100-0", "NVIDIA-H100-80GB-HBM3", "81559"),
        ("gpu-h100-1", "NVIDIA-H100-80GB-HBM3", "81559"),
        ("gpu-a100-0", "NVIDIA-A100-SXM4-40GB", "40960"),
    ],
)
def test_gpu_nodes_labels_capacity_taint(name, product, memory):
    node = by_name()[name]
    labels = node["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == product
    assert labels["nvidia.com/gpu.memory"] == memory
    assert labels["nvidia.com/gpu.count"] == "8"
    assert labels["nvidia.com/gpu.present"] == "true"
    assert labels["kubernetes.io/hostname"] == name
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "8"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert node["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    ]
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_cpu_node_has_no_gpu_and_no_taint():
    node = by_name()["cpu-0"]
    assert "nvidia.com/gpu" not in node["status"]["capacity"]
    assert "nvidia.com/gpu" not in node["status"]["allocatable"]
    assert not node["spec"].get("taints")
    assert not any(k.startswith("nvidia.com/") for k in node["metadata"]["labels"])
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_allocatable_is_below_capacity_and_realistic():
    node = nodes.gpu_node("x", nodes.H100)
    cap, alloc = node["status"]["capacity"], node["status"]["allocatable"]
    assert cap["cpu"] == "192" and alloc["cpu"] == "191450m"
    assert cap["memory"] == "2048Gi" and alloc["memory"] == f"{2048 * 1024 - 4096}Mi"
    assert cap["pods"] == alloc["pods"] == "110"


def test_builders_return_fresh_objects():
    a, b = nodes.gpu_node("x", nodes.H100), nodes.gpu_node("x", nodes.H100)
    a["spec"]["taints"][0]["value"] = "changed"
    assert b["spec"]["taints"][0]["value"] == "present"
    assert nodes.GPU_TAINT["value"] == "present"


@pytest.mark.parametrize(
    "conditions, ready",
    [
        ([{"type": "Ready", "status": "True"}], True),
        ([{"type": "Ready", "status": "False"}], False),
        ([{"type": "MemoryPressure", "status": "False"}], False),
        (None, False),
    ],
)
def test_node_is_ready(conditions, ready):
    assert nodes.node_is_ready({"status": {"conditions": conditions}}) is ready


class FakeClient:
    def __init__(self, existing=()):
        self.existing = set(existing)
        self.calls = []

    def request(self, method, path, body=None, content_type="application/json", ok=()):
        self.calls.append((method, path, content_type))
        if method == "POST":
            name = body["metadata"]["name"]
            if name in self.existing:
                assert 409 in ok
                return 409, {"reason": "AlreadyExists"}
            self.existing.add(name)
            return 201, body
        return 200, body


def test_apply_nodes_creates_missing_and_patches_existing():
    client = FakeClient(existing={"cpu-0"})
    names = nodes.apply_nodes(client, nodes.default_nodes())
    assert names == ["gpu-h100-0", "gpu-h100-1", "gpu-a100-0", "cpu-0"]
    posts = [c for c in client.calls if c[0] == "POST"]
    patches = [c for c in client.calls if c[0] == "PATCH"]
    assert len(posts) == 4
    assert patches == [
        ("PATCH", "/api/v1/nodes/cpu-0", "application/merge-patch+json"),
        ("PATCH", "/api/v1/nodes/cpu-0/status", "application/merge-patch+json"),
    ]
