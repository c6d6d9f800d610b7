"""Central finite differences for checking the numpy layers' and losses' gradients."""

import numpy as np


def numeric_grad(f, a, eps=1e-6):
    """d f() / d a, perturbing ``a`` in place one element at a time."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        plus = f()
        a[i] = old - eps
        minus = f()
        a[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return g


def rel_error(a, b):
    return np.abs(a - b).max() / max(1e-8, np.abs(a).max() + np.abs(b).max())
