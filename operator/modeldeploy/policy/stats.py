"""The few exact tests canary analysis needs, in pure Python (no scipy at run time). Pure.

Why not scipy: the operator image should stay small and its decisions must not change with a
numerical library's version; the tests here are short and are cross-checked against scipy in
tests/unit/test_stats.py.

What is here, and why each:

- ``binom_sf(k, n, p)``: P(X >= k) for X ~ Binomial(n, p), exact (summed from the tail inwards, so a
  p-value of 1e-30 is not lost to 1 - 0.999...). Used for error counts against an absolute limit, for
  sign tests, and for the tail-exceedance test of a p99 limit.
- ``binom_upper(x, n, a)``: the Clopper-Pearson upper bound of a proportion.
- ``sum_binom_sf(k, parts)``: P(S >= k) for S a sum of independent Binomial(f_j, pi_j); exact by
  convolution while the total is small, normal approximation with continuity correction beyond.
  This is the stratified conditional test of two error rates (see policy/analysis.py).
- ``mann_whitney_greater(x, y)``: one-sided Mann-Whitney U (Wilcoxon rank-sum) p-value for "x is
  stochastically greater than y"; exact null distribution for small samples without ties, else the
  normal approximation with tie and continuity corrections (what Kayenta's judge uses).
- ``look_alpha(alpha, look)``: the significance spent on the look-th judgement of one rollout,
  ``alpha / (look (look + 1))``; the sum over all looks is ``alpha`` (union bound), so repeated
  looks at a growing window cannot add up to more than ``alpha`` false failures per rollout.

>>> round(binom_sf(3, 10, 0.1), 6)
0.070191
>>> round(mann_whitney_greater([5, 6, 7], [1, 2, 3]), 4)
0.05
>>> [look_alpha(0.01, k) for k in (1, 2, 3)]
[0.005, 0.0016666666666666668, 0.0008333333333333334]
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable, Sequence

_EPS = 1e-17


def _log_pmf(k: int, n: int, p: float) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def _upper_tail(k: int, n: int, p: float) -> float:
    """sum_{i >= k} pmf(i), summed outwards from k (k at or above the mode's neighbourhood)."""
    term = math.exp(_log_pmf(k, n, p))
    total = term
    ratio = p / (1.0 - p)
    mode = math.floor((n + 1) * p)
    i = k
    while i < n:
        term *= (n - i) / (i + 1) * ratio
        i += 1
        total += term
        if i > mode and term <= total * _EPS:
            break
    return total


def _lower_tail(k: int, n: int, p: float) -> float:
    """sum_{i <= k} pmf(i), summed from k downwards."""
    term = math.exp(_log_pmf(k, n, p))
    total = term
    ratio = (1.0 - p) / p
    mode = math.floor((n + 1) * p)
    i = k
    while i > 0:
        term *= i / (n - i + 1) * ratio
        i -= 1
        total += term
        if i < mode and term <= total * _EPS:
            break
    return total


def binom_sf(k: float, n: float, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p). ``k`` is rounded up and ``n`` down to integers.

    >>> binom_sf(0, 5, 0.3), binom_sf(6, 5, 0.3), binom_sf(1, 5, 0.0), binom_sf(5, 5, 1.0)
    (1.0, 0.0, 0.0, 1.0)
    """
    k = math.ceil(k)
    n = math.floor(n)
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if k > n * p:
        return min(1.0, _upper_tail(k, n, p))
    return min(1.0, max(0.0, 1.0 - _lower_tail(k - 1, n, p)))


def binom_cdf(k: float, n: float, p: float) -> float:
    """P(X <= k)."""
    k = math.floor(k)
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    if k < n * p:
        return min(1.0, _lower_tail(k, math.floor(n), p))
    return min(1.0, max(0.0, 1.0 - _upper_tail(k + 1, math.floor(n), p)))


def binom_upper(x: float, n: float, a: float) -> float:
    """Clopper-Pearson upper bound: the largest p with P(Bin(n, p) <= x) >= a (1.0 when x >= n).

    >>> round(binom_upper(0, 1000, 0.05), 5)   # "rule of three": about 3/n
    0.00299
    """
    x = math.floor(x)
    n = math.floor(n)
    if n <= 0 or x >= n:
        return 1.0
    lo, hi = x / n, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if binom_cdf(x, n, mid) > a:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return hi


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


#: Above this many trials in total, sum_binom_sf uses the normal approximation.
EXACT_SUM_LIMIT = 400


def sum_binom_sf(k: float, parts: Iterable[tuple[int, float]]) -> float:
    """P(S >= k) where S = sum of independent Binomial(f, pi) over ``parts`` [(f, pi), ...].

    >>> round(sum_binom_sf(2, [(1, 0.5), (1, 0.5)]), 4)
    0.25
    >>> round(sum_binom_sf(3, [(3, 0.1)]), 6) == round(binom_sf(3, 3, 0.1), 6)
    True
    """
    parts = [(int(f), min(1.0, max(0.0, pi))) for f, pi in parts if int(f) > 0]
    k = math.ceil(k)
    total = sum(f for f, _ in parts)
    if k <= 0:
        return 1.0
    if k > total:
        return 0.0
    if len({pi for _, pi in parts}) == 1:
        return binom_sf(k, total, parts[0][1])
    if total <= EXACT_SUM_LIMIT:
        dist = [1.0]
        for f, pi in parts:
            pmf = [0.0] * (f + 1)
            if pi <= 0.0:
                pmf[0] = 1.0
            elif pi >= 1.0:
                pmf[f] = 1.0
            else:
                for i in range(f + 1):
                    pmf[i] = math.exp(_log_pmf(i, f, pi))
            out = [0.0] * (len(dist) + f)
            for a, pa in enumerate(dist):
                if pa == 0.0:
                    continue
                for b, pb in enumerate(pmf):
                    out[a + b] += pa * pb
            dist = out
        return min(1.0, max(0.0, sum(dist[k:])))
    mean = sum(f * pi for f, pi in parts)
    var = sum(f * pi * (1 - pi) for f, pi in parts)
    if var <= 0.0:
        return 1.0 if mean >= k else 0.0
    return _normal_sf((k - 0.5 - mean) / math.sqrt(var))


@lru_cache(maxsize=256)
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """Number of orderings giving each U in 0..n1*n2 (no ties): the Mann-Whitney null distribution."""
    if n1 == 0 or n2 == 0:
        return (1,)
    # c(n1, n2, u) = c(n1 - 1, n2, u - n2) + c(n1, n2 - 1, u): the largest value is from x or from y.
    a = _u_counts(n1 - 1, n2)
    b = _u_counts(n1, n2 - 1)
    out = [0] * (n1 * n2 + 1)
    for u, count in enumerate(a):
        out[u + n2] += count
    for u, count in enumerate(b):
        out[u] += count
    return tuple(out)


#: Exact Mann-Whitney distribution while both samples are at most this long (and there are no ties).
EXACT_MWU_LIMIT = 30


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for m in range(i, j + 1):
            ranks[order[m]] = rank
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> float:
    """U of ``x``: the number of (x_i, y_j) pairs with x_i > y_j, ties counting 1/2."""
    ranks, _ = _ranks(list(x) + list(y))
    return sum(ranks[:len(x)]) - len(x) * (len(x) + 1) / 2


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value of H1 "x tends to be larger than y"; 1.0 when either sample is empty.

    >>> mann_whitney_greater([1, 2, 3], [5, 6, 7])
    1.0
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = list(x) + list(y)
    ranks, ties = _ranks(pooled)
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    if not ties and n1 <= EXACT_MWU_LIMIT and n2 <= EXACT_MWU_LIMIT:
        counts = _u_counts(n1, n2)
        return sum(counts[math.ceil(u):]) / math.comb(n1 + n2, n1)
    n = n1 + n2
    mean = n1 * n2 / 2
    tie_term = sum(t ** 3 - t for t in ties) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12 * ((n + 1) - tie_term)
    if var <= 0.0:
        return 1.0  # every value equal: no evidence either way
    return _normal_sf((u - mean - 0.5) / math.sqrt(var))


def look_alpha(alpha: float, look: int) -> float:
    """Significance for the ``look``-th judgement (1-based); sums to ``alpha`` over all looks."""
    look = max(1, int(look))
    return alpha / (look * (look + 1))
