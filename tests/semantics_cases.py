"""Shared per-op cases of the integer semantics (the ONNX reference evaluator's pattern).

Each op has a list of cases (inputs only); the expected outputs come from ``lmhtc.semantics``, the
executable definition. Every backend — the runtime's torch kernels, the integer ONNX emitter's op
patterns, Lava's ProcessModels, a future GPU or chip backend — is tested on the same cases.
"""
from __future__ import annotations

import numpy as np

I64 = np.int64
_rng = np.random.default_rng(20261202)


def _halves(f: int) -> np.ndarray:
    """Values at and around the rounding ties of rs(·, f), both signs."""
    h = 1 << max(f - 1, 0)
    base = np.array([0, 1, h - 1, h, h + 1, 3 * h, (1 << f) - 1, 1 << f, (1 << f) + h], I64)
    return np.concatenate([base, -base])


def _band() -> np.ndarray:
    """Magnitudes in [2^31, 2^32) and at its edges, both signs: where onnxruntime 1.23's int64 Sign, Clip, Min
    and Max go wrong (the integer ONNX emitter must not rely on them there)."""
    edges = np.array([2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1, 2**32], I64)
    inside = _rng.integers(2**31, 2**32, 32, dtype=I64)
    return np.concatenate([edges, -edges, inside, -inside])


RS = [(np.concatenate([_halves(f), _band(), _rng.integers(-2**40, 2**40, 64)]), f) for f in (0, 1, 2, 5, 12, 20, 30)]
EXP_SHIFT = [(_rng.integers(-2**30, 2**30, 64, dtype=I64), e) for e in (-14, -3, -1, 0, 1, 7)]
SATURATE = [(np.concatenate([_rng.integers(-2**26, 2**26, 64), np.array([2**23 - 1, 2**23, -2**23, -2**23 - 1])]),
             bits) for bits in (8, 16, 24)]
ENCODE = [(np.concatenate([_rng.normal(0, 3, 64), np.array([0.5, -0.5, 1.5, -1.5, 2.5, 1e6, -1e6, 0.0])])
           .astype(np.float32), scale, bits) for scale, bits in ((0.25, 8), (0.0123, 8), (1.0, 4), (0.5, 16))]
MIX = [(_rng.integers(-5000, 5000, (steps, 6), dtype=I64), _rng.integers(-4096, 8192, (steps, steps), dtype=I64), f)
       for steps, f in ((2, 12), (4, 12), (4, 0), (8, 7))]


def _neuron_case(steps, channels, levels, leak_frac_bits, membrane_bits, leak_kind, seed):
    rng = np.random.default_rng(seed)
    one = 1 << leak_frac_bits
    leak = {"none": np.full(steps, one), "const": np.full(steps, (one * 7) // 8),
            "varying": rng.integers(one // 2, one + 1, steps)}[leak_kind].astype(I64)
    theta = rng.integers(1, 400, channels).astype(I64)
    v_init = rng.integers(0, 200, channels).astype(I64)
    hi = 1 << (membrane_bits - 1)
    current = rng.integers(-hi // 2, hi // 2, (steps, 3, channels)).astype(I64) if membrane_bits <= 12 else \
        rng.integers(-600, 1400, (steps, 3, channels)).astype(I64)
    return dict(current=current, leak=leak, leak_frac_bits=leak_frac_bits, theta=theta, v_init=v_init,
                levels=levels, membrane_bits=membrane_bits)


def _wide_neuron_case() -> dict:
    """A 33-bit membrane fed currents of magnitude in [2^31, 2^32) (``_band``): membranes, their saturation and
    V div Θ (Θ = 1 among the thresholds) all pass through that band; it saturates."""
    rng = np.random.default_rng(6)
    current = rng.choice(_band(), size=(4, 3, 5)).astype(I64)
    return dict(current=current, leak=np.array([4096, 3584, 4096, 4500], I64), leak_frac_bits=12,
                theta=np.array([1, 2, 3, 1000, 2**20], I64), v_init=np.array([0, 1, 5, 100, 7], I64), levels=2,
                membrane_bits=33)


NEURON = [_neuron_case(4, 5, 1, 12, 24, "none", 1), _neuron_case(4, 5, 2, 12, 24, "const", 2),
          _neuron_case(8, 3, 4, 12, 24, "varying", 3), _neuron_case(6, 4, 2, 8, 10, "const", 4),   # saturates
          _neuron_case(3, 2, 3, 4, 24, "varying", 5), _wide_neuron_case()]


def neuron_reference(case: dict) -> tuple[np.ndarray, np.ndarray]:
    """Spike counts [steps, N, C] and saturation events per sample [N]: ``semantics.neuron_step`` iterated."""
    from lmhtc import semantics

    current = case["current"]
    v = np.broadcast_to(case["v_init"], current.shape[1:]).astype(I64)
    ks, sat = [], np.zeros(current.shape[1], I64)
    for t in range(current.shape[0]):
        v, k, clipped = semantics.neuron_step(v, current[t], int(case["leak"][t]), case["leak_frac_bits"],
                                              case["theta"], case["levels"], case["membrane_bits"])
        ks.append(k)
        sat += clipped.reshape(len(sat), -1).sum(1)
    return np.stack(ks), sat


def _lif_case(seed, shape, f, bits, reset, compare, timing, alpha=False, multi=False, v_min=False, spiking=True,
              wide=False):
    """A ``qlif`` case: random int64 parameters (per neuron) and currents [steps, N, *shape]."""
    rng = np.random.default_rng(seed)
    one = 1 << f
    theta = rng.integers(1, 300, shape).astype(I64) if spiking else np.ones(shape, I64)
    hi = 1 << (bits - 1)
    params = dict(beta=rng.integers(0, one + 1, shape).astype(I64),
                  alpha=rng.integers(0, one, shape).astype(I64) if alpha else None,
                  bias=rng.integers(-20, 20, shape).astype(I64), threshold=theta,
                  v_reset=rng.integers(-50, 50, shape).astype(I64),
                  v_min=-theta if v_min else None, frac_bits=f, membrane_bits=bits, reset=reset,
                  compare=compare, timing=timing, multi_spike=multi, spiking=spiking)
    current = rng.integers(-hi, hi, (8, 3, *shape)).astype(I64) if bits <= 12 else \
        rng.integers(-200, 700, (8, 3, *shape)).astype(I64)
    if wide:      # drives of magnitude in [2^31, 2^32): saturation and max(u, 0) pass through that band
        current = rng.choice(_band(), size=(8, 3, *shape)).astype(I64)
    v_init = rng.integers(-100, 100, shape).astype(I64)
    return dict(current=current, v_init=v_init, params=params)


LIF = [_lif_case(1, (5,), 12, 24, "subtract", ">", "snntorch"), _lif_case(2, (5,), 12, 24, "zero", ">", "snntorch"),
       _lif_case(3, (2, 3, 3), 8, 24, "zero", ">=", "same-step"),
       _lif_case(4, (4,), 12, 24, "subtract", ">", "same-step", alpha=True),
       _lif_case(5, (4,), 6, 10, "subtract", ">=", "same-step", multi=True, v_min=True),   # saturates
       _lif_case(6, (6,), 12, 24, "none", ">", "same-step", spiking=False, v_min=True),
       _lif_case(7, (6,), 12, 11, "zero", ">", "snntorch", alpha=True),                      # saturates
       _lif_case(8, (5,), 12, 34, "subtract", ">=", "same-step", alpha=True, multi=True, v_min=True, wide=True)]


def lif_reference(case: dict) -> tuple[np.ndarray, np.ndarray]:
    """Outputs [steps, N, ...] and saturation events per sample [N]: ``semantics.lif_step`` iterated."""
    from lmhtc import semantics

    current = case["current"]
    v = np.broadcast_to(case["v_init"], current.shape[1:]).astype(I64)
    i = np.zeros_like(v)
    outs, sat = [], np.zeros(current.shape[1], I64)
    for t in range(current.shape[0]):
        v, i, s, clipped = semantics.lif_step(v, i, current[t], **case["params"])
        outs.append(s)
        sat += clipped.reshape(len(sat), -1).sum(1)
    return np.stack(outs), sat
