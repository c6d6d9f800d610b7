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
