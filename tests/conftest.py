import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
# Tests import the package from the source tree even without `pip install -e .`.
sys.path.insert(0, str(ROOT / "operator"))


# Property-based tests: the same examples on every run and machine (no database, derandomized, no deadline on a
# shared CPU); HYPOTHESIS_PROFILE=fuzz for a long random search.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("fuzz", deadline=None, max_examples=20000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def run_order(item) -> tuple[int, int]:
    """Unit tests first, then the integration tests, test_helm.py first among them.

    The integration tests' sandbox (a control plane, the pod runner, Prometheus, the operator) comes up
    with the first test that needs it and stays up to the end of the session: no unit test may run while
    it takes the CPU, and no integration test may wait behind a CPU-bound unit test. test_helm.py must be
    the only operator reconciling its namespace, so it runs before any test starts the session-wide
    operator (which watches every namespace).
    """
    integration = item.get_closest_marker("integration") is not None or "integration" in item.path.parts
    return (1 if integration else 0, 0 if item.path.name == "test_helm.py" else 1)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=run_order)  # stable: the order within each group is pytest's
