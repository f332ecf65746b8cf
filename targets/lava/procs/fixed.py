"""Integer arithmetic of docs/integer-semantics.md in numpy (the ProcessModels' building blocks).

Every function works on int64 arrays and is exact; none goes through floating
point except ``conv_wh``, whose float64 products and sums are exact while
``Σ|w|·|x|`` stays below 2^53 (the lowering bounds it far lower, below 2^23).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

I64 = np.int64


def rs(a: np.ndarray, frac_bits: int) -> np.ndarray:
    """Rounding right shift, half away from zero: ``sign(a)·((|a| + 2^(F−1)) >> F)``; ``rs(a, 0) = a``."""
    if frac_bits == 0:
        return a
    a = np.asarray(a, dtype=I64)
    return (a - (a < 0) + I64(1 << (frac_bits - 1))) >> I64(frac_bits)


def exp_shift(a: np.ndarray, e: int) -> np.ndarray:
    """The synapse exponent ``e(a, E)``: ``a·2^E`` for E ≥ 0, ``rs(a, −E)`` for E < 0."""
    a = np.asarray(a, dtype=I64)
    return a << I64(e) if e >= 0 else rs(a, -e)


def saturate(a: np.ndarray, bits: int) -> np.ndarray:
    """``sat(a, B)``: clip to B-bit two's complement."""
    return np.clip(a, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def signed_wrap(a: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap to ``bits`` (what Lava's fixed-point Conv does to its 24-bit output)."""
    base = 1 << bits
    return (a + base // 2) % base - base // 2


def conv_wh(x: np.ndarray, weight: np.ndarray, stride, padding, dilation, groups: int) -> np.ndarray:
    """Lava's Conv on one (X, Y, C) tensor: ``weight`` is (Cout, kx, ky, Cin/groups) and is *convolved*
    (spatially flipped), as ``lava.proc.conv.utils.conv`` does; returns exact int64 (X', Y', Cout)."""
    cout, kx, ky, cin_g = weight.shape
    (sx, sy), (px, py), (dx, dy) = stride, padding, dilation
    xp = np.pad(x.astype(np.float64), ((px, px), (py, py), (0, 0)))
    span_x, span_y = dx * (kx - 1) + 1, dy * (ky - 1) + 1
    win = sliding_window_view(xp, (span_x, span_y), axis=(0, 1))[::sx, ::sy, :, ::dx, ::dy]   # X',Y',C,kx,ky
    wf = weight[:, ::-1, ::-1, :].astype(np.float64)       # convolution = correlation with the flipped kernel
    xo, yo, per = win.shape[0], win.shape[1], cout // groups
    patches = win.reshape(xo * yo, groups, cin_g, kx, ky).transpose(1, 0, 2, 3, 4).reshape(groups, xo * yo, -1)
    wg = wf.reshape(groups, per, kx, ky, cin_g).transpose(0, 1, 4, 2, 3).reshape(groups, per, -1)
    y = np.matmul(patches, wg.transpose(0, 2, 1))                 # groups, X'·Y', per
    return np.rint(y.transpose(1, 0, 2).reshape(xo, yo, cout)).astype(I64)
