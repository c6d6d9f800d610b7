from pathlib import Path

import yaml

from modeldeploy.api.crd_docs import render

ROOT = Path(__file__).resolve().parents[2]


def test_api_reference_is_generated_from_the_crd():
    crd = yaml.safe_load((ROOT / "crds" / "modeldeploy.io_modeldeployments.yaml").read_text())
    expected = render(crd)
    assert (ROOT / "docs" / "api.md").read_text() == expected, (
        "docs/api.md is stale: PYTHONPATH=operator python -m modeldeploy.api.crd_docs > docs/api.md")


def test_reference_lists_every_contract_field():
    text = (ROOT / "docs" / "api.md").read_text()
    for field in ("spec.model.uri", "spec.model.format", "spec.serving.dynamicBatching.maxQueueDelayMicroseconds",
                  "spec.resources.gpu.migProfile", "spec.placement.tolerations", "spec.rollout.canary.steps[].setWeight",
                  "status.conditions", "status.observedGeneration"):
        assert f"`{field}`" in text, field


def test_every_test_named_in_the_security_doc_exists():
    """docs/security.md cites a test for each guarantee: each file exists and each named test function is
    in it (a trailing ``*`` matches a prefix; a bare ``::name`` belongs to the file cited before it)."""
    import re

    text = (ROOT / "docs" / "security.md").read_text()
    current, checked = None, 0
    for path, name in re.findall(r"(tests/(?:unit|integration)/[\w/]+\.py)?(?:::([\w*]+))?", text):
        if not path and not name:
            continue
        current = path or current
        assert current is not None, f"::{name} cited before any test file"
        source = (ROOT / current).read_text()
        if name:
            pattern = rf"def {re.escape(name.rstrip('*'))}" + (r"\w*\(" if name.endswith("*") else r"\(")
            assert re.search(pattern, source), f"{current}::{name} is cited in docs/security.md but does not exist"
        checked += 1
    assert checked >= 20
