from modeldeploy.api.spec import parse_spec
from modeldeploy.render.config_pbtxt import render_config_pbtxt


def test_gpu_model_with_dynamic_batching():
    spec = parse_spec("digits", {
        "model": {"uri": "s3://b/m.onnx", "format": "onnx", "version": 3},
        "serving": {"maxBatchSize": 16, "instancesPerDevice": 2,
                    "dynamicBatching": {"preferredBatchSizes": [4, 8], "maxQueueDelayMicroseconds": 500}},
    })
    assert render_config_pbtxt(spec) == (
        'name: "digits"\n'
        'backend: "onnxruntime"\n'
        "max_batch_size: 16\n"
        "dynamic_batching {\n"
        "  preferred_batch_size: [ 4, 8 ]\n"
        "  max_queue_delay_microseconds: 500\n"
        "}\n"
        "instance_group [\n  {\n    count: 2\n    kind: KIND_GPU\n  }\n]\n"
    )


def test_cpu_model_without_batching():
    spec = parse_spec("echo", {"model": {"uri": "file:///m.py", "format": "python"},
                               "resources": {"gpu": {"count": 0}}})
    text = render_config_pbtxt(spec)
    assert 'backend: "python"' in text
    assert "max_batch_size: 0" in text
    assert "dynamic_batching" not in text
    assert "kind: KIND_CPU" in text


def test_model_name_is_quoted_safely():
    """parse_spec refuses such a name (test_spec.py); the renderer quotes it anyway."""
    from dataclasses import replace

    spec = parse_spec("m", {"model": {"uri": "s3://b/m", "format": "onnx"}})
    spec = replace(spec, model=replace(spec.model, name='a"b'))
    assert 'name: "a\\"b"' in render_config_pbtxt(spec)


def test_docstring_examples():
    import doctest

    from modeldeploy.render import config_pbtxt

    assert doctest.testmod(config_pbtxt).failed == 0


def test_a_newline_in_a_warmup_name_stays_on_its_line():
    spec = parse_spec("m", {"model": {"uri": "s3://b/m", "format": "onnx"},
                            "serving": {"maxBatchSize": 2, "warmup": [
                                {"name": 'x"\nname: "evil', "inputs": {"in": {"dataType": "FP32", "dims": [1]}}}]}})
    text = render_config_pbtxt(spec)
    assert '    name: "x\\"\\nname: \\"evil"\n' in text
    assert text.count("\nname:") == 0 and text.startswith('name: "m"\n')
