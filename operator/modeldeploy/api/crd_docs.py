"""Render docs/api.md from the CRD, so the field reference can never drift from the schema.

``python -m modeldeploy.api.crd_docs crds/modeldeploy.io_modeldeployments.yaml > docs/api.md``;
tests/unit/test_docs.py fails when the checked-in file differs from what this renders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml


def _type(schema: dict[str, Any]) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    t = schema.get("type", "object")
    if t == "array":
        return f"[]{_type(schema.get('items', {}))}"
    return t


def _facts(schema: dict[str, Any], required: bool) -> str:
    facts = []
    if required:
        facts.append("required")
    if "default" in schema:
        facts.append(f"default `{json.dumps(schema['default'])}`")
    if "enum" in schema:
        facts.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    for key, word in (("minimum", ">="), ("maximum", "<=")):
        if key in schema:
            facts.append(f"{word} {schema[key]}")
    if "pattern" in schema:
        facts.append(f"pattern `{schema['pattern']}`")
    for rule in schema.get("x-kubernetes-validations", []):
        facts.append(f"rule: {rule['message']}")
    return "; ".join(facts)


#: A field whose description starts so is a Kubernetes type copied into the pod (its fields are documented
#: by Kubernetes, e.g. `kubectl explain pod.spec.affinity`): one row, not one per nested field.
KUBERNETES_TYPE = "A Kubernetes core/v1 "


def _rows(schema: dict[str, Any], path: str, required: bool = False) -> Iterator[str]:
    desc = " ".join(str(schema.get("description", "")).split())
    facts = _facts(schema, required)
    yield f"| `{path}` | {_type(schema)} | {desc} | {facts} |".replace("\n", " ")
    if desc.startswith(KUBERNETES_TYPE):
        return
    req = set(schema.get("required", []))
    for name, sub in (schema.get("properties") or {}).items():
        yield from _rows(sub, f"{path}.{name}", name in req)
    items = schema.get("items")
    if items and items.get("properties"):
        for name, sub in items["properties"].items():
            yield from _rows(sub, f"{path}[].{name}", name in set(items.get("required", [])))


def render(crd: dict[str, Any]) -> str:
    version = crd["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    out = [
        f"# {crd['spec']['names']['kind']} API reference ({crd['spec']['group']}/{version['name']})",
        "",
        "Generated from `crds/modeldeploy.io_modeldeployments.yaml` by "
        "`python -m modeldeploy.api.crd_docs`; do not edit by hand. "
        "`kubectl explain modeldeployment.spec.<field>` shows the same text on a cluster.",
        "",
        " ".join(root.get("description", "").split()),
        "",
    ]
    metadata = root["properties"].get("metadata", {})
    for name, sub in (metadata.get("properties") or {}).items():
        facts = _facts(sub, False).replace(f"metadata.{name} ", "")
        out += [f"`metadata.{name}`: {facts}.", ""]
    for top in ("spec", "status"):
        out += [f"## {top}", "", "| field | type | description | constraints |", "|---|---|---|---|"]
        out += list(_rows(root["properties"][top], top))
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "crds/modeldeploy.io_modeldeployments.yaml")
    sys.stdout.write(render(yaml.safe_load(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
