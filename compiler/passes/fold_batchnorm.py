"""BatchNorm folding: ``BN(conv(x))`` → ``conv'(x)`` with scaled weights and a bias.

Invariant: every node's output sequence is unchanged up to float rounding
(``w' = w·γ/σ``, ``b' = (b − μ)·γ/σ + β`` with ``σ = sqrt(var + eps)``, computed
in float64). A BatchNorm is folded when its input is a Conv2d or Linear that
feeds nothing else; any other BatchNorm stays (the executors run it).
"""
from __future__ import annotations

import numpy as np

from ..ir import BatchNorm, Conv2d, Graph, Linear


def fold_batchnorm(graph: Graph) -> Graph:
    """A copy of ``graph`` with every foldable BatchNorm merged into its producer."""
    g = graph.copy()
    for bn in g.nodes_of(BatchNorm):
        (src,) = bn.inputs
        layer = g.node(src)
        if not isinstance(layer, (Conv2d, Linear)) or len(g.consumers(src)) != 1:
            continue
        scale = bn.weight.astype(np.float64) / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
        bias = np.zeros(layer.weight.shape[0]) if layer.bias is None else layer.bias.astype(np.float64)
        layer.weight = _scaled_rows(layer.weight, scale)
        layer.bias = ((bias - bn.running_mean) * scale + bn.bias).astype(np.float32)
        g.remove_passthrough(bn.name)
    g.meta.setdefault("passes", []).append("fold_batchnorm")
    return g


_BLOCK = 1 << 18      # weight entries per float64 product block


def _scaled_rows(w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """float32(w·scale[o]) for each output row o, the product in float64, computed block by block (the same
    values as one weight-sized float64 product cast to float32, without that array). A float32 weight of
    the pass's own copy is overwritten in place."""
    inplace = w.dtype == np.float32 and w.flags.c_contiguous and w.flags.writeable
    out = w if inplace else np.empty(w.shape, np.float32)
    src, dst = w.reshape(w.shape[0], -1), out.reshape(w.shape[0], -1)
    step = max(1, _BLOCK // max(src.shape[1], 1))
    for lo in range(0, src.shape[0], step):
        dst[lo:lo + step] = np.multiply(src[lo:lo + step], scale[lo:lo + step, None], dtype=np.float64)
    return out
