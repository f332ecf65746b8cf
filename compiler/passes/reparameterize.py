"""Reparameterization (docs/design.md §2): L-level LM-HT neurons over T steps → single-threshold LIF over L·T steps.

Window k = steps kL … kL+L−1 stands for original step k. With the authors'
uniform schedule:

* ``leak'(t) = leak(⌊t/L⌋)`` at window starts (t mod L = 0), 1 elsewhere;
* ``Ω'[t, j] = Ω[⌊t/L⌋, ⌊j/L⌋] / L`` (block-expanded T-GIM);
* neurons emit binary spikes (levels 1), soft reset, same θ and v_init;
* every offset (conv/linear bias, unfolded BatchNorm shift and mean) of a node
  whose input is spikes is divided by L, so window sums of its output equal
  the original per-step output; a neuron fed by the analog input keeps the
  offsets upstream and divides its input scale by L instead.

Invariant: each window's input current is the original step's current / L at
every step of the window, so the LIF spike count of window k equals the
M-HT level of step k whenever Theorem 4.2's conditions hold (membrane in
[0, θ) at window starts); the mean output over T' steps is the original mean
output / L. Non-linear nodes between neurons (max-pool on spikes) break
window-sum linearity and are refused with the node's name.

With the front-loaded ``exact`` schedule (docs/reparameterization.md) the
whole window's input arrives at the window's first step and none at the
other L−1 steps:

* ``Ω'[kL, j] = Ω[k, ⌊j/L⌋]`` for a spiking input (every step of a source
  window carries part of its count), ``Ω'[kL, jL] = Ω[k, j]`` for the analog
  input (the same value at every step: one step per window stands for it);
  all other rows are zero; no division by L;
* leak and offsets as in the uniform schedule; the analog-input neuron keeps
  its input scale.

Invariant: at a window's first step the LIF membrane is λ·v + I, exactly the
M-HT membrane; the soft-reset LIF then fires on consecutive steps while
v ≥ θ, at most L times, so every window's spike count equals the M-HT level
``clip(⌊v/θ⌋, 0, L)`` with the same residual, whatever v is.
"""
from __future__ import annotations

import numpy as np

from ..ir import BatchNorm, Conv2d, Graph, IRError, Linear, Neuron, TemporalMix, receives_spikes, finalize


SCHEDULES = ("uniform", "exact")
DEFAULT_SCHEDULE = "exact"     # lossless in every case (docs/reparameterization.md); "uniform" = the authors'


class ReparamError(IRError):
    pass


def _expand_omega(omega: np.ndarray, levels: int, schedule: str, spiking: bool) -> np.ndarray:
    """The L·T × L·T mixing matrix of a schedule (module docstring)."""
    if schedule == "uniform":
        return np.kron(omega, np.ones((levels, levels))) / levels
    first = np.zeros((levels, levels))
    first[0] = 1.0 if spiking else np.eye(levels)[0]      # row 0 of each block: the window's first step
    return np.kron(omega, first)


def graph_levels(graph: Graph) -> int:
    """The common level count L of the graph's neurons."""
    levels = {n.levels for n in graph.neuron_layers()}
    if len(levels) != 1:
        names = ", ".join(f"{n.name} (L={n.levels})" for n in graph.neuron_layers()[:4])
        raise ReparamError(f"neurons have different level counts ({names}); reparameterization needs one L")
    return levels.pop()


def reparameterize(graph: Graph, schedule: str = DEFAULT_SCHEDULE) -> Graph:
    """A copy of ``graph`` with every L-level neuron replaced by a single-threshold LIF over L·T steps."""
    if graph.meta.get("reparameterized"):
        raise ReparamError("graph is already reparameterized")
    if schedule not in SCHEDULES:
        raise ReparamError(f"unknown window schedule {schedule!r} (choose from {', '.join(SCHEDULES)})")
    levels = graph_levels(graph)
    g = graph.copy(share_arrays=True)      # every changed parameter below is a new array
    for node in g.topo():
        if not node.linear and not isinstance(node, Neuron) and receives_spikes(g, node.name):
            raise ReparamError(f"node {node.name!r} ({node.kind}) applies a non-linear operation to spikes "
                               f"between neuron layers; reparameterization needs window sums to pass through "
                               f"linearly (use average pooling, or compile with --no-reparam)")
    T = g.steps
    Tp = levels * T
    window_start = (np.arange(Tp) % levels) == 0
    for node in g.topo():
        spiking_input = node.inputs and receives_spikes(g, node.name)
        if isinstance(node, (Conv2d, Linear)) and spiking_input and node.bias is not None:
            node.bias = (node.bias.astype(np.float64) / levels).astype(np.float32)
        elif isinstance(node, BatchNorm) and spiking_input:
            node.bias = (node.bias.astype(np.float64) / levels).astype(np.float32)
            node.running_mean = (node.running_mean.astype(np.float64) / levels).astype(np.float32)
        elif isinstance(node, TemporalMix):
            node.omega = _expand_omega(node.omega, levels, schedule, spiking=bool(spiking_input))
        elif isinstance(node, Neuron):
            node.leak = np.where(window_start, np.repeat(node.leak, levels), 1.0)
            node.levels = 1
            if not receives_spikes(g, node.inputs[0]) and schedule == "uniform":
                node.input_scale = node.input_scale / levels
    g.steps = Tp
    g.meta.update({"reparameterized": True, "reparam_levels": levels, "schedule": schedule})
    g.meta.setdefault("passes", []).append(f"reparameterize[{schedule}]")
    return finalize(g)
