"""The pure-Python tests of policy/stats.py agree with scipy (a test dependency only)."""

import math
import random

import pytest

from modeldeploy.policy import stats

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("k,n,p", [
    (0, 10, 0.3), (1, 10, 0.3), (3, 10, 0.3), (10, 10, 0.3), (11, 10, 0.3),
    (5, 1000, 0.01), (30, 600, 0.01), (60, 600, 0.01), (2, 200, 0.0029), (500, 1000, 0.5),
    (480, 1000, 0.5), (1, 100000, 1e-6), (40, 100000, 1e-4), (9000, 100000, 0.1),
])
def test_binom_sf_matches_scipy(k, n, p):
    want = scipy_stats.binom.sf(k - 1, n, p)
    got = stats.binom_sf(k, n, p)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_tiny_tails_are_not_lost_to_cancellation():
    # 60 or more failures in 600 requests at a true rate of 1%: about 1e-26, not 0.
    got = stats.binom_sf(60, 600, 0.01)
    assert 0 < got < 1e-20
    assert got == pytest.approx(scipy_stats.binom.sf(59, 600, 0.01), rel=1e-9)


@pytest.mark.parametrize("k,n,p", [(0, 10, 0.3), (3, 10, 0.3), (9, 10, 0.3), (4, 1000, 0.01), (20, 1000, 0.01)])
def test_binom_cdf_matches_scipy(k, n, p):
    assert stats.binom_cdf(k, n, p) == pytest.approx(scipy_stats.binom.cdf(k, n, p), rel=1e-9)


@pytest.mark.parametrize("x,n,a", [(0, 1000, 0.05), (3, 100, 0.025), (10, 20, 0.01), (0, 5, 0.5)])
def test_clopper_pearson_upper_matches_the_beta_quantile(x, n, a):
    want = scipy_stats.beta.ppf(1 - a, x + 1, n - x)
    assert stats.binom_upper(x, n, a) == pytest.approx(want, rel=1e-6)


def test_sum_of_binomials_exact_against_brute_force():
    parts = [(3, 0.1), (2, 0.4), (4, 0.25)]
    # brute force: convolve with scipy pmfs
    dist = [1.0]
    for f, pi in parts:
        pmf = [scipy_stats.binom.pmf(i, f, pi) for i in range(f + 1)]
        out = [0.0] * (len(dist) + f)
        for a, pa in enumerate(dist):
            for b, pb in enumerate(pmf):
                out[a + b] += pa * pb
        dist = out
    for k in range(0, 11):
        assert stats.sum_binom_sf(k, parts) == pytest.approx(sum(dist[k:]), rel=1e-9, abs=1e-15)


def test_sum_of_binomials_normal_branch_is_close_to_exact():
    rng = random.Random(3)
    parts = [(rng.randint(5, 30), rng.uniform(0.05, 0.3)) for _ in range(40)]  # > EXACT_SUM_LIMIT trials
    total = sum(f for f, _ in parts)
    assert total > stats.EXACT_SUM_LIMIT
    mean = sum(f * pi for f, pi in parts)
    k = math.ceil(mean + 2 * math.sqrt(sum(f * pi * (1 - pi) for f, pi in parts)))
    exact = scipy_stats.poisson_binom.sf(k - 1, [pi for f, pi in parts for _ in range(f)]) \
        if hasattr(scipy_stats, "poisson_binom") else None
    got = stats.sum_binom_sf(k, parts)
    assert 0.01 < got < 0.05
    if exact is not None:
        assert got == pytest.approx(exact, rel=0.15)


@pytest.mark.parametrize("seed", range(6))
def test_mann_whitney_exact_matches_scipy(seed):
    rng = random.Random(seed)
    x = [rng.gauss(1.0, 1) for _ in range(rng.randint(1, 12))]
    y = [rng.gauss(0.0, 1) for _ in range(rng.randint(1, 12))]
    want = scipy_stats.mannwhitneyu(x, y, alternative="greater", method="exact").pvalue
    assert stats.mann_whitney_greater(x, y) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_mann_whitney_asymptotic_with_ties_matches_scipy(seed):
    rng = random.Random(100 + seed)
    x = [round(rng.gauss(0.3, 1), 1) for _ in range(rng.randint(35, 80))]
    y = [round(rng.gauss(0.0, 1), 1) for _ in range(rng.randint(35, 120))]
    want = scipy_stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic",
                                    use_continuity=True).pvalue
    assert stats.mann_whitney_greater(x, y) == pytest.approx(want, rel=1e-9)


def test_mann_whitney_u_counts_pairs():
    assert stats.mann_whitney_u([3, 1], [2, 2]) == 2.0  # 3 beats both 2s; 1 beats none
    assert stats.mann_whitney_u([2], [2]) == 0.5


def test_look_alpha_spends_at_most_alpha_over_any_number_of_looks():
    assert sum(stats.look_alpha(0.01, k) for k in range(1, 100001)) == pytest.approx(0.01, rel=1e-4)
    assert sum(stats.look_alpha(0.01, k) for k in range(1, 100001)) < 0.01


def test_docstring_examples():
    import doctest

    assert doctest.testmod(stats).failed == 0
