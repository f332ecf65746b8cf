"""Low-bit lowering methods: error-minimising scales, bias correction, threshold-aware rounding.

Each function chooses integer VALUES only; what the integers mean is docs/integer-semantics.md, so
the runtime, integer ONNX and Lava stay bit-exact whichever method chose them.

* ``search_scales`` — per output channel a clipping factor α ∈ (0, 1] of the max-abs scale that
  minimises Σ (Q(w) − w)²·E[x²] over the channel's weights (x: the weight's input, in integer units;
  E[x²] = 1 without data). α = 1 (max-abs) is always a candidate, so the error is never larger.
* ``bias_correction`` — E[W_q·x] − E[W·x] per output channel on calibration data (Nagel et al.,
  ICCV 2019), to be subtracted from the bias, so the mean pre-activation error is zero.
* ``threshold_aware`` — per channel, bias, threshold and v_init each rounded down or up, whichever
  of the eight choices keeps the most calibration membranes near a threshold on the float side of it
  (ties: round to nearest).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .calibrate import Near

ALPHAS = np.round(np.arange(0.30, 1.0001, 0.025), 4)   # clipping factors tried (1.0 = max-abs)


def quantize_mantissa(w: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    """round(w / scale) half away from zero, clipped to ±qmax; ``scale`` per row (dim 0). (float64, one
    array computed in place: the same values as ``sign(x)·floor(|x| + 0.5)`` with temporaries.)"""
    x = torch.from_numpy(np.array(w, np.float64))
    x.div_(torch.as_tensor(np.asarray(scale, np.float64)).reshape(-1, *([1] * (x.dim() - 1))))
    sign = torch.sign(x)
    return x.abs_().add_(0.5).floor_().mul_(sign).clamp_(-qmax, qmax).numpy()


def search_scales(peak: np.ndarray, paths: list[tuple[np.ndarray, np.ndarray]], qmax: int,
                  per_channel: bool = True, alphas: np.ndarray = ALPHAS) -> np.ndarray:
    """The clipping factor α per channel (one for all without ``per_channel``) minimising the weighted
    rounding error of every path into the layer at scale ``α·peak/qmax``.

    ``paths``: (effective weights [C, n], importance [C, n] or broadcastable: E[x²] of each weight's input).
    ``alphas``: candidates, shared [K] or per channel [K, C] (per channel only with ``per_channel``);
    the last shared candidate should be 1.0 (max-abs), which then wins exact ties.
    """
    cand = np.asarray(alphas, np.float64)
    cand = np.broadcast_to(cand.reshape(len(cand), -1), (len(cand), len(peak)))
    if not per_channel and not np.all(cand == cand[:, :1]):
        raise ValueError("per-channel candidates need per_channel=True")
    err = torch.zeros(len(cand), len(peak), dtype=torch.float64)
    for w, imp in paths:
        w = np.asarray(w, np.float64)
        wt = torch.as_tensor(w.reshape(len(peak), -1))
        it = torch.as_tensor(np.broadcast_to(imp, w.shape).reshape(len(peak), -1).astype(np.float64))
        for i, a in enumerate(cand):
            s = torch.as_tensor(a * peak / qmax).reshape(-1, 1)
            q = torch.clamp(torch.sign(wt) * torch.floor(wt.abs() / s + 0.5), -qmax, qmax) * s
            err[i] += ((q - wt) ** 2 * it).sum(dim=1)
    if not per_channel:
        err = err.sum(dim=1, keepdim=True).expand(-1, len(peak))
    cols = torch.arange(len(peak))
    best = err.argmin(dim=0)
    one = torch.as_tensor(np.argmax(np.isclose(cand, 1.0), axis=0))        # a max-abs candidate, if any
    has_one = torch.as_tensor(np.isclose(cand, 1.0).any(axis=0))
    keep = has_one & (err[one, cols] <= err[best, cols])                    # exact ties keep max-abs
    best = torch.where(keep, one, best).numpy()
    return cand[best, np.arange(len(peak))]


def bias_correction(kind: str, delta: np.ndarray, mean_in: np.ndarray, geometry: dict | None = None) -> np.ndarray:
    """E[Δ·x] per output channel, real units: ``delta`` = W_q − W per integer unit of the input,
    ``mean_in`` = E[x] in integer units per input element (conv: [Cin, H, W]; linear: [N];
    gain: [C, ...]). The conv expectation includes zero padding (mean of the convolved mean map)."""
    d = torch.as_tensor(np.asarray(delta, np.float64))
    m = torch.as_tensor(np.asarray(mean_in, np.float64))
    if kind == "conv":
        y = F.conv2d(m.unsqueeze(0), d, None, **geometry)
        return y.mean(dim=(0, 2, 3)).numpy()
    if kind == "linear":
        return (d @ m.reshape(-1)).numpy()
    return (d.reshape(-1) * m.reshape(m.shape[0], -1).mean(dim=1)).numpy()      # qgain


def bias_response(omega: np.ndarray | None, leak: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Membrane offset per step (no resets) of a unit bias on every step's synaptic sum, and of a unit
    v_init: ``r(t) = leak[t]·r(t−1) + Σ_m ω[t,m]`` with ``omega`` the real T-GIM matrix incl. the input
    scale (identity for the readout), and ``r_v(t) = leak[t]·r_v(t−1)``, r_v(−1) = 1."""
    om = np.eye(steps) if omega is None else np.asarray(omega, np.float64)
    lam = np.asarray(leak, np.float64)
    rb, rv = np.zeros(steps), np.zeros(steps)
    b, v = 0.0, 1.0
    for t in range(steps):
        b = lam[t] * b + om[t].sum()
        v = lam[t] * v
        rb[t], rv[t] = b, v
    return rb, rv


def threshold_aware(near: Near, theta_lsb: np.ndarray, bias_lsb: np.ndarray, vinit_lsb: np.ndarray,
                    rb: np.ndarray, rv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer (bias, Θ, v_init) per channel from their exact values in membrane units (``*_lsb``).

    A near record (channel c, step t, level k, prior spikes n, margin m = (v − kθ)/θ) keeps its side
    when ``m·θ* + δb·rb[t] + δv·rv[t] − (n + k)·δθ`` has the sign of m, with δ the rounding of each
    value (the soft resets of the n earlier spikes carry δθ too). Returns the three integer arrays and
    the number of records that keep their side per channel.
    """
    C = len(theta_lsb)
    opts = [(np.floor(x), np.ceil(x)) for x in (bias_lsb, theta_lsb, vinit_lsb)]
    nearest = [np.sign(x) * np.floor(np.abs(x) + 0.5) for x in (bias_lsb, theta_lsb, vinit_lsb)]
    c, t, k = near.channel, near.step, near.level
    prior = near.prior
    above = near.margin >= 0
    best_cost = np.full(C, np.inf)
    best = [n.copy() for n in nearest]
    kept_best = np.zeros(C)
    for ib in range(2):
        for it in range(2):
            for iv in range(2):
                b, th, vi = opts[0][ib], np.maximum(opts[1][it], 1), opts[2][iv]
                db, dth, dv = b - bias_lsb, th - theta_lsb, vi - vinit_lsb
                m = near.margin * theta_lsb[c] + db[c] * rb[t] + dv[c] * rv[t] - (prior + k) * dth[c]
                kept = np.bincount(c, weights=((m >= 0) == above).astype(np.float64), minlength=C)
                flips = np.bincount(c, minlength=C) - kept
                dist = np.abs(b - nearest[0]) + np.abs(th - nearest[1]) + np.abs(vi - nearest[2])
                cost = flips * 8 + dist
                better = cost < best_cost
                best_cost = np.where(better, cost, best_cost)
                kept_best = np.where(better, kept, kept_best)
                for j, val in enumerate((b, th, vi)):
                    best[j] = np.where(better, val, best[j])
    return best[0], best[1], best[2], kept_best
