"""The integer ``qlif`` kind: the ``lif`` neuron (NIR's LIF, IF, CubaLIF, LI, Threshold) in fixed point.

Its own type (not the float ``LIFNeuron``): every array is int64 broadcast to the layer shape, in the
layer's membrane unit, except ``beta``/``alpha`` (multipliers of 2^−``frac_bits``). One step is
``lmhtc.semantics.lif_step`` (docs/integer-semantics.md, ``qlif``); the state starts at ``v_init`` and
``i = 0`` before step 0. The output is the spike count s (unit θ of the float layer), or the membrane u
for a non-spiking integrator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import IRError, Node, register_node_type

INTEGER = frozenset({"integer"})
ARRAYS = ("beta", "alpha", "bias", "threshold", "v_reset", "v_min", "v_init")


@register_node_type
@dataclass
class QLIF(Node):
    beta: np.ndarray = None            # int64, β·2^F
    alpha: np.ndarray | None = None    # int64, α·2^F (CubaLIF's current; None: no synapse)
    bias: np.ndarray = None            # int64, membrane units
    threshold: np.ndarray = None       # int64 ≥ 1
    v_reset: np.ndarray = None         # int64
    v_min: np.ndarray | None = None    # int64 floor (None: none)
    v_init: np.ndarray = None          # int64 membrane before step 0
    frac_bits: int = 12
    membrane_bits: int = 24
    reset: str = "zero"
    compare: str = ">"
    reset_timing: str = "same-step"
    spiking: bool = True
    multi_spike: bool = False
    kind = "qlif"
    counts_spikes = True
    phases = INTEGER
    elementwise = True
    linear = False

    def check(self) -> None:
        """Raise IRError naming the node when a threshold is below 1 or an array does not fit the layer."""
        if self.spiking and np.any(np.asarray(self.threshold) < 1):
            raise IRError(f"node {self.name!r} (qlif): thresholds must be >= 1")
        if self.shape is not None:
            for key in ARRAYS:
                arr = getattr(self, key)
                if arr is not None and tuple(np.shape(arr)) != tuple(self.shape):
                    raise IRError(f"node {self.name!r} (qlif): {key} of shape {np.shape(arr)} is not the layer "
                                  f"shape {tuple(self.shape)}")

    def step_params(self) -> dict:
        """The keyword arguments of ``semantics.lif_step`` (arrays in the IR layout)."""
        return dict(beta=self.beta, alpha=self.alpha, bias=self.bias, threshold=self.threshold,
                    v_reset=self.v_reset, v_min=self.v_min, frac_bits=self.frac_bits,
                    membrane_bits=self.membrane_bits, reset=self.reset, compare=self.compare,
                    timing=self.reset_timing, multi_spike=self.multi_spike, spiking=self.spiking)

    def out_bound(self) -> int:
        """A bound on |output|: 1 (one spike), max u div Θ (several), or the membrane range (integrator)."""
        top = 2 ** (self.membrane_bits - 1)
        if not self.spiking:
            return top
        return top // int(np.min(self.threshold)) if self.multi_spike else 1
