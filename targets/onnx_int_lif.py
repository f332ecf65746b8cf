"""Integer ONNX emission of the ``qlif`` kind and of per-step input sequences (used by ``onnx_int``'s table).

Invariant: every op is an exact int64 ONNX op implementing ``lmhtc.semantics.lif_step``: the rounding
shift is ``onnx_int``'s ``rs``, saturation its ``clamp`` (comparisons and ``Where`` on int64: onnxruntime's
int64 ``Clip``/``Max`` are wrong for |x| in [2^31, 2^32)), comparisons ``Greater``/``GreaterOrEqual`` cast to
int64, the hard reset ``Where``, and several spikes ``Div(max(u, 0), Θ)`` (integer Div truncates, which is
floor for u ≥ 0).
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

I64 = np.int64


def sequence_steps(b, encoded: str, steps: int, base: str) -> list[str]:
    """The per-step tensors of an encoded input sequence [steps, N, ...]: one Gather per step."""
    return [b.op("Gather", [encoded, b.i64(f"{base}.t", t)], base, axis=0) for t in range(steps)]


def emit_lif(b, node, currents: list[str], steps: int) -> list[str]:
    """The outputs (spike counts, or membranes for a non-spiking integrator) of ``node`` at every step."""
    n = node.name
    made: dict[str, str] = {}

    def c(key: str, value=None) -> str:
        """The constant ``key`` (a node array unless ``value`` is given), made on first use."""
        if key not in made:
            made[key] = b.i64(f"{n}.{key}", getattr(node, key) if value is None else value)
        return made[key]

    lo, hi = -(2 ** (node.membrane_bits - 1)), 2 ** (node.membrane_bits - 1) - 1
    f = node.frac_bits
    snn = node.reset_timing == "snntorch"

    def as_int(cond: str) -> str:
        return b.op("Cast", [cond], n, to=TensorProto.INT64)

    v = c("v_init")
    i = None
    cur = currents * steps if len(currents) == 1 else currents
    out = []
    for t in range(steps):
        drive = cur[t]
        if node.alpha is not None:
            acc = drive if i is None else b.op("Add", [b.rs(b.op("Mul", [c("alpha"), i], n), f, n), drive], n)
            i = drive = b.clamp(acc, c("lo", lo), c("hi", hi), n)
        r = as_int(b.op("Greater", [v, c("threshold")], n)) if snn else None
        if snn and node.reset == "zero":
            v = b.op("Mul", [b.op("Sub", [c("one", 1), r], n), v], n)
        raw = b.op("Add", [b.op("Add", [b.rs(b.op("Mul", [c("beta"), v], n), f, n), drive], n), c("bias")], n)
        if snn and node.reset == "subtract":
            raw = b.op("Sub", [raw, b.op("Mul", [r, c("threshold")], n)], n)
        u = b.clamp(raw, c("lo", lo), c("hi", hi), n)
        if not node.spiking:
            v = s = u
        else:
            if node.multi_spike:
                s = b.op("Div", [b.clamp(u, c("zero", 0), None, n), c("threshold")], n)
            else:
                s = as_int(b.op("Greater" if node.compare == ">" else "GreaterOrEqual", [u, c("threshold")], n))
            if snn:
                v = b.op("Sub", [u, b.op("Mul", [b.op("Sub", [s, r], n),
                                                 c("threshold") if node.reset == "subtract" else u], n)], n)
            elif node.reset == "subtract":
                v = b.op("Sub", [u, b.op("Mul", [s, c("threshold")], n)], n)
            elif node.reset == "zero":
                v = b.op("Where", [b.op("Greater", [s, c("zero", 0)], n), c("v_reset"), u], n)
            else:
                v = u
        if node.v_min is not None:
            v = b.clamp(v, c("v_min"), None, n)
        out.append(s)
    return out
