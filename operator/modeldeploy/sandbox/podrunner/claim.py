"""Which pods the runner owns, the node it is the kubelet of, and how kwok is kept away from both.

The coexistence rule (docs/podrunner.md explains the choice): kwok-controller manages only nodes
annotated ``kwok.x-k8s.io/node=fake`` (all the sandbox's simulated nodes carry it), and the runner
registers one more node *without* that annotation. kwok then neither heartbeats that node nor plays
any pod Stage on pods bound to it, so nothing but the runner writes their status: a pod there is
Ready only when its readiness probe (Triton's ``/v2/health/ready``) answered.

The runner node looks like a GPU node (GPU capacity, the GPU taint, GFD labels) so the operator's
Deployments schedule onto it unchanged, and carries one more taint, ``modeldeploy.io/pod-runner``, so
only pods that opt in (a toleration plus a node selector on :data:`POOL`, both expressible in
``spec.placement``) land there; everything else keeps running on kwok nodes.

Everything here is pure.
"""

from __future__ import annotations

from typing import Any

from modeldeploy.sandbox import nodes

RUNNER_LABEL = "modeldeploy.io/pod-runner"
POOL = "local"
RUNNER_TAINT = {"key": RUNNER_LABEL, "value": "true", "effect": "NoSchedule"}
#: Pod annotation where the runner records container port -> loopback port (JSON object); only in the
#: fallback without a pod network (sandbox/podnet.py).
PORTS_ANNOTATION = "modeldeploy.io/local-ports"
#: Annotation selector kwok-controller must be started with (the simulated nodes carry it).
KWOK_NODE_SELECTOR = f"{nodes.KWOK_ANNOTATION}=fake"

TRITON = "triton"
MODELDEPLOY = "modeldeploy"


def kwok_controller_patch() -> dict[str, Any]:
    """The ``componentsPatches`` entry for the sandbox's KwokctlConfiguration that restricts kwok to the
    annotated nodes. kwokctl's binary runtime always passes ``--manage-all-nodes=true``; ``override``
    rewrites that argument in place (kwok refuses both flags together).

    >>> [a["key"] for a in kwok_controller_patch()["extraArgs"]]
    ['manage-all-nodes', 'manage-nodes-with-annotation-selector']
    """
    return {
        "name": "kwok-controller",
        "extraArgs": [
            {"key": "manage-all-nodes", "value": "false", "override": True},
            {"key": "manage-nodes-with-annotation-selector", "value": KWOK_NODE_SELECTOR},
        ],
    }


def runner_node(name: str = "local-0", gpus: int = 1, pod_cidr: str | None = None,
                model: nodes.GpuModel = nodes.H100) -> dict[str, Any]:
    """The Node object the runner registers: a GPU node of ``model`` with ``gpus`` GPUs, no kwok
    annotation, the runner label and taint, a loopback address, and its pod range as ``spec.podCIDR``.

    >>> node = runner_node(pod_cidr="10.244.3.0/24")
    >>> nodes.KWOK_ANNOTATION in node["metadata"]["annotations"], node["metadata"]["labels"][nodes.POOL_LABEL]
    (False, 'local')
    >>> node["spec"]["podCIDRs"]
    ['10.244.3.0/24']
    """
    node = nodes.gpu_node(name, model, pool=POOL)
    del node["metadata"]["annotations"][nodes.KWOK_ANNOTATION]
    node["metadata"]["labels"][RUNNER_LABEL] = "true"
    node["metadata"]["labels"]["type"] = "pod-runner"
    node["metadata"]["labels"]["nvidia.com/gpu.count"] = str(gpus)
    node["spec"]["taints"] = [*node["spec"]["taints"], dict(RUNNER_TAINT)]
    if pod_cidr:
        node["spec"].update(podCIDR=pod_cidr, podCIDRs=[pod_cidr])
    for key in ("capacity", "allocatable"):
        node["status"][key][nodes.GPU_RESOURCE] = str(gpus)
    node["status"]["nodeInfo"]["osImage"] = "modeldeploy pod runner (local processes)"
    node["status"]["addresses"] = [{"type": "InternalIP", "address": "127.0.0.1"},
                                   {"type": "Hostname", "address": name}]
    return node


def image_kind(image: str) -> str | None:
    """What the runner can run for an image: Triton (any ``.../tritonserver:<tag>``), the modeldeploy
    image (any ``.../modeldeploy:<tag>``), or None.

    >>> image_kind("nvcr.io/nvidia/tritonserver:25.10-py3"), image_kind("localhost:5000/modeldeploy:0.1.0")
    ('triton', 'modeldeploy')
    >>> image_kind("busybox") is None
    True
    """
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    name = last.split(":", 1)[0]
    return {"tritonserver": TRITON, "modeldeploy": MODELDEPLOY}.get(name)


def claims(pod: dict[str, Any], node_name: str) -> bool:
    """True when the runner is this pod's kubelet: the pod is bound to the runner's node. The runner
    owns *every* pod there (nobody else would ever start it); pods whose images it cannot run are
    reported as such in their status (:func:`unrunnable_images`), not ignored."""
    return (pod.get("spec") or {}).get("nodeName") == node_name


def unrunnable_images(pod: dict[str, Any]) -> list[str]:
    """Images of the pod (init and app containers) the runner has no local stand-in for."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return [c.get("image", "") for c in containers if image_kind(c.get("image", "")) is None]
