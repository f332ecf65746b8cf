"""Range bounds of an integer graph: an upper bound on |value| of every edge and on every partial sum
a synaptic or T-GIM node forms (interval arithmetic on the IR, in Python integers: no wrap-around).

Invariant: one rule per integer kind (``_edge_rules``, looked up through the kind's type and bases);
a neuron kind without a rule gives its own output bound (``out_bound()``, e.g. ``qlif``), and any
other kind without one passes its input's bound through (flatten, readout). The integer ONNX emitter
chooses its exact float32 or int64 path from these bounds.

A synapse's sum bound is one function, ``synapse_sum_bounds`` (per output channel, per synaptic kind:
``_SUM_RULES``): the quantizer stores its maximum as ``acc_bound``, the integer validator
(graph_checks.check_integer_ranges) recomputes it from its own per-channel input ranges and refuses a
smaller stored value, and ``value_bounds`` applies it to a uniform input bound. All of it in Python
integers, so the three agree exactly.
"""
from __future__ import annotations

import numpy as np

from ..ir import Add, Graph
from ..type_rules import rule_for

I64 = np.int64


def _max_row_sum(a: np.ndarray) -> int:
    """max over rows (dimension 0) of Σ|a| in Python integers (no int64 wrap-around)."""
    rows = np.abs(a.astype(I64)).reshape(a.shape[0], -1).astype(object).sum(1)
    return int(max(rows, default=0))


def _shift_bound(acc: int, e: int) -> int:
    """A bound on |e(a, E)| for |a| <= acc: exact for a left shift, +1 for the rounding of a right shift."""
    return acc << e if e >= 0 else (acc >> -e) + 1


def _exact(a) -> np.ndarray:
    """``a`` as an array of Python integers (an integer-valued float array converts exactly; a fraction
    is an error: a range bound is a count of integer units)."""
    a = np.asarray(a)
    if a.dtype == object:
        return a
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.floor(a)):
            raise ValueError("a range bound must be integer-valued")
        return np.array([int(v) for v in a.reshape(-1)], dtype=object).reshape(a.shape)
    return a.astype(I64).astype(object)


def _conv_sums(w: np.ndarray, m, node) -> np.ndarray:
    """Σ over each output channel's input channels (of its group) and taps of |w|·max|x| (a conv1d's or
    conv2d's weight [Cout, Cin/groups, *kernel]; ``m`` per input channel, or one bound for all)."""
    cout, cin_g = w.shape[:2]
    per_in = _tap_sums(w.reshape(cout, cin_g, -1), object if w.dtype == object else I64)
    if np.ndim(m) == 0:
        return per_in.sum(axis=1) * m
    group = np.arange(cout) // (cout // node.groups)
    idx = group[:, None] * cin_g + np.arange(cin_g)[None, :]
    return (per_in * m[idx]).sum(axis=1)


def _tap_sums(w: np.ndarray, dtype) -> np.ndarray:
    """Σ over the last axis (a kernel's taps) of ``w`` [Cout, Cin, taps] in ``dtype``, one tap at a time (the
    same sums as ``w.sum(axis=2, dtype=dtype)``, which numpy computes slowly over a short inner axis)."""
    acc = np.zeros(w.shape[:2], dtype)
    for k in range(w.shape[2]):
        acc += w[..., k]
    return acc


def _sum_rules() -> dict:
    """synaptic kind type → (its |weights| as Python ints, node, input bound) → per-output-channel sum bound."""
    from ..intir import QConv2d, QGain, QLinear
    from ..intir_conv1d import QConv1d

    return {
        QConv2d: (lambda node: node.weight, _conv_sums),
        QConv1d: (lambda node: node.weight, _conv_sums),
        QLinear: (lambda node: node.weight, lambda w, m, node: (w * (m[None, :] if np.ndim(m) else m)).sum(axis=1)),
        QGain: (lambda node: node.gain, lambda w, m, node: w * m),
    }


def _sum_rule(node):
    """The (weights, per-channel sum) rule of ``node``'s synaptic kind, looked up through its type and bases."""
    rules = _sum_rules()
    return rule_for(rules, node)


def synapse_sum_bounds(node, m_in) -> np.ndarray:
    """Per-output-channel max |Σ w·x| of the integer synapse ``node`` (qconv2d, qconv1d, qlinear, qgain)
    for inputs with |x| <= ``m_in``: per input channel (a conv's or gain's), per input feature (a
    linear's), or one bound for every input. Python integers (an object array); ``.max()`` of it is the
    ``acc_bound`` the quantizer stores and the validator requires.

    Computed in int64 when a Python-integer bound proves no partial sum can wrap (max |w| · max |x| ·
    terms per output < 2^63, every one of them a non-negative addend, so each partial sum is below the
    total), else term by term in Python integers: the same values either way."""
    weights, rule = _sum_rule(node)
    w, m = _abs_int(weights(node)), _as_int64(m_in)
    if w is not None and m is not None:
        terms = int(np.prod(w.shape[1:], dtype=object)) if w.ndim > 1 else 1
        if int(w.max(initial=0)) * int(m.max(initial=0)) * max(terms, 1) < 2 ** 63:
            out = rule(w, m if m.ndim else m.item(), node)
            return np.asarray(out, dtype=I64).astype(object)
    return python_int_sum_bounds(node, m_in)


def python_int_sum_bounds(node, m_in) -> np.ndarray:
    """``synapse_sum_bounds`` term by term in Python integers (no width limit): its definition, and the
    path it takes where int64 could wrap."""
    weights, rule = _sum_rule(node)
    m = _exact(m_in)
    return rule(np.abs(_exact(weights(node))), m if m.ndim else m.item(), node)


def _as_int64(a) -> np.ndarray | None:
    """``a`` as an int64 array when every value is an integer of magnitude below
    2^62 (exactly representable, |·| cannot wrap); None otherwise (the Python-integer path decides)."""
    a = np.asarray(a)
    if a.dtype == object:    # Python integers (the validator's per-channel ranges): small arrays
        flat = a.reshape(-1).tolist()
        if not all(isinstance(v, (int, np.integer)) and -2 ** 62 < v < 2 ** 62 for v in flat):
            return None
        return np.array(flat, dtype=I64).reshape(a.shape)
    if a.dtype.kind not in "iuf":
        return None
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.abs(a).max(initial=0) >= 2 ** 53 or not np.all(a == np.floor(a)):
            return None
        return a.astype(I64)
    if a.dtype == np.uint64 and a.max(initial=0) >= 2 ** 62:
        return None
    a = a.astype(I64)
    return a if a.size == 0 or (int(a.max()) < 2 ** 62 and int(a.min()) > -2 ** 62) else None


def _abs_int(a) -> np.ndarray | None:
    """|a| of integer weights: in their own width when it cannot overflow (int8-int32 without its most
    negative value: the sums widen to int64 in numpy), else ``abs(_as_int64(a))``; None as ``_as_int64``."""
    a = np.asarray(a)
    if a.dtype.kind == "i" and a.dtype.itemsize <= 4 and (a.size == 0 or a.min() > np.iinfo(a.dtype).min):
        return np.abs(a)
    a = _as_int64(a)
    return None if a is None else np.abs(a)


def _max(a: np.ndarray) -> int:
    return int(max(a.reshape(-1), default=0))


def _synapse(node, graph, src, edge):
    acc = _max(synapse_sum_bounds(node, src))
    bias = 0 if node.bias is None else int(np.abs(node.bias.astype(I64)).max(initial=0))
    return _shift_bound(acc, node.shift) + bias, max(acc, src)


def _gain(node, graph, src, edge):
    acc = _max(synapse_sum_bounds(node, src))
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
        rule = rule_for(rules, node)
        if rule is None:
            bound, acc = (node.out_bound() if hasattr(node, "out_bound") else src), None
        else:
            bound, acc = rule(node, graph, src, edge)
        edge[node.name] = bound
        if acc is not None:
            sums[node.name] = acc
    return edge, sums
