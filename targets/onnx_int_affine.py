"""Integer ONNX: T-GIM on synaptic values kept in their affine form ``y = 2^e·P + c`` (used by ``onnx_int``).

A synapse with exponent e ≥ 1 computes ``y = 2^e·P + c`` with P its integer sum (``Σ w·x``, or gain·x for
``qgain``) and c its per-channel bias term (lw·bias, or none); an ``add`` of two such values is one again
(e = the smaller exponent). When such values reach only T-GIM mixes, the emitter keeps P and c apart and
the mix computes the contract's ``rs(Σ_m ω_m·y_m, F)`` from them in int32, although Σ ω·y needs more bits:

with A = Σ_m ω_m·P_m (a tensor) and C = Σ_m ω_m·c_m (a per-channel constant, exact at export),
Σ ω·y = 2^e·A + C. Write C = 2^e·C1 + C0 with 0 ≤ C0 < 2^e, K = 2^(F−1−e), M = 2^(F−e) (1 ≤ e ≤ F−1).
Then rs(2^e·A + C, F) = ⌊(n − [C0 = 0]·[A + C1 < 0]) / M⌋ with n = A + C1 + K, because
⌊(2^e·A' + u) / 2^F⌋ = ⌊(A' + ⌊u / 2^e⌋) / M⌋ for A' = A + C1, u = C0 − [a < 0] + 2^(F−1), and a < 0 ⟺ A' < 0.
With z = [C0 = 0]: [A' < 0] = [n < K], the floor is a truncating Div after subtracting M − 1 where the
numerator is negative, which is where n < z; so the current is ``Div(n − off, M)`` with
off = z + M − 1 where n < z, z where z ≤ n < K, else 0.

Invariant: the currents are ``semantics.temporal_mix``'s, bit for bit; ``affine_nodes`` admits a value
only when every bound (|P|, |n| + M) fits int32 and every consumer of it is an admitted add or a mix.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .onnx_int_tgim import mix_columns, per_row

INT32_MAX = 2 ** 31 - 1
SYNAPSES = ("qconv2d", "qlinear", "qconv1d", "qgain")


def _bias_bound(node, lw: int) -> int:
    bias = getattr(node, "bias", None)
    return 0 if bias is None or not np.size(bias) else int(np.abs(np.asarray(bias, np.int64)).max()) * lw


def affine_nodes(graph, sums: dict, plan: dict) -> dict[str, tuple[int, int, int]]:
    """name → (e, bound on |P|, bound on |c|) for the synapses and adds whose values go only to T-GIM mixes
    that can take the affine form (see the module doc); every other node is emitted as before."""
    cand: dict[str, tuple[int, int, int]] = {}
    for node in graph.topo():
        lw = max(int(plan.get(node.name, 1)), 1)
        if node.kind in SYNAPSES and int(node.shift) >= 1 and node.name in sums:
            cand[node.name] = (int(node.shift), int(sums[node.name]) * lw, _bias_bound(node, lw))
        elif node.kind == "add" and all(i in cand for i in node.inputs):
            (e1, p1, c1), (e2, p2, c2) = (cand[i] for i in node.inputs)
            e = min(e1, e2)
            cand[node.name] = (e, (p1 << (e1 - e)) + (p2 << (e2 - e)), c1 + c2)
        else:
            continue
        if cand[node.name][1] > INT32_MAX:
            del cand[node.name]
    mixes = {}
    for node in graph.topo():
        if node.kind == "qtemporal_mix" and node.inputs[0] in cand:
            e, p, c = cand[node.inputs[0]]
            f = int(node.frac_bits)
            w = int(np.abs(np.asarray(node.omega, np.int64)).sum(1).max(initial=0))
            m = 1 << max(f - e, 0)
            if 1 <= e <= f - 1 and w * p + ((w * c) >> e) + 2 + (1 << (f - 1 - e)) + 2 * m <= INT32_MAX:
                mixes[node.name] = node.inputs[0]
    keep = set(cand)
    while True:       # a value stays while every consumer is a kept add or a mix that takes it (an add: and
        #               both its inputs stay)
        drop = {n for n in keep if any(not ((c.kind == "add" and c.name in keep) or mixes.get(c.name) == n)
                                       for c in graph.consumers(n)) or not graph.consumers(n)
                or (graph.node(n).kind == "add" and not all(i in keep for i in graph.node(n).inputs))}
        if not drop:
            break
        keep -= drop
        mixes = {k: v for k, v in mixes.items() if v in keep}
    return {n: cand[n] for n in keep}


def _round(b, n: str, acc: str, c1: np.ndarray, z: np.ndarray, k: int, m: int, n_bound: int) -> str:
    """⌊(A + C1 + K − z·[A + C1 < 0]) / M⌋ (the module doc's current) in int32 without ``Where`` (onnxruntime's
    is ~3× an ``Add``): z everywhere 1 is rs(A + C1, F − e) (the value is 2^e·(A + C1) exactly); otherwise the
    floor is a truncating Div after an offset B·M > |numerator| where that fits int32, else the truncating Div
    minus (M − 1) where the numerator is negative; the indicators are casts of comparisons."""
    const = lambda key, v: b.const(f"{n}.{key}", v, np.int32)       # noqa: E731
    as_int = lambda cond: b.op("Cast", [cond], n, to=TensorProto.INT32)   # noqa: E731
    if z.all():
        a = b.op("Add", [acc, const("c1", c1)], n) if c1.any() else acc
        return b.rs(a, (m.bit_length() - 1), n)
    off = -(-(n_bound + 1) // m)           # B with B·M > |A + C1 + K|: every numerator below is ≥ 0
    if n_bound + 1 + off * m <= INT32_MAX:
        t = b.op("Add", [acc, const("c1k_off", c1 + k + off * m)], n)
        if z.any():                         # − z·[A + C1 < 0]
            neg = as_int(b.op("Less", [t, const("k_off", k + off * m)], n))
            t = b.op("Sub", [t, b.op("Mul", [neg, const("z", z.astype(np.int64))], n)], n)
        return b.op("Sub", [b.op("Div", [t, const("m", m)], n), const("off", off)], n)
    t = b.op("Add", [acc, const("c1k", c1 + k)], n)
    zc = const("z", z.astype(np.int64))
    below = b.op("Mul", [as_int(b.op("Less", [t, zc], n)), const("m1", m - 1)], n)   # numerator < 0
    if z.any():
        below = b.op("Add", [below, b.op("Mul", [as_int(b.op("Less", [t, const("k", k)], n)), zc], n)], n)
    return b.op("Div", [b.op("Sub", [t, below], n), const("m", m)], n)


def affine_mix(b, node, ps: list[str], e: int, c: np.ndarray | None, steps: int, w_in: int, out_type: int,
               p_bound: int, zero_rows: bool = True) -> list[str | None]:
    """The currents ``rs(Σ_m ω[t, m]·(2^e·P_m + c), F)`` per step of a T-GIM node on P tensors ``ps`` (per
    window when ``w_in`` > 1, or one static tensor) and the per-channel constant ``c`` (None: 0), in int32;
    equal rows are computed once, a zero row after the first step gives None (a zero current)."""
    omega = mix_columns(node, w_in, len(ps))
    f, n = int(node.frac_bits), node.name
    k, m = 1 << (f - 1 - e), 1 << (f - e)
    cvec = np.zeros(1, np.int64) if c is None else np.asarray(c, np.int64)
    const = lambda key, v: b.const(f"{n}.{key}", v, np.int32)       # noqa: E731

    def emit(row: tuple) -> str:
        terms = [b.op("Mul", [ps[j], const("w", w)], n) for j, w in enumerate(row) if w] or \
            [b.op("Mul", [ps[0], const("zero", 0)], n)]
        acc = terms[0]
        for term in terms[1:]:
            acc = b.op("Add", [acc, term], n)
        n_bound = sum(abs(w) for w in row) * p_bound + int(np.abs(cvec).max()) * abs(sum(row)) // (1 << e) + 1 + k
        big_c = cvec * sum(row)                 # Σ_m ω_m·c: the same c in every window
        c1 = big_c >> e                         # floor
        z = big_c - (c1 << e) == 0              # [C0 = 0] per channel
        return b.cast(_round(b, n, acc, c1, z, k, m, n_bound), out_type)

    return per_row(omega, steps, zero_rows, emit)
