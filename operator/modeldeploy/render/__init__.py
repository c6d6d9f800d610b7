"""Pure renderers: ModelDeployment spec -> Kubernetes objects (plain dicts) and Triton config.pbtxt.

Nothing here talks to a network; every function is deterministic given its inputs, which is what the
golden-file tests in tests/unit/test_render_golden.py rely on.
"""
