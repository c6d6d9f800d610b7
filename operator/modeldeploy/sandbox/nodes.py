"""Fake nodes for the sandbox: a small GPU pool that looks like what NVIDIA's GPU operator publishes.

Why fake nodes: no machine we test on has a GPU, yet the operator's scheduling decisions (GPU limits,
node selectors on `nvidia.com/gpu.product`, tolerations of the GPU taint) must meet a real
kube-scheduler. kwok manages every node in the sandbox: it keeps them Ready and moves pods bound to
them to Running/Ready without running a container. GPU capacity is just an extended resource in
the node's status, which the scheduler accounts for exactly like on a real cluster.

The builders are pure (dicts in, dicts out); `apply_nodes` is the only function that talks to the
API server, through the small client passed in.

    >>> node = gpu_node("gpu-h100-0", H100)
    >>> node["status"]["allocatable"]["nvidia.com/gpu"]
    '8'
    >>> node["metadata"]["labels"]["nvidia.com/gpu.product"]
    'NVIDIA-H100-80GB-HBM3'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
POOL_LABEL = "modeldeploy.io/sandbox-pool"


@dataclass(frozen=True)
class GpuModel:
    """A GPU SKU as gpu-feature-discovery labels it, plus the host shape it usually ships in."""

    product: str
    memory_mib: int
    family: str
    count: int
    instance_type: str
    cpu: int
    memory_gib: int


H100 = GpuModel(
    product="NVIDIA-H100-80GB-HBM3", memory_mib=81559, family="hopper", count=8,
    instance_type="p5.48xlarge", cpu=192, memory_gib=2048,
)
A100 = GpuModel(
    product="NVIDIA-A100-SXM4-40GB", memory_mib=40960, family="ampere", count=8,
    instance_type="p4d.24xlarge", cpu=96, memory_gib=1152,
)

# Kubelet defaults of a typical managed node: system + kube reservations and eviction threshold.
_RESERVED_CPU_MILLI = 550
_RESERVED_MEMORY_MIB = 4096
_MAX_PODS = 110
_EPHEMERAL_GIB = 500


KUBELET_VERSION = "v1.35.4"
"""Reported as the nodes' kubelet version, matching the sandbox's control plane."""


def _base_node(name: str, labels: dict[str, str], capacity: dict[str, str],
               allocatable: dict[str, str], taints: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_ANNOTATION: "fake",
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **labels,
            },
        },
        "spec": {"taints": taints} if taints else {},
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "kwok (simulated node)",
                "kubeletVersion": KUBELET_VERSION,
            },
        },
    }


def _shape(cpu: int, memory_gib: int) -> tuple[dict[str, str], dict[str, str]]:
    capacity = {
        "cpu": str(cpu),
        "memory": f"{memory_gib}Gi",
        "pods": str(_MAX_PODS),
        "ephemeral-storage": f"{_EPHEMERAL_GIB}Gi",
    }
    allocatable = {
        "cpu": f"{cpu * 1000 - _RESERVED_CPU_MILLI}m",
        "memory": f"{memory_gib * 1024 - _RESERVED_MEMORY_MIB}Mi",
        "pods": str(_MAX_PODS),
        "ephemeral-storage": f"{_EPHEMERAL_GIB - 50}Gi",
    }
    return capacity, allocatable


def gpu_node(name: str, model: GpuModel, pool: str | None = None) -> dict[str, Any]:
    """A GPU node: `nvidia.com/gpu` capacity, GFD-style labels, and the GPU NoSchedule taint."""
    capacity, allocatable = _shape(model.cpu, model.memory_gib)
    capacity[GPU_RESOURCE] = str(model.count)
    allocatable[GPU_RESOURCE] = str(model.count)
    labels = {
        "node.kubernetes.io/instance-type": model.instance_type,
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": model.product,
        "nvidia.com/gpu.memory": str(model.memory_mib),
        "nvidia.com/gpu.count": str(model.count),
        "nvidia.com/gpu.family": model.family,
        POOL_LABEL: pool or name.rsplit("-", 1)[0],
    }
    return _base_node(name, labels, capacity, allocatable, [dict(GPU_TAINT)])


def cpu_node(name: str, cpu: int = 16, memory_gib: int = 64, pool: str = "cpu") -> dict[str, Any]:
    """A plain CPU node: no GPU resource, no taint (system pods and the operator land here)."""
    capacity, allocatable = _shape(cpu, memory_gib)
    labels = {"node.kubernetes.io/instance-type": "m6i.4xlarge", POOL_LABEL: pool}
    return _base_node(name, labels, capacity, allocatable, [])


def default_nodes() -> list[dict[str, Any]]:
    """The sandbox's pool: two H100 nodes, one A100 node, one CPU node."""
    return [
        gpu_node("gpu-h100-0", H100),
        gpu_node("gpu-h100-1", H100),
        gpu_node("gpu-a100-0", A100),
        cpu_node("cpu-0"),
    ]


def node_is_ready(node: dict[str, Any]) -> bool:
    """True when the node's Ready condition is True."""
    for cond in node.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


class NodeClient(Protocol):
    """What apply_nodes needs from an API client (see cluster.KubeHttp)."""

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json", ok: tuple[int, ...] = ()) -> tuple[int, Any]: ...


def apply_nodes(client: NodeClient, nodes: list[dict[str, Any]]) -> list[str]:
    """Create each node, or bring an existing one back to the desired labels, taints and capacity.

    Status is accepted on create; for an existing node it is merge-patched through the status
    subresource (only capacity/allocatable, so kwok's conditions are kept). Returns the names.
    """
    names = []
    for node in nodes:
        name = node["metadata"]["name"]
        code, body = client.request("POST", "/api/v1/nodes", node, ok=(409,))
        if code == 409:
            meta_patch = {
                "metadata": {"labels": node["metadata"]["labels"],
                             "annotations": node["metadata"]["annotations"]},
                "spec": {"taints": node["spec"].get("taints")},
            }
            client.request("PATCH", f"/api/v1/nodes/{name}", meta_patch,
                           content_type="application/merge-patch+json")
            status_patch = {"status": {"capacity": node["status"]["capacity"],
                                       "allocatable": node["status"]["allocatable"]}}
            client.request("PATCH", f"/api/v1/nodes/{name}/status", status_patch,
                           content_type="application/merge-patch+json")
        names.append(name)
    return names
