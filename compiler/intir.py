"""Integer node kinds of the IR (docs/integer-semantics.md is their definition).

Each is its own type: it derives from the semantics-free base (compiler/ir.py: ``ConvBase``,
``NeuronBase``, ...) that the float kind it implements derives from too, so shape inference and
graph tools that name the base apply to both phases, while no integer node is an instance of a float
kind (``isinstance(q, Conv2d)`` is False for a ``qconv2d``). A graph of these nodes has
``graph.meta["integer"] = True``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import (ConvBase, GlobalPoolBase, InputBase, LinearBase, NeuronBase, Node, PoolBase, ReadoutBase,
                 TemporalMixBase, register_node_type)

from lmhtc import semantics

INTEGER = frozenset({"integer"})      # the phase of every kind below
from lmhtc.semantics import SEMANTICS_VERSION  # noqa: F401  (re-exported: the integer graph's version)


@register_node_type
@dataclass
class QInput(InputBase):
    """``x_int = clip(round(x/scale), ±(2^(bits−1) − 1))`` at every step."""
    scale: float = 1.0
    bits: int = 8
    kind = "qinput"
    phases = INTEGER


@register_node_type
@dataclass
class QConv2d(ConvBase):
    """``y = (Σ w·x) << shift + bias``; weight int32 mantissas, bias int64 (membrane units)."""
    shift: int = 0
    weight_bits: int = 8
    acc_bound: int = 0          # max |Σ w·x| over any output, from range analysis
    kind = "qconv2d"
    phases = INTEGER


@register_node_type
@dataclass
class QLinear(LinearBase):
    shift: int = 0
    weight_bits: int = 8
    acc_bound: int = 0
    kind = "qlinear"
    phases = INTEGER


@register_node_type
@dataclass
class QGain(Node):
    """Identity shortcut as a synapse of fan-out 1: ``y[c] = (gain[c]·x[c]) << shift``."""
    gain: np.ndarray = None
    shift: int = 0
    weight_bits: int = 8
    acc_bound: int = 0
    kind = "qgain"
    phases = INTEGER
    synaptic = True
    elementwise = True


@register_node_type
@dataclass
class SumPool2d(PoolBase):
    """Window sums (the float layer's 1/k² lives in the consumer's weights)."""
    kind = "sumpool2d"
    phases = INTEGER


@register_node_type
@dataclass
class GlobalSumPool(GlobalPoolBase):
    kind = "globalsumpool"
    phases = INTEGER


@register_node_type
@dataclass
class QTemporalMix(TemporalMixBase):
    """``I(t) = rs(Σ_m omega[t,m]·y(m), frac_bits)``; omega int64."""
    frac_bits: int = 12
    kind = "qtemporal_mix"
    phases = INTEGER


@register_node_type
@dataclass
class QNeuron(NeuronBase):
    """``V ← sat(rs(leak[t]·V, leak_frac_bits) + I, membrane_bits)``; ``k = Σ_i [V ≥ iΘ]``; ``V −= kΘ``.

    ``threshold`` and ``v_init`` are int64 per channel, ``leak`` int64 per step.
    """
    leak_frac_bits: int = 12
    membrane_bits: int = 24
    kind = "qneuron"
    phases = INTEGER


@register_node_type
@dataclass
class QReadout(ReadoutBase):
    """Integer per-step logits ``y(t)``; dequantized with ``scale`` (float64 per class)."""
    scale: np.ndarray = None
    kind = "qreadout"
    phases = INTEGER


def rs(a, frac_bits: int):
    """``lmhtc.semantics.rs`` on numpy values; on torch int64 tensors the same value, computed in place-friendly
    torch ops (tested against the semantics module op by op)."""
    if frac_bits == 0:
        return a
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return semantics.rs(a, frac_bits)
    r = a >> 63                   # torch int64: −1 for negative values, 0 otherwise (arithmetic shift)
    r += a
    r += 1 << (frac_bits - 1)
    r >>= frac_bits
    return r


from . import intir_conv1d, intir_lif  # noqa: E402,F401  (register the qconv1d and qlif kinds)
