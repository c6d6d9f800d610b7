"""GitOps and autoscaler compatibility against the real API server, kube-controller-manager and operator.

- An object nobody has reconciled reads InProgress for kstatus straight from the API server (the CRD's status
  default), and Current once the operator reports it Ready.
- A HorizontalPodAutoscaler scales a ModelDeployment written without spec.replicas: the HPA controller reads
  and writes it through the scale subresource (it raises the count to minReplicas without needing metrics),
  and the operator carries the new count to the serving pods.
"""

from __future__ import annotations

import copy

import pytest
from kubernetes import client

from modeldeploy.api import constants as c

from .conftest import load_example, wait_for
from .test_operator import create_md, get_md, pods_of, wait_ready

pytestmark = pytest.mark.integration


def without_replicas() -> dict:
    body = copy.deepcopy(load_example("digits.yaml"))
    body["spec"].pop("replicas", None)
    return body


def test_kstatus_reads_an_unreconciled_object_in_progress_then_current(api, crd_installed, operator, namespace):
    from tests.unit.test_gitops import kstatus

    created = create_md(api, namespace, without_replicas())  # what the API server answered, before any operator
    assert created["status"] == {"observedGeneration": -1}
    assert kstatus([created])[0]["status"] == "InProgress"
    ready = wait_ready(api, namespace, "digits")
    assert kstatus([ready])[0]["status"] == "Current"


def test_an_hpa_scales_a_modeldeployment_written_without_replicas(api, operator, namespace):
    create_md(api, namespace, without_replicas())
    md = wait_ready(api, namespace, "digits")
    assert md["spec"]["replicas"] == 1 and md["status"]["readyReplicas"] == 1  # the default
    scale = client.CustomObjectsApi(api).get_namespaced_custom_object_scale(c.GROUP, c.VERSION, namespace, c.PLURAL,
                                                                             "digits")
    assert scale["spec"]["replicas"] == 1 and scale["status"]["replicas"] == 1
    assert scale["status"]["selector"] == md["status"]["selector"]

    client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(namespace, {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "digits"},
        "spec": {"scaleTargetRef": {"apiVersion": c.API_VERSION, "kind": c.KIND, "name": "digits"},
                 "minReplicas": 2, "maxReplicas": 3,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 80}}}]}})

    def scaled():
        md = get_md(api, namespace, "digits")
        return md if md["spec"]["replicas"] == 2 else None
    scaled_md = wait_for(scaled, 120, what="the HPA to set spec.replicas 2 through the scale subresource")
    md = wait_ready(api, namespace, "digits", timeout=90, generation=scaled_md["metadata"]["generation"])
    assert md["status"]["readyReplicas"] == 2 and len(pods_of(api, namespace, "digits")) == 2
    hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("digits", namespace)
    assert hpa.status.desired_replicas == 2
    able = next(cond for cond in hpa.status.conditions if cond.type == "AbleToScale")
    assert able.status == "True", able.message
