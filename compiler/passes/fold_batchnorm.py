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
        w = np.multiply(layer.weight, scale.reshape(-1, *([1] * (layer.weight.ndim - 1))), dtype=np.float64)
        layer.weight = w.astype(np.float32)
        layer.bias = ((bias - bn.running_mean) * scale + bn.bias).astype(np.float32)
        g.remove_passthrough(bn.name)
    g.meta.setdefault("passes", []).append("fold_batchnorm")
    return g
