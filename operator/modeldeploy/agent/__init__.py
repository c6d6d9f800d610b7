"""The model agent: a sidecar in the Triton pod that swaps the served model version in place.

Why it exists: changing only ``spec.model`` (uri, version, sha256) used to roll every pod (new init
container arguments, new pod template): minutes of fetch and Triton start per pod, and the capacity
of one pod missing while it ran. The agent turns such a change into an in-place swap inside each
running pod: fetch the new version next to the old one, let Triton load it while the old one keeps
serving, drop the old one. No restart, no failed request (measured: docs/architecture.md, "In-place
model swaps").

Modules (dependencies point down the list; only ``swap`` holds decisions):

- ``command``: ``modeldeploy agent``, the CLI; wires the adapters, the worker thread, the HTTP server;
- ``api``: the HTTP API (``GET/PUT /v1/model``, ``GET /healthz``), request validation;
- ``swap``: the state machine (what to do, in what order, what to report), with injected Triton,
  repository and clock, so every path is unit-tested against fakes;
- ``triton``: the Triton adapter on ``tritonclient`` (model control over gRPC when available);
- ``repository``: the model repository folder: fetch (the ``fetch`` package, in-process), copy, remove;
- ``sandbox``: the one sandbox-only behaviour (the python-backend shim for the CPU Triton).

Keep this ``__init__`` free of imports: the sandbox's pod runner imports ``agent.sandbox`` only.
"""
