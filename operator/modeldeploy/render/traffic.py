"""Traffic objects of a canary rollout: one Service per role and the weighted Gateway API HTTPRoute. Pure.

Two ways to split traffic between the stable and the canary revision (docs/canary.md):

- **Replica ratio** (no ``trafficRouting``): the ModelDeployment's Service ``<name>`` selects the pods
  of every revision, so requests spread over pods and the canary's share is its share of the ready
  pods. Nothing to render here; the plan sizes the two Deployments.
- **Gateway API** (``trafficRouting.parentRefs``): the operator owns an HTTPRoute ``<name>`` attached to
  the user's Gateway(s), with two backendRefs — Services ``<name>-stable`` and ``<name>-canary``, each
  selecting one revision's pods — weighted by the current step. An optional header match adds a first
  rule that sends matching requests to the canary at any weight (A/B testing). Any Gateway API
  implementation (Envoy Gateway, Istio, Cilium, the sandbox's HAProxy controller) carries it out: the
  operator writes only standard objects.

Role Services select by revision, not by Deployment, so promotion is a selector change: the canary's
pods become the stable backend without a restart.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from modeldeploy.api import constants as c
from modeldeploy.render import names

GATEWAY_GROUP = "gateway.networking.k8s.io"
HTTPROUTE_VERSION = "v1"


def role_service(owner_ref: Mapping[str, Any], namespace: str, md_name: str, model_name: str, role: str,
                 revision: str) -> dict[str, Any]:
    """Service ``<name>-<role>`` selecting the pods of ``revision`` (HTTP and gRPC ports)."""
    labels = {**names.common_labels(md_name, model_name), c.LABEL_ROLE: role}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": names.role_service_name(md_name, role), "namespace": namespace, "labels": labels,
                     "ownerReferences": [dict(owner_ref)]},
        "spec": {
            "type": "ClusterIP",
            "selector": {c.LABEL_INSTANCE: names.fit(md_name), c.LABEL_COMPONENT: c.COMPONENT_PREDICTOR,
                         c.LABEL_REVISION: revision},
            "ports": [
                {"name": "http", "port": c.HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": c.GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
            ],
        },
    }


def _backend(md_name: str, role: str, weight: int) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": names.role_service_name(md_name, role), "port": c.HTTP_PORT,
            "weight": weight}


def http_route(owner_ref: Mapping[str, Any], namespace: str, md_name: str, model_name: str,
               parent_refs: Sequence[Mapping[str, Any]], canary_weight: int | None,
               header_match: Mapping[str, Any] | None = None, hostnames: Sequence[str] = ()) -> dict[str, Any]:
    """HTTPRoute ``<name>``: all traffic to stable (``canary_weight`` None: no canary running), or split
    ``100 - w`` / ``w``; with ``header_match`` and a canary, matching requests go to the canary first.

    >>> route = http_route({}, "ns", "digits", "digits", [{"name": "gw"}], 10, {"type": "Exact", "name": "x-canary",
    ...                    "value": "1"})
    >>> [[(b["name"], b["weight"]) for b in r["backendRefs"]] for r in route["spec"]["rules"]]
    [[('digits-canary', 1)], [('digits-stable', 90), ('digits-canary', 10)]]
    >>> route["spec"]["rules"][0]["matches"]
    [{'headers': [{'type': 'Exact', 'name': 'x-canary', 'value': '1'}], 'path': {'type': 'PathPrefix', 'value': '/'}}]
    """
    everything = {"path": {"type": "PathPrefix", "value": "/"}}
    rules: list[dict[str, Any]] = []
    if canary_weight is None:
        rules.append({"matches": [everything], "backendRefs": [_backend(md_name, c.TRACK_STABLE, 100)]})
    else:
        if header_match:
            rules.append({"matches": [{"headers": [dict(header_match)], **everything}],
                          "backendRefs": [_backend(md_name, c.TRACK_CANARY, 1)]})
        rules.append({"matches": [everything],
                      "backendRefs": [_backend(md_name, c.TRACK_STABLE, 100 - canary_weight),
                                      _backend(md_name, c.TRACK_CANARY, canary_weight)]})
    spec: dict[str, Any] = {"parentRefs": [dict(p) for p in parent_refs], "rules": rules}
    if hostnames:
        spec["hostnames"] = list(hostnames)
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{HTTPROUTE_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": names.service_name(md_name), "namespace": namespace,
                     "labels": names.common_labels(md_name, model_name), "ownerReferences": [dict(owner_ref)]},
        "spec": spec,
    }
