"""The compression Job and its cache record: golden files, plus the properties the design rests on."""

import os
from pathlib import Path

import pytest
import yaml

from modeldeploy.api import constants as c
from modeldeploy.api.spec import parse_spec
from modeldeploy.policy.compression import parse_recipe
from modeldeploy.reconcile.compression import compression_key
from modeldeploy.render import compression_job as r
from modeldeploy.render.triton import Owner, RenderOptions, render_children

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "compression"
CASES = sorted(p.name.removesuffix(".input.yaml") for p in GOLDEN.glob("*.input.yaml"))
OPTIONS = RenderOptions()


def load(case):
    md = yaml.safe_load((GOLDEN / f"{case}.input.yaml").read_text())
    meta = md["metadata"]
    return Owner(meta["name"], meta["namespace"], meta["uid"]), parse_spec(meta["name"], md["spec"])


@pytest.mark.parametrize("case", CASES)
def test_job_matches_golden(case):
    owner, spec = load(case)
    key = compression_key(spec, OPTIONS)
    rendered = yaml.safe_dump(r.render_job(owner, spec, key, spec.compression.recipe, OPTIONS), sort_keys=True)
    expected = GOLDEN / f"{case}.expected.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(rendered)
    assert expected.exists(), f"no golden file for {case}; run with UPDATE_GOLDEN=1 and review it"
    assert rendered == expected.read_text()


def test_key_ignores_spelling_but_not_meaning():
    owner, spec = load("digits-prune-int8")
    key = compression_key(spec, OPTIONS)
    respelled = parse_spec("digits", {"model": {"uri": "s3://other/place.onnx", "format": "onnx",
                                                "sha256": spec.model.sha256, "version": 7},
                                      "compression": {**spec.compression.recipe,
                                                      "evaluation": {"maxAccuracyDrop": 1.0,
                                                                     "dataset": "builtin://digits"},
                                                      "modelStore": {"claimName": "elsewhere"}}})
    assert compression_key(respelled, OPTIONS) == key  # same bytes (sha256), same recipe: same result
    changed = parse_spec("digits", {"model": {"uri": "s3://m.onnx", "format": "onnx", "sha256": spec.model.sha256},
                                    "compression": {**spec.compression.recipe, "pruning": {"amount": 0.6},
                                                    "modelStore": {"claimName": "s"}}})
    assert compression_key(changed, OPTIONS) != key
    assert compression_key(spec, RenderOptions(fetcher_image="modeldeploy:other")) != key


def test_without_a_digest_the_uri_and_version_identify_the_input():
    _, spec = load("pvc-model-gpu-job")
    assert r.input_identity(spec.model) == "uri:pvc://trained/minilm/model.onnx#version=1"


def test_job_properties():
    owner, spec = load("digits-prune-int8")
    key = compression_key(spec, OPTIONS)
    job = r.render_job(owner, spec, key, spec.compression.recipe, OPTIONS)
    assert job["metadata"]["name"] == r.job_name(key) == f"modeldeploy-compress-{key[:20]}"
    assert job["metadata"]["annotations"][c.ANNOTATION_COMPRESSION_KEY] == key
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [3]
    compress = pod["containers"][0]
    args = compress["args"]
    assert args[args.index("--out") + 1] == f"/store/{key}"
    assert parse_recipe(yaml.safe_load(args[args.index("--recipe-json") + 1])).to_dict() == \
        parse_recipe(spec.compression.recipe).to_dict()
    fetch = pod["initContainers"][0]
    assert fetch["name"] == "fetch-model" and "/work/input" in fetch["args"]
    assert fetch["envFrom"] == compress["envFrom"] == [{"secretRef": {"name": "s3-creds", "optional": False}}]
    assert args[args.index("--model") + 1] == "/work/input/digits/1/model.onnx"
    # the job's own placement replaces spec.placement; a CPU job gets no GPU toleration
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert [t["key"] for t in pod["tolerations"]] == ["dedicated"]
    assert compress["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    for container in (fetch, compress):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["readOnlyRootFilesystem"]


def test_gpu_job_follows_spec_placement_and_tolerates_gpu_nodes():
    owner, spec = load("pvc-model-gpu-job")
    pod = r.render_job(owner, spec, "0" * 64, spec.compression.recipe, OPTIONS)["spec"]["template"]["spec"]
    assert [t["key"] for t in pod["tolerations"]] == [c.GPU_TAINT_KEY, "modeldeploy.io/pod-runner"]
    assert pod["containers"][0]["resources"]["limits"][c.GPU_RESOURCE] == "1"
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"store": "store", "model-source": "trained"}
    # the dataset pvc://trained/... is readable by the compress container where the fetcher reads the claim
    compress = pod["containers"][0]
    assert {"name": "model-source", "mountPath": "/mnt/pvc/trained", "readOnly": True} in compress["volumeMounts"]


def test_served_spec_points_serving_pods_at_the_store():
    owner, spec = load("digits-prune-int8")
    served = r.served_spec(spec, "c" * 64, {"file": "evil/../../x.onnx", "sha256": "ab" * 32})
    assert served.model.uri == f"pvc://model-store/{'c' * 64}/selected/model.onnx"  # never a path from the result
    with pytest.raises(ValueError, match="is not a SHA-256"):
        r.served_uri(spec, "../" + "c" * 61)
    assert (served.model.sha256, served.model.credentials_secret, served.model.name) == ("ab" * 32, None, "digits")
    deployment = render_children(owner, served, "rev", OPTIONS)[3]
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "model-source", "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True}} \
        in pod["volumes"]


def test_cache_record_is_owned_by_its_job_and_has_the_whole_key():
    owner, _ = load("digits-prune-int8")
    job = {"metadata": {"name": r.job_name("k" * 64), "uid": "job-uid"}}
    cm = r.render_cache_record(owner, 4, "k" * 64, {"status": "chosen"}, job)
    assert cm["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job",
                                                  "name": r.job_name("k" * 64), "uid": "job-uid"}]
    assert cm["metadata"]["annotations"] == {c.ANNOTATION_COMPRESSION_KEY: "k" * 64,
                                             c.ANNOTATION_PRODUCER: f"{owner.uid}/4"}
    assert cm["data"] == {"summary.json": '{"status":"chosen"}'}
