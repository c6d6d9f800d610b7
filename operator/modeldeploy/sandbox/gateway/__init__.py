"""The sandbox's gateway: a dev-only Gateway API implementation, as the pod runner is a dev-only kubelet.

The operator writes only standard objects (Services now; HTTPRoutes with weights for canaries); on a real
cluster an implementation such as Envoy Gateway, Istio or Cilium turns them into traffic. In the sandbox
this package does: it programs Debian's HAProxy from the Gateway ``gateway-system/sandbox``, the HTTPRoutes
attached to it and the EndpointSlices of their Services, and writes the status real implementations write.

Modules:
  model       Gateway/HTTPRoute/Service/EndpointSlice -> matches, weighted backends, statuses (pure)
  haproxy     that as haproxy.cfg, server slots, runtime API commands (pure); the HAProxy process (I/O)
  controller  the polling loop; ``python -m modeldeploy.sandbox.gateway``
  crds        Gateway API CRDs (standard channel, from the Go module), the GatewayClass and Gateway

Design and limits: docs/sandbox.md ("Gateway").
"""
