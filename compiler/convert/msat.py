"""Float dynamics of the MSAT neuron (``lmhtc.compiler.convert.msat_node``), run by ``lmhtc.compiler.executor``.

``msat_dynamics`` follows the node's docstring exactly (the equations are written
once there and in docs/conversion.md); ``run_msat_neuron`` is the executor's entry
point. Spike-confidence draws come from a numpy generator per (seed, node name,
sample index), so they do not depend on the batch size or on the other layers.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F

from .msat_node import MSATNeuron

_SEEN = "msat: samples seen"     # per-run counter kept in the executor's parameter cache


def _layer_mean(u: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over a layer's neurons (every dimension but the batch), broadcastable to ``u``."""
    return u.mean(dim=tuple(range(1, u.dim())), keepdim=True) if u.dim() > 1 else u


def msat_dynamics(current: torch.Tensor, node: MSATNeuron,
                  keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run MSAT neurons on input ``current`` [steps, B, ...]; returns (spikes s ∈ {0,1}, thresholds θ), both
    [steps, B, ...]. ``keep`` [k, B, ...] (k ≤ steps) multiplies the spikes of the first k steps (spike confidence).
    """
    theta_max = float(node.theta_max)
    theta = torch.full_like(current[0], node.initial_fraction() * theta_max)
    v = node.v_init * theta
    spikes = torch.empty_like(current)
    thetas = torch.empty_like(current)
    u_prev = m_prev = None
    for t in range(current.shape[0]):
        v = v + current[t]                          # membrane before spiking, V(t)
        u = v / theta_max
        m = _layer_mean(u)
        if t > 0:
            x = u_prev - m_prev
            dtt = node.alpha * x + node.v_t + node.k_a * F.softplus(x / node.k_i)
            det = node.tau_rd * torch.exp(-(u - u_prev) / node.c)
            theta = torch.sigmoid(node.tau_mp * dtt + det) * theta_max
        s = (v >= theta).to(current.dtype)
        if keep is not None and t < keep.shape[0]:
            s = s * keep[t]
        spikes[t] = s
        thetas[t] = theta
        v = v - theta * s                           # soft reset
        u_prev, m_prev = u, m
    return spikes, thetas


def confidence_masks(node: MSATNeuron, shape: tuple[int, ...], first_sample: int,
                     dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.Tensor:
    """Bernoulli(p) keep-masks [confidence_steps, B, ...] for samples first_sample … first_sample+B−1.

    ``shape`` is (B, ...) — one step's tensor. Sample i's draws come from
    ``numpy.random.Generator(PCG64(SeedSequence([seed, crc32(name), i])))``.
    """
    batch, per_sample = shape[0], tuple(shape[1:])
    name_key = zlib.crc32(node.name.encode())
    draws = [np.random.default_rng([int(node.seed), name_key, first_sample + i])
             .random((node.confidence_steps, *per_sample)) < node.confidence for i in range(batch)]
    masks = np.stack(draws, axis=1) if draws else np.zeros((node.confidence_steps, 0, *per_sample), bool)
    return torch.as_tensor(masks, dtype=dtype, device=device)


def run_msat_neuron(node: MSATNeuron, v: torch.Tensor, steps: int, params) -> tuple[torch.Tensor, torch.Tensor]:
    """Executor entry point: input sequence ``v`` [S, B, ...] (S = 1 or steps) → (spikes, output θ·s).

    ``params`` is the executor's per-run parameter cache; it also counts the samples
    this node has seen, which indexes the spike-confidence draws.
    """
    node.check()                     # an artifact's parameters are checked before they are used
    cur = v.expand(steps, *v.shape[1:]) if v.shape[0] == 1 else v
    keep = None
    if node.confidence < 1.0 and node.confidence_steps > 0:
        key = (node.name, _SEEN)
        first = params.cache.get(key, 0)
        params.cache[key] = first + cur.shape[1]
        keep = confidence_masks(node, tuple(cur.shape[1:]), first, cur.dtype, cur.device)
    spikes, thetas = msat_dynamics(cur, node, keep)
    return spikes, spikes * thetas
