"""The MSAT neuron as an IR node kind (``msat_neuron``), registered with the artifact loader.

An integrate-and-fire neuron with soft reset whose threshold adapts per neuron and
step (multi-stage adaptive threshold, docs/design.md §5, the form lmhtc implements).
With ``u = V/θ_max`` (membranes measured in units of the layer's θ_max), ``m(t)`` the
layer's mean of ``u(t)`` per sample, ``V(t)`` the membrane before spiking::

    DTT(t)   = α·(u(t) − m(t)) + V_T + k_a·ln(1 + exp((u(t) − m(t))/k_i))
    DET(t+1) = τ_rd·exp(−(u(t+1) − u(t))/C)
    θ(t+1)   = sigmoid(τ_mp·DTT(t) + DET(t+1))·θ_max
    θ(0)     = sigmoid(τ_mp·(V_T + k_a·ln 2) + τ_rd)·θ_max      (a neuron at the mean, steady)
    V(t)     = V(t−1) − θ(t−1)·s(t−1) + I(t),   V(−1) = v_init·θ(0)
    s(t)     = [V(t) ≥ θ(t)] · c(t),             output θ(t)·s(t)

``c(t)`` is the spike confidence: Bernoulli(``confidence``) per neuron during the first
``confidence_steps`` steps (1 otherwise; ``confidence`` 1 turns it off), drawn from a
generator seeded by (``seed``, node name, sample index), so a run is reproducible and
independent of the batch size. The dynamics live in ``lmhtc.compiler.convert.msat``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..ir import IRError, Node, register_node_type


@register_node_type
@dataclass
class MSATNeuron(Node):
    theta_max: float = 1.0        # the layer's maximum ANN activation on calibration data (raw units)
    alpha: float = 0.3
    k_a: float = 1.0
    k_i: float = 1.0
    c: float = 5.0
    tau_mp: float = 0.5
    tau_rd: float = 0.5
    v_t: float = 0.0              # V_T, in units of θ_max
    v_init: float = 0.5           # initial membrane, in units of θ(0)
    confidence: float = 1.0       # spike-confidence probability p (1: off)
    confidence_steps: int = 0     # steps 0 … confidence_steps−1 use it
    seed: int = 0
    kind = "msat_neuron"
    elementwise = True
    linear = False
    emits_spikes = True

    def initial_fraction(self) -> float:
        """θ(0)/θ_max = sigmoid(τ_mp·(V_T + k_a·ln 2) + τ_rd)."""
        return 1.0 / (1.0 + math.exp(-(self.tau_mp * (self.v_t + self.k_a * math.log(2.0)) + self.tau_rd)))

    def check(self) -> None:
        """Raise IRError naming the node when a parameter is out of range."""
        where = f"node {self.name!r} ({self.kind})"
        if not self.theta_max > 0 or not math.isfinite(self.theta_max):
            raise IRError(f"{where}: theta_max must be a positive number, got {self.theta_max}")
        if not 0.0 <= self.confidence <= 1.0:
            raise IRError(f"{where}: spike confidence must lie in [0, 1], got {self.confidence}")
        if self.confidence_steps < 0:
            raise IRError(f"{where}: confidence_steps must be >= 0, got {self.confidence_steps}")
        if not self.k_i > 0 or not self.c > 0:
            raise IRError(f"{where}: k_i and C must be > 0, got k_i={self.k_i}, C={self.c}")
