"""Pods the operator renders are admitted in a namespace labelled pod-security.kubernetes.io/enforce=restricted.

The judge is the real API server's PodSecurity admission (built in, Kubernetes 1.35): first every rendered
pod template (serving pods for each golden spec, the compression Job's pod) is created as a Pod with a
server-side dry run, which runs admission and stores nothing; a copy with one field taken back shows the
check has teeth. Then the operator serves a ModelDeployment in such a namespace and its pods are created
(the ReplicaSet controller's pod creation is what admission used to refuse).
"""

from __future__ import annotations

import copy
import json
import uuid

import pytest
import yaml
from kubernetes import client

from modeldeploy.api import constants as c
from modeldeploy.api.spec import parse_spec
from modeldeploy.render import compression_job, names
from modeldeploy.render.triton import Owner, RenderOptions, render_deployment

from .conftest import ROOT, load_example, wait_for

pytestmark = pytest.mark.integration

GOLDEN = ROOT / "tests" / "golden"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
              "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/warn-version": "latest"}


@pytest.fixture
def restricted_namespace(api):
    name = f"t-psa-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name, "labels": RESTRICTED}})
    yield name
    core.delete_namespace(name)


def pod_templates(namespace: str):
    options = RenderOptions()
    owner = Owner("digits", namespace, "00000000-0000-0000-0000-000000000001")
    for path in sorted(GOLDEN.glob("*.input.yaml")):
        md = yaml.safe_load(path.read_text())
        spec = parse_spec(md["metadata"]["name"], md["spec"])
        revision = names.revision_of(spec, options.triton_image, options.fetcher_image)
        yield path.name, render_deployment(owner, spec, revision, options)["spec"]["template"]
    for path in sorted((GOLDEN / "compression").glob("*.input.yaml")):
        md = yaml.safe_load(path.read_text())
        spec = parse_spec(md["metadata"]["name"], md["spec"])
        job = compression_job.render_job(owner, spec, "ab" * 32, spec.compression.recipe, options)
        yield f"compression/{path.name}", job["spec"]["template"]


def dry_run_pod(kubectl, namespace: str, template: dict):
    """``kubectl create --dry-run=server`` of the template as a Pod: admission runs, nothing is stored."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "psa-check", "labels": template["metadata"].get("labels", {})},
           "spec": copy.deepcopy(template["spec"])}
    return kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)


def test_every_rendered_pod_is_admitted_as_restricted(kubectl, restricted_namespace):
    checked = []
    for name, template in pod_templates(restricted_namespace):
        out = dry_run_pod(kubectl, restricted_namespace, template)
        assert out.returncode == 0, (name, out.stderr)
        # warn=restricted as well: kubectl prints "Warning: ... would violate PodSecurity" for anything found
        assert "PodSecurity" not in out.stderr, (name, out.stderr)
        checked.append(name)
    assert len(checked) >= 8


@pytest.mark.parametrize("undo, says", [
    (lambda pod: pod["containers"][0]["securityContext"].pop("runAsNonRoot") and pod.pop("securityContext"),
     "runAsNonRoot"),
    (lambda pod: pod["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
     "allowPrivilegeEscalation"),
    (lambda pod: pod["containers"][1]["securityContext"].pop("capabilities"), "capabilities"),
])
def test_the_admission_check_has_teeth(kubectl, restricted_namespace, undo, says):
    _, template = next(pod_templates(restricted_namespace))
    template = copy.deepcopy(template)
    undo(template["spec"])
    out = dry_run_pod(kubectl, restricted_namespace, template)
    assert out.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in out.stderr and says in out.stderr, out.stderr


def test_a_modeldeployment_in_a_restricted_namespace_gets_its_pods(api, operator, restricted_namespace):
    body = copy.deepcopy(load_example("digits.yaml"))
    body["spec"]["replicas"] = 2
    client.CustomObjectsApi(api).create_namespaced_custom_object(c.GROUP, c.VERSION, restricted_namespace,
                                                                 c.PLURAL, body)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    selector = f"{c.LABEL_INSTANCE}=digits"

    def pods():
        return core.list_namespaced_pod(restricted_namespace, label_selector=selector).items
    wait_for(lambda: len(pods()) == 2, 90, what="2 serving pods created in the restricted namespace")
    for rs in apps.list_namespaced_replica_set(restricted_namespace, label_selector=selector).items:
        failures = [cnd for cnd in rs.status.conditions or [] if cnd.type == "ReplicaFailure"]
        assert failures == [], failures[0].message
    spec = pods()[0].spec
    assert spec.automount_service_account_token is False
    assert spec.security_context.run_as_non_root is True
    triton = next(x for x in spec.containers if x.name == "triton")
    assert triton.security_context.run_as_user == 1000 and triton.security_context.read_only_root_filesystem

    def ready():
        md = client.CustomObjectsApi(api).get_namespaced_custom_object(c.GROUP, c.VERSION, restricted_namespace,
                                                                       c.PLURAL, "digits")
        return (md.get("status") or {}).get("phase") == "Ready"
    wait_for(ready, 90, what="digits Ready in the restricted namespace")
