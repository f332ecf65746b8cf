"""The runtime's ``qlif`` kernel: ``lmhtc.semantics.lif_step`` over a batch, vectorised in torch int64.

Invariant: the outputs and saturation events are the numpy definition's, bit for bit (tests compare them
on shared cases); every value is int64, so no bound is needed beyond the compiler's (|βV| < 2^63).
"""
from __future__ import annotations

import torch

from lmhtc.compiler.intir_lif import QLIF
from lmhtc.runtime.neuron import rs


def _t(a, device) -> torch.Tensor | None:
    return None if a is None else torch.as_tensor(a, dtype=torch.int64, device=device)


def run_lif(cur: torch.Tensor, node: QLIF, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs [steps, B, ...] (spike counts, or membranes) and saturation events per sample [B] of ``node``
    on the currents ``cur`` ([steps, B, ...], or [1, B, ...]: the same current at every step)."""
    dev = cur.device
    beta, alpha, bias, theta = (_t(getattr(node, k), dev) for k in ("beta", "alpha", "bias", "threshold"))
    v_reset, v_min = _t(node.v_reset, dev), _t(node.v_min, dev)
    lo, hi = -(2 ** (node.membrane_bits - 1)), 2 ** (node.membrane_bits - 1) - 1
    f = node.frac_bits
    snn = node.reset_timing == "snntorch"
    v = _t(node.v_init, dev).expand(cur.shape[1:]).clone()
    i = torch.zeros_like(v)
    out = torch.empty((steps, *cur.shape[1:]), dtype=torch.int64, device=dev)
    sat = torch.zeros(cur.shape[1], dtype=torch.int64, device=dev)
    for t in range(steps):
        drive = cur[t if cur.shape[0] > 1 else 0].to(torch.int64)
        clipped = torch.zeros_like(v, dtype=torch.bool)
        if alpha is not None:
            raw_i = rs(alpha * i, f) + drive
            i = raw_i.clamp(lo, hi)
            clipped |= i != raw_i
            drive = i
        r = (v > theta).to(torch.int64) if snn else None
        if snn and node.reset == "zero":
            v = (1 - r) * v
        raw = rs(beta * v, f) + drive + bias
        if snn and node.reset == "subtract":
            raw = raw - r * theta
        u = raw.clamp(lo, hi)
        clipped |= u != raw
        if not node.spiking:
            v = s = u
        else:
            if node.multi_spike:
                s = torch.div(u.clamp(min=0), theta, rounding_mode="floor")
            else:
                s = ((u > theta) if node.compare == ">" else (u >= theta)).to(torch.int64)
            if snn:
                v = u - (s - r) * (theta if node.reset == "subtract" else u)
            elif node.reset == "subtract":
                v = u - s * theta
            elif node.reset == "zero":
                v = torch.where(s > 0, v_reset.expand_as(u), u)
            else:
                v = u
        if v_min is not None:
            v = torch.maximum(v, v_min)
        out[t] = s
        sat += clipped.reshape(clipped.shape[0], -1).sum(1)
    return out, sat
