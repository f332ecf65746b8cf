"""Range bounds of an integer graph: an upper bound on |value| of every edge and on every partial sum
a synaptic or T-GIM node forms (interval arithmetic on the IR, in Python integers: no wrap-around).

Invariant: one rule per integer kind (``_edge_rules``, looked up through the kind's type and bases);
a neuron kind without a rule gives its own output bound (``out_bound()``, e.g. ``qlif``), and any
other kind without one passes its input's bound through (flatten, readout). The integer ONNX emitter
chooses its exact float32 or int64 path from these bounds.
"""
from __future__ import annotations

import numpy as np

from ..ir import Add, Graph

I64 = np.int64


def _max_row_sum(a: np.ndarray) -> int:
    """max over rows (dimension 0) of Σ|a| in Python integers (no int64 wrap-around)."""
    rows = np.abs(a.astype(I64)).reshape(a.shape[0], -1).astype(object).sum(1)
    return int(max(rows, default=0))


def _shift_bound(acc: int, e: int) -> int:
    """A bound on |e(a, E)| for |a| <= acc: exact for a left shift, +1 for the rounding of a right shift."""
    return acc << e if e >= 0 else (acc >> -e) + 1


def _synapse(node, graph, src, edge):
    acc = _max_row_sum(node.weight) * src
    bias = 0 if node.bias is None else int(np.abs(node.bias.astype(I64)).max(initial=0))
    return _shift_bound(acc, node.shift) + bias, max(acc, src)


def _gain(node, graph, src, edge):
    acc = int(np.abs(node.gain.astype(I64)).max(initial=0)) * src
    return _shift_bound(acc, node.shift), max(acc, src)


def _sum_pool(node, graph, src, edge):
    acc = int(np.prod(node.kernel)) * src
    return acc, acc


def _mix(node, graph, src, edge):
    acc = _max_row_sum(node.omega) * src
    return _shift_bound(acc, -node.frac_bits), acc


def _edge_rules() -> dict:
    """kind type → (node, graph, input bound, edge bounds so far) → (edge bound, partial-sum bound or None)."""
    from ..intir import GlobalSumPool, QConv2d, QGain, QInput, QLinear, QNeuron, QTemporalMix, SumPool2d
    from ..intir_conv1d import QConv1d

    return {
        QInput: lambda node, graph, src, edge: (2 ** (node.bits - 1) - 1, None),
        QConv2d: _synapse, QConv1d: _synapse, QLinear: _synapse,
        QGain: _gain,
        SumPool2d: _sum_pool,
        GlobalSumPool: lambda node, graph, src, edge: (int(np.prod(graph.node(node.inputs[0]).shape[1:])) * src, None),
        Add: lambda node, graph, src, edge: (edge[node.inputs[0]] + edge[node.inputs[1]], None),
        QTemporalMix: _mix,
        QNeuron: lambda node, graph, src, edge: (node.levels, None),
    }


def value_bounds(graph: Graph) -> tuple[dict[str, int], dict[str, int]]:
    """Upper bounds on |value| of every edge and on every synaptic sum |Σ w·x| (interval arithmetic on the IR).

    Returns ``(edge_bound, sum_bound)``: ``edge_bound[node]`` bounds the node's output at every step,
    ``sum_bound[node]`` the largest partial sum a synaptic/T-GIM node forms (any order of summation).
    """
    rules = _edge_rules()
    edge: dict[str, int] = {}
    sums: dict[str, int] = {}
    for node in graph.topo():
        src = edge[node.inputs[0]] if node.inputs else 0
        rule = next((rules[t] for t in type(node).__mro__ if t in rules), None)
        if rule is None:
            bound, acc = (node.out_bound() if hasattr(node, "out_bound") else src), None
        else:
            bound, acc = rule(node, graph, src, edge)
        edge[node.name] = bound
        if acc is not None:
            sums[node.name] = acc
    return edge, sums
