"""The discrete-time LIF neuron (``lif``): NIR's IF, LIF, LI, Threshold and CubaLIF after discretization.

Every parameter is constant in time and given per neuron (an array that
broadcasts to the node's shape). With ``v`` the membrane left by the previous
step (``v = v_init``, 0 when unset, and ``i = 0`` before step 0) and ``x(t)`` the input, step t is::

    drive = x(t)                                   (no synapse: alpha is None)
    i     = alpha·i + w_in·x(t); drive = i         (CubaLIF's synaptic current)
    u     = beta·v + scale·drive + bias            (bias = (1 − beta)·v_leak)
    s     = [u > θ]  or  [u ≥ θ]                   (``compare``)
    v     = u − s·θ                                (reset "subtract")
    v     = v_reset where s, else u                (reset "zero": hard reset to v_reset)
    v     = u                                      (reset "none")
    v     = max(v, v_min)                          (when v_min is set)

With ``multi_spike`` (sinabs' MultiSpike) ``s = trunc(u/θ)`` for u > 0, else 0,
several spikes in one step; reset "subtract" removes ``s·θ``.

and the output is ``s`` (one spike per step at most), or ``u`` for a
non-spiking leaky integrator (``spiking`` false; NIR's LI and I).

``reset_timing = "snntorch"`` is snnTorch's ``Leaky(reset_delay=False)``
(``snntorch/_neurons/leaky.py``): with ``r = [v > θ]`` for the membrane the
previous step left, "subtract" tests ``u − r·θ`` and keeps ``v = u − s·θ``
(a membrane left above θ is not reset twice), and "zero" integrates from
``(1 − r)·v`` and keeps ``v = u·(1 − s + r)``. docs/nir.md derives both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .ir import IRError, Node, register_node_type

RESETS = ("subtract", "zero", "none")
COMPARES = (">", ">=")
TIMINGS = ("same-step", "snntorch")
PARAMS = ("beta", "scale", "bias", "threshold", "v_reset", "v_min", "alpha", "w_in", "v_init")


@register_node_type
@dataclass
class LIFNeuron(Node):
    beta: np.ndarray = None           # membrane decay per step (float64, per neuron)
    scale: np.ndarray = None          # input scale per step
    bias: np.ndarray = None           # constant drive per step, (1 − beta)·v_leak
    threshold: np.ndarray = None      # θ (spiking neurons only)
    v_reset: np.ndarray = None        # membrane after a spike with reset "zero"
    v_min: np.ndarray | None = None   # membrane floor (None: none)
    alpha: np.ndarray | None = None   # synaptic current decay (None: no synapse)
    w_in: np.ndarray | None = None    # synaptic input weight
    v_init: np.ndarray | None = None  # membrane before step 0 (None: 0)
    reset: str = "zero"
    compare: str = ">"
    reset_timing: str = "same-step"
    spiking: bool = True
    multi_spike: bool = False
    kind = "lif"
    counts_spikes = True
    elementwise = True
    linear = False

    def check(self) -> None:
        """Raise IRError naming the node when an attribute or parameter is out of range."""
        where = f"node {self.name!r} ({self.kind})"
        for key, allowed in (("reset", RESETS), ("compare", COMPARES), ("reset_timing", TIMINGS)):
            if getattr(self, key) not in allowed:
                raise IRError(f"{where}: {key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        needed = ["beta", "scale", "bias"] + (["threshold", "v_reset"] if self.spiking else [])
        if (self.alpha is None) != (self.w_in is None):
            raise IRError(f"{where}: alpha and w_in come together (the synaptic current)")
        for key in needed:
            if getattr(self, key) is None:
                raise IRError(f"{where}: parameter {key!r} is missing")
        if not self.spiking and self.reset != "none":
            raise IRError(f"{where}: a non-spiking integrator has reset 'none', got {self.reset!r}")
        if self.multi_spike and (self.reset == "none" or self.reset_timing != "same-step"):
            raise IRError(f"{where}: several spikes per step need reset subtract or zero at the same step")
        if self.reset_timing == "snntorch" and self.reset == "none":
            raise IRError(f"{where}: snnTorch's reset timing needs reset subtract or zero")
        if self.shape is not None:
            for key in PARAMS:
                arr = getattr(self, key)
                if arr is not None and np.broadcast_shapes(np.shape(arr), self.shape) != tuple(self.shape):
                    raise IRError(f"{where}: parameter {key!r} of shape {np.shape(arr)} does not fit the "
                                  f"layer shape {tuple(self.shape)}")
        if self.spiking and not np.all(np.asarray(self.threshold) > 0):
            raise IRError(f"{where}: threshold must be > 0")

    def run_float(self, v: torch.Tensor, steps: int, params) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Float executor hook: input sequence [S, B, ...] → (output [steps, B, ...], spikes or None)."""
        cur = v.expand(steps, *v.shape[1:]) if v.shape[0] == 1 else v
        s, u = lif_dynamics(cur, self, params)
        return (s, s) if self.spiking else (u, None)


def _spike(u: torch.Tensor, theta: torch.Tensor, compare: str) -> torch.Tensor:
    return ((u > theta) if compare == ">" else (u >= theta)).to(u.dtype)


def lif_dynamics(current: torch.Tensor, node: LIFNeuron, params) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``node`` on ``current`` [steps, B, ...]; returns (spikes s, integrated membranes u), both [steps, B, ...].

    ``params(node, key)`` gives a parameter as a tensor of the run's dtype (None when unset).
    """
    p = {key: params(node, key) for key in PARAMS}
    v = torch.zeros_like(current[0]) + (0 if p["v_init"] is None else p["v_init"])
    i = torch.zeros_like(current[0])
    spikes, membranes = torch.zeros_like(current), torch.empty_like(current)
    snn_torch = node.reset_timing == "snntorch"
    for t in range(current.shape[0]):
        drive = current[t]
        if p["alpha"] is not None:
            i = p["alpha"] * i + p["w_in"] * drive
            drive = i
        r = _spike(v, p["threshold"], ">") if snn_torch else None
        if snn_torch and node.reset == "zero":
            v = (1 - r) * v
        u = p["beta"] * v + p["scale"] * drive + p["bias"]
        if snn_torch and node.reset == "subtract":
            u = u - r * p["threshold"]
        membranes[t] = u
        if not node.spiking:
            v = u
        else:
            if node.multi_spike:
                s = (u > 0).to(u.dtype) * torch.div(u, p["threshold"], rounding_mode="trunc")
            else:
                s = _spike(u, p["threshold"], node.compare)
            spikes[t] = s
            if snn_torch:
                v = u - (s - r) * (p["threshold"] if node.reset == "subtract" else u)
            elif node.reset == "subtract":
                v = u - s * p["threshold"]
            elif node.reset == "zero":
                v = torch.where(s > 0, p["v_reset"].expand_as(u), u)
            else:
                v = u
        if p["v_min"] is not None:
            v = torch.maximum(v, p["v_min"].expand_as(v))
    return spikes, membranes
