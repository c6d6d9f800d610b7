"""The CRD is the user's manual and the chart must ship exactly it."""

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
    rules = [(path, rule) for path, sub in walk(version_schema()["properties"]["spec"])
             for rule in sub.get("x-kubernetes-validations", [])]
    assert len(rules) >= 6
    for path, rule in rules:
        assert "spec." in rule["message"], (path, rule)
