"""The sandbox's example builders: the fixed-service-time model and the autoscaled ModelDeployment around it."""

from __future__ import annotations

import ast
import doctest

from modeldeploy.api.spec import parse_spec
from modeldeploy.render.config_pbtxt import render_config_pbtxt
from modeldeploy.sandbox import examples


def test_doctests():
    assert doctest.testmod(examples).failed == 0


def test_the_fixed_service_time_model_is_python_that_sleeps_the_time_asked(tmp_path):
    path = examples.fixed_service_time_model(tmp_path / "m", 20)
    tree = ast.parse(path.read_text())
    constants = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)}
    assert constants == {"SERVICE_SECONDS": 0.02}
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == ["TritonPythonModel"]
    assert examples.fixed_service_time_model(tmp_path / "m", 50).read_text() != examples.FIXED_SERVICE_TIME_MODEL_PY


def test_the_autoscaled_python_model_is_a_valid_spec_served_one_request_at_a_time(tmp_path):
    path = examples.fixed_service_time_model(tmp_path, 20)
    body = examples.autoscaled(examples.python_on_runner("fixed", path, model_name="fixed"),
                               maxReplicas=4, targetInferencesPerSecondPerReplica=10)
    spec = parse_spec("fixed", body["spec"])
    assert (spec.model.format, spec.backend, spec.autoscaling.max_replicas) == ("python", "python", 4)
    assert "replicas" not in body["spec"]
    config = render_config_pbtxt(spec)
    assert 'backend: "python"' in config and "max_batch_size: 0" in config and "dynamic_batching" not in config
