"""The CRD is the user's manual and the chart must ship exactly it."""

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "modeldeploy.io_modeldeployments.yaml"
CHART_CRD = ROOT / "charts" / "modeldeploy" / "crds" / "modeldeploy.io_modeldeployments.yaml"


def walk(schema, path="spec"):
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def version_schema():
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_chart_crd_is_byte_identical():
    assert CHART_CRD.read_bytes() == CRD.read_bytes(), "run: cp crds/*.yaml charts/modeldeploy/crds/"


def test_every_spec_and_status_field_has_a_description():
    schema = version_schema()
    missing = [path for top in ("spec", "status")
               for path, sub in walk(schema["properties"][top], top) if not sub.get("description")]
    assert missing == []


def test_every_cel_rule_has_a_message_naming_a_field():
    """The API server prefixes a rule's message with the path of the field it sits on (or its fieldPath), so
    every message names a field; messages of rules high in the tree name the field themselves."""
    schema = version_schema()["properties"]
    rules = [(path, rule) for top in ("metadata", "spec") for path, sub in walk(schema[top], top)
             for rule in sub.get("x-kubernetes-validations", [])]
    assert len(rules) >= 20
    for path, rule in rules:
        assert "spec." in rule["message"] or "metadata." in rule["message"] or "fieldPath" in rule \
            or path.count(".") >= 6, (path, rule)


def worst_case_size(schema: dict, path: str, unbounded: list[str]) -> int:
    """The largest JSON a value of ``schema`` can serialize to (characters), from its maxLength, maxItems,
    maxProperties and enums; what has no bound is appended to ``unbounded`` and counts 0."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        unbounded.append(path)
        return 0
    if schema.get("type") == "string" or schema.get("x-kubernetes-int-or-string"):
        if "enum" in schema:
            return max(len(json.dumps(e)) for e in schema["enum"])
        if "maxLength" not in schema:
            unbounded.append(path)
            return 0
        return max(schema["maxLength"] + 2, 20 if schema.get("x-kubernetes-int-or-string") else 0)
    if schema.get("type") in ("integer", "number", "boolean"):
        return 20
    if schema.get("type") == "array":
        if "maxItems" not in schema:
            unbounded.append(path)
            return 0
        return 2 + schema["maxItems"] * (worst_case_size(schema["items"], f"{path}[]", unbounded) + 1)
    size = 2
    for name, sub in (schema.get("properties") or {}).items():
        size += len(json.dumps(name)) + 2 + worst_case_size(sub, f"{path}.{name}", unbounded)
    if isinstance(schema.get("additionalProperties"), dict):
        if "maxProperties" not in schema:
            unbounded.append(f"{path}{{}}")
        else:  # keys are label keys (317 characters at most) wherever a map is bounded
            value = worst_case_size(schema["additionalProperties"], f"{path}{{}}", unbounded)
            size += schema["maxProperties"] * (317 + 4 + value)
    return size


#: Fields without a bound yet, each owned by a change in flight (remove the entry when it lands).
NOT_YET_BOUNDED = {
    "spec.serving.warmup[].inputs{}": "warmup inputs map (maxProperties), with the warmup fields' owner",
}
#: kubectl apply keeps a copy of the object in the last-applied-configuration annotation, and all annotations
#: together may not exceed 256 KiB: a spec must fit there with room for its metadata.
SPEC_BUDGET = 224 * 1024


def test_every_spec_field_is_bounded_and_the_worst_case_spec_fits_an_annotation():
    unbounded: list[str] = []
    size = worst_case_size(version_schema()["properties"]["spec"], "spec", unbounded)
    assert sorted(unbounded) == sorted(NOT_YET_BOUNDED), "every string, list and map needs maxLength/maxItems/" \
                                                         "maxProperties (or an enum)"
    assert size <= SPEC_BUDGET, f"worst-case spec {size:,} characters > {SPEC_BUDGET:,}"


def test_worst_case_size_counts_what_it_should():
    unbounded: list[str] = []
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3},
                                               "b": {"type": "array", "maxItems": 2, "items": {"type": "integer"}},
                                               "c": {"type": "string"}}}
    # {} + "a":"xxx", + "b":[n,n], (a number counts 20, and a comma each) + "c":, (unbounded: 0)
    assert worst_case_size(schema, "x", unbounded) == 2 + (3 + 2 + 5) + (3 + 2 + 2 + 2 * 21) + (3 + 2 + 0)
    assert unbounded == ["x.c"]


def test_replicas_default_to_one_and_autoscaling_may_be_set_beside_them():
    spec = version_schema()["properties"]["spec"]
    assert spec["properties"]["replicas"]["default"] == 1
    assert "spec.autoscaling is set it wins, spec.replicas is ignored and status says so" in " ".join(
        spec["properties"]["replicas"]["description"].split())
    assert not [r for r in spec.get("x-kubernetes-validations", []) if "replicas" in r["rule"]]


def test_unreconciled_status_reads_observed_generation_minus_one():
    status = version_schema()["properties"]["status"]
    assert status["default"] == {"observedGeneration": -1}
    assert status["properties"]["observedGeneration"]["default"] == -1
