"""The pod runner: the kubelet of one extra sandbox node, running pods as local processes.

Why it exists: kwok marks pods Running and Ready without running anything, which is enough to test
what the operator writes but not whether what it renders actually serves. The runner registers a node
that kwok does not manage (kwok-controller is restricted to nodes annotated
``kwok.x-k8s.io/node=fake``; see :mod:`.claim`), and for every pod the scheduler binds there it runs
the init containers and containers as processes: the Triton image's ``tritonserver`` is the one from
the ``nvidia-pytriton`` wheel (CPU, python backend; ONNX models are served by
``onnx_python_model.py``), the modeldeploy image is ``python -m modeldeploy``. Pod status comes from
those processes: Ready only when the readiness probe (Triton's ``/v2/health/ready``) answers. Each pod has
its own IP from the sandbox's pod range (sandbox/podnet.py), which its processes bind on their real ports.

Modules (pure unless said otherwise):
  claim             which pods are the runner's, its Node object, the kwok-controller patch
  plan              pod spec -> command line ($(VAR) expanded, bound to the pod IP), env, folders, mounts
  lifecycle         kubelet rules: start order, restarts and back-off, probes, pod status
  triton            the wheel's tritonserver: backend folder (I/O), argv, config.pbtxt for the CPU
  onnx_python_model Triton python-backend model.py serving model.onnx with onnxruntime
  runner            the loop (I/O): node heartbeat, processes, status patches; ``python -m`` this package
  triton_check      the wheel's Triton serving an ONNX model, no cluster

Design, what is emulated and what is not: docs/podrunner.md.
"""
