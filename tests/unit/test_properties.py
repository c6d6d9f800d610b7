"""Property-based tests (hypothesis): parsing never crashes, and what a parsed spec renders, Kubernetes accepts.

An outside review fuzzed 34,000 inputs and found crash classes: wrong JSON types in ``parse_spec`` raised
AttributeError/TypeError, ``parse_recipe`` had a TypeError reachable through ``modeldeploy compress
--recipe-json``, and renderers built children Kubernetes rejects (a Service for a ModelDeployment named
``1``, a label ``k-``). These properties keep that from coming back:

1. ``parse_spec`` returns a Spec or raises SpecError, for any JSON document and any name;
2. ``parse_recipe`` returns a Recipe or raises RecipeError, for any JSON document;
3. every child rendered from a spec that parsed (Deployment, Service, ConfigMaps, compression Job) has
   names, labels, selectors, images, quantities and scheduling fields that pass Kubernetes' validation
   rules (:mod:`modeldeploy.api.validation`, themselves tested against the real API server in
   tests/integration/test_validation.py).

The examples are derandomized (tests/conftest.py, profile ``ci``): the suite is the same on every run and
machine. ``HYPOTHESIS_PROFILE=fuzz`` runs many more, random examples.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterator

from hypothesis import assume, given, note
from hypothesis import strategies as st

from modeldeploy.api import validation as v
from modeldeploy.api.spec import MODEL_FORMATS, Spec, SpecError, parse_spec
from modeldeploy.policy.compression import RecipeError, parse_recipe, recipe_hash
from modeldeploy.render import compression_job, names
from modeldeploy.render.triton import Owner, RenderOptions, render_children

OPTIONS = RenderOptions()

# --- strategies -----------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=24)


def near(good: list[Any], bad: list[Any] = ()) -> st.SearchStrategy:
    """Mostly plausible values (eight draws in ten), sometimes wrong ones, sometimes any JSON: deep enough to
    reach the renderers, rough enough to find what the checks miss."""
    choices = (st.sampled_from(list(good)), st.sampled_from(list(bad) or [None]), json_values)
    return st.integers(0, 9).flatmap(lambda i: choices[0 if i < 8 else i - 7])


label_like = near(["gpu", "a", "zone-a", "x.y_z", "A1", "a" * 63],
                  ["k-", "a b", "", "-a", "a" * 64, "é", "a/b"])
key_like = near(["pool", "nvidia.com/gpu.product", "example.com/a-b", "kubernetes.io/hostname"],
                ["bad key", "a/b/c", "/x", "x/", "-x", "a" * 64, "A.com/x"])
names_like = near(["digits", "m", "a-b", "z9", "a" * 63], ["7digits", "digits.v2", "1", "k-", "Digits", "a" * 64, ""])
quantity_like = near(["4", "500m", "1.5", "16Gi", "512Mi", 2, "1e3", "0"],
                     ["lots", "-1", "1.5.5", "99999999999999999999Ti", "1Mi ", "", "1e999999"])

toleration = st.fixed_dictionaries({}, optional={
    "key": key_like, "operator": near(["Exists", "Equal"], ["In"]), "value": label_like,
    "effect": near(["", "NoSchedule", "PreferNoSchedule", "NoExecute"], ["Never"]),
    "tolerationSeconds": near([0, 30], [-1.5])})
requirement = st.fixed_dictionaries({"key": key_like, "operator": near(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"])},
                                    optional={"values": st.lists(label_like, max_size=3) | near([["1"]])})
node_term = st.fixed_dictionaries({}, optional={"matchExpressions": st.lists(requirement, max_size=2),
                                                "matchFields": st.lists(st.fixed_dictionaries({
                                                    "key": near(["metadata.name"]), "operator": near(["In"]),
                                                    "values": near([["node-1"]], [["a", "b"]])}), max_size=1)})
label_selector = st.fixed_dictionaries({}, optional={
    "matchLabels": st.dictionaries(key_like.filter(lambda k: isinstance(k, str)), label_like, max_size=2),
    "matchExpressions": st.lists(requirement, max_size=2)})
pod_term = st.fixed_dictionaries({"topologyKey": key_like}, optional={
    "labelSelector": label_selector, "namespaceSelector": label_selector,
    "namespaces": st.lists(names_like, max_size=2), "matchLabelKeys": st.lists(key_like, max_size=2)})
affinity = st.fixed_dictionaries({}, optional={
    "nodeAffinity": st.fixed_dictionaries({}, optional={
        "requiredDuringSchedulingIgnoredDuringExecution": st.fixed_dictionaries({
            "nodeSelectorTerms": st.lists(node_term, max_size=2)}),
        "preferredDuringSchedulingIgnoredDuringExecution": st.lists(st.fixed_dictionaries({
            "weight": near([1, 100], [0, 101]), "preference": node_term}), max_size=2)}),
    "podAntiAffinity": st.fixed_dictionaries({}, optional={
        "requiredDuringSchedulingIgnoredDuringExecution": st.lists(pod_term, max_size=2),
        "preferredDuringSchedulingIgnoredDuringExecution": st.lists(st.fixed_dictionaries({
            "weight": near([50]), "podAffinityTerm": pod_term}), max_size=1)})}) | json_values
placement = st.fixed_dictionaries({}, optional={
    "nodeSelector": st.dictionaries(key_like.filter(lambda k: isinstance(k, str)), label_like, max_size=3) | json_values,
    "tolerations": st.lists(toleration, max_size=3) | json_values,
    "affinity": affinity})
recipe_like = st.fixed_dictionaries({}, optional={
    "quantization": near([{"mode": "fp16"}, {"mode": "int8-static", "perChannel": True}, [{"mode": "fp16"}]]),
    "pruning": near([{"amount": 0.5}]),
    "variants": st.lists(st.fixed_dictionaries({"technique": near(["fp16", "prune"])},
                                               optional={"name": names_like, "from": names_like}), max_size=3),
    "evaluation": st.fixed_dictionaries({}, optional={
        "dataset": near(["builtin://digits"]), "maxAccuracyDrop": near([1, 0.5], [-1, math.nan]),
        "batchSizes": near([[1, 32]], [[], [0]]), "runs": near([5])}),
    "select": near(["smallest", "fastest", "fp16"]), "seed": near([0, 7])})
spec_like = st.fixed_dictionaries({
    "model": st.fixed_dictionaries({
        "uri": near(["s3://b/m.onnx", "gs://b/m", "https://h/m.onnx", "pvc://store/m.onnx", "file:///m.onnx"],
                    ["ftp://x", "pvc://claim-only", "s3://"]),
        "format": near(list(MODEL_FORMATS), ["pickle"])},
        optional={"name": names_like | label_like, "version": near([1, 2], [0]),
                  "sha256": near(["a" * 64], ["xyz"]), "credentialsSecret": names_like})},
    optional={
        "serving": st.fixed_dictionaries({}, optional={
            "image": near(["nvcr.io/nvidia/tritonserver:25.10-py3", "localhost:5000/t@sha256:" + "a" * 64],
                          ["a b", "UPPER/x", ""]),
            "backend": near(["onnxruntime", "python"], ["vllm"]),
            "maxBatchSize": near([0, 8, 32]),
            "dynamicBatching": near([{"preferredBatchSizes": [4, 8]}, {}]),
            "instancesPerDevice": near([1, 2])}),
        "resources": st.fixed_dictionaries({}, optional={
            "gpu": st.fixed_dictionaries({}, optional={"count": near([0, 1, 2], [-1]), "product": label_like,
                                                       "migProfile": near(["1g.10gb"], ["big"])}),
            "cpu": quantity_like, "memory": quantity_like}),
        "placement": placement,
        "replicas": near([0, 1, 3], [-1, 2 ** 40]),
        "autoscaling": near([{"minReplicas": 1, "maxReplicas": 3}, {"maxReplicas": 2}], [{"minReplicas": 3, "maxReplicas": 1}]),
        "rollout": near([{"strategy": "Rolling"}, {"strategy": "Canary", "canary": {"steps": [{"setWeight": 10}]}}]),
        "compression": st.fixed_dictionaries({"modelStore": st.fixed_dictionaries({"claimName": names_like})}, optional={
            "job": st.fixed_dictionaries({}, optional={
                "resources": st.fixed_dictionaries({}, optional={"cpu": quantity_like, "memory": quantity_like,
                                                                "gpu": near([0, 1])}),
                "placement": placement})}).flatmap(
            lambda comp: recipe_like.map(lambda recipe: {**recipe, **comp})),
    })

# --- what Kubernetes accepts --------------------------------------------------------------------------


def _labels(labels: Any, where: str) -> Iterator[str]:
    for key, value in (labels or {}).items():
        if (msg := v.label_key(key)) is not None:
            yield f"{where} key {key!r}: {msg}"
        if (msg := v.label_value(value)) is not None:
            yield f"{where}[{key}] {value!r}: {msg}"


def _pod_problems(pod: dict, where: str) -> Iterator[str]:
    yield from _labels(pod.get("nodeSelector"), f"{where}.nodeSelector")
    yield from (f"{p}: {m}" for p, m in v.check_tolerations(pod.get("tolerations", []), f"{where}.tolerations"))
    if "affinity" in pod:
        yield from (f"{p}: {m}" for p, m in v.check_affinity(pod["affinity"], f"{where}.affinity"))
    for kind in ("initContainers", "containers"):
        for container in pod.get(kind, []):
            at = f"{where}.{kind}[{container.get('name')}]"
            if not (len(container["name"]) <= 63 and v.DNS1123_LABEL.fullmatch(container["name"])):
                yield f"{at}.name: not a DNS-1123 label"
            if (msg := v.image(container["image"])) is not None:
                yield f"{at}.image {container['image']!r}: {msg}"
            for part in ("requests", "limits"):
                for resource, amount in container.get("resources", {}).get(part, {}).items():
                    check = v.cpu if resource == "cpu" else v.memory if resource == "memory" else None
                    if check is not None and (msg := check(amount)) is not None:
                        yield f"{at}.resources.{part}.{resource} {amount!r}: {msg}"
                    elif check is None and (v.label_key(resource) or v.quantity_value(amount) is None):
                        yield f"{at}.resources.{part}: {resource}={amount!r}"
    for volume in pod.get("volumes", []):
        if not (len(volume["name"]) <= 63 and v.DNS1123_LABEL.fullmatch(volume["name"])):
            yield f"{where}.volumes: {volume['name']!r} not a DNS-1123 label"
        for source, field in (("configMap", "name"), ("secret", "secretName"), ("persistentVolumeClaim", "claimName")):
            if source in volume and v.dns1123_subdomain(volume[source][field]) is not None:
                yield f"{where}.volumes[{volume['name']}].{source}: {volume[source][field]!r}"


def kubernetes_problems(obj: dict) -> list[str]:
    """What the API server would refuse in ``obj`` among names, labels, selectors and pod fields."""
    kind, meta = obj["kind"], obj["metadata"]
    name_check = v.dns1035_label if kind == "Service" else v.dns1123_subdomain
    problems = [f"{kind} name {meta['name']!r}: {msg}" for msg in [name_check(meta["name"])] if msg]
    problems += _labels(meta.get("labels"), f"{kind}.metadata.labels")
    spec = obj.get("spec", {})
    if kind == "Service":
        problems += _labels(spec.get("selector"), "Service.spec.selector")
    template = spec.get("template")
    if template:
        problems += _labels(spec.get("selector", {}).get("matchLabels"), f"{kind}.spec.selector.matchLabels")
        problems += _labels(template["metadata"].get("labels"), f"{kind}.spec.template.metadata.labels")
        problems += _pod_problems(template["spec"], f"{kind}.spec.template.spec")
    return list(problems)


def rendered(name: str, spec: Spec) -> list[dict]:
    owner = Owner(name, "ns", "uid-1")
    children = render_children(owner, spec, names.revision_of(spec, OPTIONS.triton_image, OPTIONS.fetcher_image),
                               OPTIONS)
    if spec.compression is not None and spec.model.format == "onnx":
        try:
            recipe = parse_recipe(spec.compression.recipe)
        except RecipeError:
            return children  # the reconciler reports it and renders no Job
        # keyed as reconcile.compression.compression_key does
        key = recipe_hash(compression_job.input_identity(spec.model), recipe.to_dict(), {"image": OPTIONS.fetcher_image})
        children.append(compression_job.render_job(owner, spec, key, spec.compression.recipe, OPTIONS))
    return children


# --- the properties -------------------------------------------------------------------------------------


def parses_or_spec_error(name: Any, spec: Any) -> Spec | None:
    try:
        return parse_spec(name, spec)
    except SpecError as err:
        assert err.field and "\n" not in str(err), err
        return None


@given(name=names_like, spec=json_values)
def test_parse_spec_of_any_json_returns_a_spec_or_raises_spec_error(name, spec):
    parses_or_spec_error(name, spec)


@given(name=names_like, spec=spec_like)
def test_parse_spec_of_spec_shaped_input_returns_a_spec_or_raises_spec_error(name, spec):
    parses_or_spec_error(name, spec)


@given(recipe=json_values | recipe_like)
def test_parse_recipe_of_any_json_returns_a_recipe_or_raises_recipe_error(recipe):
    try:
        parsed = parse_recipe(recipe)
    except RecipeError as err:
        assert str(err).startswith("recipe: ") and "\n" not in str(err), err
    else:
        json.dumps(parsed.to_dict())  # what is hashed and passed on is plain JSON


@given(name=names_like, spec=spec_like)
def test_every_child_rendered_from_a_parsed_spec_passes_kubernetes_validation(name, spec):
    parsed = parses_or_spec_error(name, spec)
    assume(parsed is not None)
    note(json.dumps(spec, default=str)[:2000])
    problems = [p for child in rendered(name, parsed) for p in kubernetes_problems(child)]
    assert problems == []


@given(serving=placement, job=placement, resources=spec_like.map(lambda s: s.get("resources", {})))
def test_every_placement_that_parses_renders_a_pod_kubernetes_accepts(serving, job, resources):
    """The scheduling fields more often than the whole-spec property reaches them: a valid model, then
    spec.placement, spec.resources and the compression Job's placement as drawn."""
    spec = {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}, "placement": serving, "resources": resources,
            "compression": {"modelStore": {"claimName": "store"}, "quantization": {"mode": "fp16"},
                            "evaluation": {"dataset": "builtin://digits"}, "job": {"placement": job}}}
    parsed = parses_or_spec_error("digits", spec)
    assume(parsed is not None)
    problems = [p for child in rendered("digits", parsed) for p in kubernetes_problems(child)]
    assert problems == []


def test_the_checker_has_teeth():
    """The validation the properties rely on refuses what the review found, so the properties can fail."""
    spec = parse_spec("m", {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}})
    children = rendered("m", spec)
    assert [p for c in children for p in kubernetes_problems(c)] == []
    from dataclasses import replace

    bad = replace(spec, model=replace(spec.model, name="k-"))
    assert any("k-" in p for c in rendered("m", bad) for p in kubernetes_problems(c))
    service = next(c for c in rendered("m", spec) if c["kind"] == "Service")
    service["metadata"]["name"] = "1"
    assert kubernetes_problems(service) and "DNS-1035" in kubernetes_problems(service)[0]
