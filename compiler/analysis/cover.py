"""Convolution cover: how many output windows of a convolution or pool cover each input position.

Invariant: one computation of the cover map (``conv_cover``) and of its fold through a pool
(``fold_through_pool``), exact integers (float64 sums of ones, rounded); the cost passes' fan-out
maps and the runtime's event kernel read the same map, so SOPs counted and SOPs run agree.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def conv_cover(out_hw, in_hw, kernel, stride, padding, dilation=(1, 1)) -> np.ndarray:
    """[H, W] int64: how many output positions' windows cover each input position (zero padding excluded)."""
    ones = torch.ones(1, 1, *out_hw, dtype=torch.float64)
    kern = torch.ones(1, 1, *kernel, dtype=torch.float64)
    full = F.conv_transpose2d(ones, kern, stride=stride, dilation=dilation)[0, 0].numpy()
    # full[i] counts the windows covering padded-input index i, i.e. input index i − padding
    out = np.zeros(in_hw, dtype=np.float64)
    ph, pw = padding
    crop = full[ph:ph + in_hw[0], pw:pw + in_hw[1]]
    out[:crop.shape[0], :crop.shape[1]] = crop
    return np.rint(out).astype(np.int64)


def fold_through_pool(fmap: np.ndarray, in_shape, kernel, stride, padding) -> np.ndarray:
    """Fold a fan-out map over a pool's output back to its input: Σ over the windows covering each position."""
    c, ho, wo = fmap.shape
    t = torch.as_tensor(fmap, dtype=torch.float64).reshape(1, c, ho, wo)
    kern = torch.ones(c, 1, *kernel, dtype=torch.float64)
    full = F.conv_transpose2d(t, kern, stride=stride, groups=c)[0].numpy()
    out = np.zeros(in_shape, dtype=np.float64)
    ph, pw = padding
    crop = full[:, ph:ph + in_shape[1], pw:pw + in_shape[2]]
    out[:, :crop.shape[1], :crop.shape[2]] = crop
    return np.rint(out).astype(np.int64)
