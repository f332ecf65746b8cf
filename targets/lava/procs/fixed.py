"""Lava-specific integer helpers of the ProcessModels (numpy).

The integer semantics themselves (rs, the exponent shift, saturation, T-GIM, the neuron step) are
``lmhtc.semantics``; this module holds only what Lava's own processes add: the 24-bit wrap of Lava's
fixed-point Conv and its convolution layout. Every function is exact on int64; none goes through
floating point except ``conv_wh``, whose float64 products and sums are exact while
``Σ|w|·|x|`` stays below 2^53 (the lowering bounds it far lower, below 2^23).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lmhtc.semantics import I64


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
