"""modeldeploy: a Kubernetes operator that serves models on NVIDIA Triton Inference Server.

Layering (dependencies point one way, see docs/architecture.md):
``api`` and ``render`` and ``policy`` are pure; ``adapters`` do I/O; ``reconcile`` wires them;
``handlers`` are thin Kopf glue; ``sandbox`` is the local development cluster.
"""

__version__ = "0.1.0"
