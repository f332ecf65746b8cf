"""The ``qneuron`` step loop (docs/integer-semantics.md) with int32 membranes where that is proven exact.

Invariant: the result (spike counts and saturation events) is the int64
definition's, bit for bit. Before a layer runs, a bound on |V| over all steps
is computed from |v_init|, max |I| (one reduction over the layer's currents,
not one per step) and the leak factors: |rs(leak·V, D)| ≤ (leak·|V| + 2^(D−1)) >> D,
adding I adds at most max |I|, and the soft reset never increases |V|. When that
bound is within the B-bit range no clip can happen (0 saturation events, no
clamp needed), and when it also keeps every intermediate below 2^31 the loop
runs in int32. Otherwise it runs today's int64 loop with the clip.
"""
from __future__ import annotations

import torch

from lmhtc.compiler.intir import QNeuron

INT32_MAX = 2 ** 31 - 1


def rs(a: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """Rounding right shift, half away from zero, for any signed torch integer dtype (a new tensor).

    ``(a + 2^(F−1) − [a < 0]) >> F`` with an arithmetic shift, as ``lmhtc.compiler.intir.rs`` for int64;
    the caller guarantees |a| + 2^(F−1) fits the dtype.
    """
    if frac_bits == 0:
        return a
    r = a >> (8 * a.element_size() - 1)      # −1 for negative values, 0 otherwise
    r += a
    r += 1 << (frac_bits - 1)
    r >>= frac_bits
    return r


def empty_steps(steps: int, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised [steps, *like.shape] tensor whose per-step slices have ``like``'s memory layout."""
    per = torch.empty_like(like, dtype=dtype)
    return torch.empty_strided((steps, *like.shape), (per.numel(), *per.stride()), dtype=dtype, device=like.device)


def membrane_bound(node: QNeuron, steps: int, rows: int, front: bool, cur_max: int, v0_max: int) -> tuple[int, bool]:
    """(max over steps of a bound on |V|, whether every int32 intermediate of the loop fits)."""
    d = node.leak_frac_bits
    one, half = 1 << d, (1 << d) >> 1
    bound, fits = v0_max, True
    peak = bound
    for t in range(steps):
        leak = int(node.leak[t])
        if leak != one:
            q, r = divmod(leak, one) if leak > one else (0, leak)
            fits &= q * bound <= INT32_MAX and abs(r) * bound + half <= INT32_MAX
            bound = (abs(leak) * bound + half) >> d
        if not front or t % rows == 0:
            bound += cur_max
        fits &= bound <= INT32_MAX
        peak = max(peak, bound)
    return peak, fits


def _leak32(v: torch.Tensor, leak: int, d: int) -> torch.Tensor:
    """rs(leak·v, D) in int32: for leak = q·2^D + r (q ≥ 1, 0 ≤ r < 2^D) it equals q·v + rs(r·v, D)."""
    one = 1 << d
    if leak > one:
        q, r = divmod(leak, one)
        part = rs(v * r, d) if r else torch.zeros_like(v)
        return part.add_(v * q if q != 1 else v)
    return rs(v * leak, d)


def run_neuron(cur: torch.Tensor, node: QNeuron, rows: int, front: bool, theta: torch.Tensor,
               v_init: torch.Tensor, cur_bound: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike counts k [steps, B, ...] and saturation events per sample [B].

    ``cur`` holds one current per step, or (``rows`` > 1) one per window of ``rows`` steps, delivered at
    every step of the window or (``front``) at its first step only (the other steps receive 0).
    ``cur_bound`` is a proven bound on |cur| if the caller has one; max |cur| is measured when it is too loose.
    """
    steps = cur.shape[0] * rows
    hi = 2 ** (node.membrane_bits - 1) - 1
    v0_max = int(v_init.abs().max()) if v_init.numel() else 0
    peak, fits = (hi + 1, False) if cur_bound is None else membrane_bound(node, steps, rows, front, cur_bound, v0_max)
    if not (peak <= hi and fits) and cur.numel():
        lo, cmax = torch.aminmax(cur)             # one reduction (and host sync) per layer, not per step
        peak, fits = membrane_bound(node, steps, rows, front, max(-int(lo), int(cmax)), v0_max)
    if peak <= hi and fits:
        return _loop32(cur, node, rows, front, theta, v_init), torch.zeros(cur.shape[1], dtype=torch.int64,
                                                                            device=cur.device)
    return _loop64(cur, node, rows, front, theta, v_init)


def _loop32(cur, node, rows, front, theta, v_init) -> torch.Tensor:
    """The loop without clip in int32 (the caller proved |V| ≤ 2^(B−1) − 1 and every intermediate < 2^31)."""
    steps = cur.shape[0] * rows
    shape = (-1, *([1] * (cur.dim() - 3)))
    theta = theta.to(torch.int32).reshape(shape)
    d, one = node.leak_frac_bits, 1 << node.leak_frac_bits
    out = empty_steps(steps, cur[0], torch.int8 if node.levels < 128 else torch.int64)
    cur = cur.to(torch.int32)
    v0 = v_init if int(node.leak[0]) == one else rs(int(node.leak[0]) * v_init.to(torch.int64), d)
    v = cur[0] + v0.to(torch.int32).reshape(shape)     # step 0: V = rs(leak·v_init) + I(0), v_init per channel
    for t in range(steps):
        if t:
            leak = int(node.leak[t])
            if leak != one:
                v = _leak32(v, leak, d)
            if not front or t % rows == 0:
                v += cur[t // rows]
        k = out[t]
        if k.dtype == torch.int8:       # spike counts straight into the int8 output, reset by k·Θ
            torch.ge(v, theta, out=k.view(torch.bool))
            for lvl in range(2, node.levels + 1):
                k += v >= lvl * theta
        else:
            k.copy_(v >= theta)
            for lvl in range(2, node.levels + 1):
                k += v >= lvl * theta
        if t < steps - 1:
            v.addcmul_(k if k.dtype == torch.int8 else k.to(torch.int32), theta, value=-1)
    return out


def _loop64(cur, node, rows, front, theta, v_init) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition in int64 with the B-bit clip and its saturation count: the clip runs at every step,
    on every device, so no step waits for a reduction on the host."""
    steps = cur.shape[0] * rows
    shape = (-1, *([1] * (cur.dim() - 3)))
    theta = theta.reshape(shape)
    v = v_init.reshape(shape).expand(cur.shape[1:]).clone()
    lo, hi = -(2 ** (node.membrane_bits - 1)), 2 ** (node.membrane_bits - 1) - 1
    one = 1 << node.leak_frac_bits
    cur = cur.to(torch.int64)
    out = empty_steps(steps, cur[0], torch.int8 if node.levels < 128 else torch.int64)
    sat = torch.zeros(cur.shape[1], dtype=torch.int64, device=cur.device)
    for t in range(steps):
        leak = int(node.leak[t])
        if leak != one:
            v = rs(leak * v, node.leak_frac_bits)
        if not front or t % rows == 0:
            v += cur[t // rows]
        clipped = v.clamp(lo, hi)
        sat += (clipped != v).flatten(1).sum(1)
        v = clipped
        if node.levels == 1:
            fired = v >= theta
            out[t] = fired
            v -= fired * theta
        else:
            k = (v >= theta).to(torch.int64)
            for lvl in range(2, node.levels + 1):
                k += (v >= lvl * theta).to(torch.int64)
            out[t] = k
            v -= k * theta
    return out, sat
