"""Integer lowering of the NIR kinds: ``lif`` → ``qlif``, and the unit rules the quantizer applies to NIR graphs.

Invariant: for a graph with ``lif`` layers every scale is a power of two (the input LSB, each synaptic
group's weight scale S_w and so the membrane unit μ = S_w/2^E), so dyadic weights, inputs, biases and
thresholds are represented exactly wherever their bits fit; β and α are ``round(β·2^F)`` (exact for
dyadic β with F fraction bits), and the step is ``lmhtc.semantics.lif_step``. A ``lif`` layer is the root
of its synaptic group (no T-GIM): its input scale (and CubaLIF's w_in) is folded into the group's weights
per output channel, so the integer drive is already in membrane units.
"""
from __future__ import annotations

import numpy as np

from ..intir_lif import QLIF
from ..lif_node import LIFNeuron

LIF_METHODS = ("auto", "maxabs")    # the dyadic lowering: max-abs scales rounded up to powers of two


def pow2_ceil(x) -> np.ndarray:
    """The smallest power of two ≥ x (elementwise, x > 0)."""
    return 2.0 ** np.ceil(np.log2(np.asarray(x, np.float64)))


def lif_gap(node: LIFNeuron) -> str | None:
    """Why a ``lif`` layer has no integer lowering, or None: its drive gain (scale, and w_in) must be one
    value per channel to fold into the synaptic weights."""
    gain = drive_gain(node)
    if gain is None:
        return "its input scale (times w_in) varies within a channel; the integer lowering folds it into the " \
               "synaptic weights per output channel"
    return None


def drive_gain(node: LIFNeuron) -> np.ndarray | None:
    """The per-channel factor scale·w_in the drive is multiplied by (float64), or None if it is not per channel."""
    g = np.broadcast_to(np.asarray(node.scale, np.float64), node.shape)
    if node.w_in is not None:
        g = g * np.broadcast_to(np.asarray(node.w_in, np.float64), node.shape)
    flat = g.reshape(g.shape[0], -1)
    if not np.all(flat == flat[:, :1]):
        return None
    return flat[:, 0].copy()


def lif_peak(node: LIFNeuron, peaks: dict | None) -> np.ndarray:
    """The membrane range to fit (real units, per channel): the calibrated peak |u| (at least 2θ), else
    16·θ (data-free, as 8·(L+1)·θ for L = 1), times 1/(1 − α) (at most 16) for CubaLIF."""
    theta = _per_channel(node.threshold if node.spiking else np.ones(1), node.shape, np.max)
    if peaks is not None and node.name in peaks:
        return np.maximum(np.broadcast_to(peaks[node.name], theta.shape), 2 * theta)
    if node.alpha is not None:     # CubaLIF: the current sums a geometric series of inputs, up to 1/(1 − α)
        return 16 * theta / max(1.0 - float(np.max(node.alpha)), 1 / 16)
    return 16 * theta


def quant_lif(node: LIFNeuron, mu: np.ndarray, frac_bits: int, membrane_bits: int) -> QLIF:
    """The ``qlif`` of ``node`` whose membrane unit is ``mu`` (per channel): thresholds, v_reset, v_min,
    v_init and bias rounded to membrane units, β and α to ``frac_bits`` fraction bits."""
    from .quantize import _round

    shape = tuple(node.shape)
    m = np.asarray(mu, np.float64).reshape(-1, *([1] * (len(shape) - 1)))

    def membrane(a):
        return None if a is None else _round(np.broadcast_to(np.asarray(a, np.float64), shape) / m).astype(np.int64)

    def coeff(a):
        return None if a is None else _round(np.broadcast_to(np.asarray(a, np.float64), shape) * 2 ** frac_bits
                                             ).astype(np.int64)

    theta = membrane(node.threshold) if node.spiking else np.ones(shape, np.int64)
    return QLIF(node.name, list(node.inputs), beta=coeff(node.beta), alpha=coeff(node.alpha),
                bias=membrane(node.bias), threshold=theta,
                v_reset=membrane(node.v_reset if node.v_reset is not None else 0.0),
                v_min=membrane(node.v_min), v_init=membrane(node.v_init if node.v_init is not None else 0.0),
                frac_bits=frac_bits, membrane_bits=membrane_bits, reset=node.reset, compare=node.compare,
                reset_timing=node.reset_timing, spiking=node.spiking, multi_spike=node.multi_spike)


def lif_unit(node: LIFNeuron, mu: np.ndarray) -> np.ndarray:
    """The real value of one integer unit of the layer's output: θ per spike, μ per membrane unit (LI)."""
    if node.spiking:
        return np.broadcast_to(np.asarray(node.threshold, np.float64), node.shape).copy()
    return np.broadcast_to(np.asarray(mu, np.float64).reshape(-1, *([1] * (len(node.shape) - 1))),
                           node.shape).copy()


def _per_channel(a, shape, reduce) -> np.ndarray:
    full = np.broadcast_to(np.asarray(a, np.float64), shape)
    return reduce(full.reshape(full.shape[0], -1), axis=1)
