"""A deliberately plain numpy reference of the LM-HT neuron (docs/design.md §1), for tests only.

Written independently of ``lmhtc.compiler.neurons``: explicit loops, levels by
comparisons, float64 arithmetic.
"""
from __future__ import annotations

import numpy as np


def lmht_reference(x, theta, levels, lam=1.0, omega=None, v_init=0.0, scale=1.0):
    """x: [T, ...] input sequence → multi-level spikes [T, ...] (values in {0, θ, …, Lθ})."""
    x = np.asarray(x, dtype=np.float64)
    steps = x.shape[0]
    if omega is None:
        omega = np.full((steps, steps), 1.0 / steps)
    v = np.full(x.shape[1:], v_init * theta, dtype=np.float64)
    out = np.zeros_like(x)
    for t in range(steps):
        current = sum(omega[t, j] * scale * x[j] for j in range(steps))
        v = lam * v + current
        count = np.zeros_like(v)
        for i in range(1, levels + 1):
            count += (v >= i * theta)
        out[t] = count * theta
        v = v - out[t]
    return out
