"""Golden-file tests: each tests/golden/*.input.yaml renders to exactly its *.expected.yaml."""

import os
from pathlib import Path

import pytest
import yaml

from modeldeploy.api.spec import parse_spec
from modeldeploy.render import names
from modeldeploy.render.triton import Owner, RenderOptions, render_children

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = sorted(p.name.removesuffix(".input.yaml") for p in GOLDEN.glob("*.input.yaml"))


def render(md: dict) -> list[dict]:
    meta = md["metadata"]
    spec = parse_spec(meta["name"], md["spec"])
    options = RenderOptions()
    owner = Owner(meta["name"], meta["namespace"], meta["uid"])
    return render_children(owner, spec, names.revision_of(spec, options.triton_image, options.fetcher_image), options)


@pytest.mark.parametrize("case", CASES)
def test_rendering_matches_golden(case):
    md = yaml.safe_load((GOLDEN / f"{case}.input.yaml").read_text())
    rendered = yaml.safe_dump_all(render(md), sort_keys=True)
    expected_path = GOLDEN / f"{case}.expected.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(rendered)
    assert expected_path.exists(), f"no golden file for {case}; run with UPDATE_GOLDEN=1 and review it"
    assert rendered == expected_path.read_text()


def test_there_are_golden_cases():
    assert len(CASES) >= 3
