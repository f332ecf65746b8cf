"""The executable integer semantics: the living definition of the integer network (docs/integer-semantics.md).

numpy only and scalar-clear: every function is exact on int64 and is what "bit-exact" means. The Lava
ProcessModels call these functions directly; the runtime's vectorised torch kernels and the integer
ONNX emitter's op patterns are tested against them op by op on shared cases (tests/semantics_cases.py),
so a new backend starts from cases that already exist. ``SEMANTICS_VERSION`` is defined here only;
integer graphs, ONNX models and Lava directories carry it, and every target refuses another version.
"""
from __future__ import annotations

import numpy as np

SEMANTICS_VERSION = 1
I64 = np.int64


def rs(a, frac_bits: int):
    """Rounding right shift, half away from zero: ``sign(a)·((|a| + 2^(F−1)) >> F)``; ``rs(a, 0) = a``.

    Computed as ``(a − [a < 0] + 2^(F−1)) >> F`` with an arithmetic shift: for a < 0 that is
    ``floor((a − 2^(F−1) + 2^F − 1)/2^F) = ceil((a − 2^(F−1))/2^F)``, the same value.
    """
    if frac_bits == 0:
        return a
    a = np.asarray(a, dtype=I64)
    return (a - (a < 0) + I64(1 << (frac_bits - 1))) >> I64(frac_bits)


def exp_shift(a, e: int):
    """The synapse exponent ``e(a, E)``: ``a·2^E`` for E ≥ 0, ``rs(a, −E)`` for E < 0."""
    a = np.asarray(a, dtype=I64)
    return a << I64(e) if e >= 0 else rs(a, -e)


def saturate(a, bits: int):
    """``sat(a, B)``: clip to B-bit two's complement, [−2^(B−1), 2^(B−1) − 1]."""
    return np.clip(a, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def encode_input(x, scale: float, bits: int):
    """The analog input encoding: ``clip(sign(u)·floor(|u| + 1/2), ±(2^(bits−1) − 1))`` with u = x/scale (float64)."""
    q = 2 ** (bits - 1) - 1
    u = np.asarray(x, dtype=np.float64) / float(scale)
    return np.clip(np.sign(u) * np.floor(np.abs(u) + 0.5), -q, q).astype(I64)


def temporal_mix(y, omega, frac_bits: int):
    """T-GIM: ``I(t) = rs(Σ_m omega[t, m]·y(m), F)`` over the leading (step) axis of ``y``; omega int64."""
    return rs(np.tensordot(np.asarray(omega, dtype=I64), np.asarray(y, dtype=I64), axes=1), frac_bits)


def neuron_step(v, current, leak: int, leak_frac_bits: int, theta, levels: int, membrane_bits: int):
    """One step of the integer LIF neuron with multi-level soft reset; returns (v', k, saturated).

    ``V ← sat(rs(leak·V, F_leak) + I, B)`` (the leak multiply is skipped when leak = 2^F_leak);
    ``k = Σ_{i=1..levels} [V ≥ i·Θ]``; ``V ← V − k·Θ``. ``saturated`` marks where sat() clipped.
    """
    v = np.asarray(v, dtype=I64)
    if leak != 1 << leak_frac_bits:
        v = rs(I64(leak) * v, leak_frac_bits)
    raw = v + np.asarray(current, dtype=I64)
    v = saturate(raw, membrane_bits)
    theta = np.asarray(theta, dtype=I64)
    k = np.zeros(v.shape, I64)
    for level in range(1, levels + 1):
        k += v >= level * theta
    return v - k * theta, k, v != raw


def lif_step(v, i, current, *, beta, alpha, bias, threshold, v_reset, v_min, frac_bits: int, membrane_bits: int,
             reset: str, compare: str, timing: str, multi_spike: bool, spiking: bool = True):
    """One step of the integer ``qlif`` neuron (NIR's LIF/IF/CubaLIF/LI); returns (v', i', out, saturated).

    Every parameter is an int64 array broadcasting to the layer (``alpha``/``v_min`` may be None);
    ``beta``/``alpha`` are multipliers of 2^−F (F = ``frac_bits``); ``threshold`` ≥ 1. With B = ``membrane_bits``::

        i  ← sat(rs(alpha·i, F) + x, B); drive = i          (CubaLIF; else drive = x, i unchanged)
        r  = [v > Θ]                                        (timing "snntorch" only, else r = 0)
        v  ← (1 − r)·v                                      (snntorch, reset zero)
        u  = sat(rs(beta·v, F) + drive + bias − r·Θ·[subtract], B)
        s  = [u > Θ] | [u ≥ Θ] (compare);  multi_spike: s = max(u, 0) div Θ
        v' = u − s·Θ (subtract) | v_reset where s > 0, else u (zero) | u (none)
        snntorch: v' = u − (s − r)·Θ (subtract) | u·(1 − s + r) (zero)
        v' ← max(v', v_min)                                 (when v_min is set)

    ``out`` is s, or u for a non-spiking integrator (``spiking`` false). ``saturated`` marks where a clip of
    u (or of i) changed the value.
    """
    v = np.asarray(v, dtype=I64)
    i = np.asarray(i, dtype=I64)
    drive = np.asarray(current, dtype=I64)
    clipped = np.zeros(np.broadcast_shapes(v.shape, drive.shape), bool)
    if alpha is not None:
        raw_i = rs(np.asarray(alpha, I64) * i, frac_bits) + drive
        i = saturate(raw_i, membrane_bits)
        clipped |= i != raw_i
        drive = i
    theta = np.asarray(threshold, I64)
    snn = timing == "snntorch"
    r = (v > theta).astype(I64) if snn else np.zeros_like(v)
    if snn and reset == "zero":
        v = (1 - r) * v
    raw = rs(np.asarray(beta, I64) * v, frac_bits) + drive + np.asarray(bias, I64)
    if snn and reset == "subtract":
        raw = raw - r * theta
    u = saturate(raw, membrane_bits)
    clipped |= u != raw
    if not spiking:
        v = s = u
    else:
        if multi_spike:
            s = np.maximum(u, 0) // theta
        else:
            s = ((u > theta) if compare == ">" else (u >= theta)).astype(I64)
        if snn:
            v = u - (s - r) * (theta if reset == "subtract" else u)
        elif reset == "subtract":
            v = u - s * theta
        elif reset == "zero":
            v = np.where(s > 0, np.asarray(v_reset, I64), u)
        else:
            v = u
    if v_min is not None:
        v = np.maximum(v, np.asarray(v_min, I64))
    return v, i, s, clipped
