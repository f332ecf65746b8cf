"""Integer lowering: a float graph (BN folded) → the integer network of docs/integer-semantics.md.

Invariant: the integer graph computes, in exact integer arithmetic, the float
graph's network with weights rounded to ``weight_bits`` mantissas, T-GIM and
leak coefficients to ``frac_bits`` fixed point, thresholds/biases/v_init to
membrane units, and the input to ``input_bits`` — spikes are the same events
wherever no membrane lies within the rounding error of a threshold.

Units. Every integer value stands for ``value × unit``. A neuron's output (a
spike count) has unit θ; a sum-pool divides the unit by its window size; the
input has unit ``input_scale``. The synaptic paths into one neuron layer (or
the readout) — a conv/linear, or an identity shortcut lowered to a ``qgain`` —
accumulate into the layer's membrane unit ``S_w[c] / 2^E`` (per output channel
by default), where ``S_w[c]`` makes the largest |weight × input unit| of any
path the largest ``weight_bits`` mantissa and E is the shared exponent.

Calibration data (optional) sets the input range (max |x|) and lowers E for
layers whose membranes would otherwise use more than ``membrane_bits − 1``
bits. Without data the rules are: input range from the checkpoint's
normalisation (pixels in [0, 1]) when known, else ±4; E = 6 unless a membrane
of 8·(L+1)·θ would not fit.

The method (``QuantConfig.method``, docs/integer-semantics.md "Compiler
choices") picks the values within that contract: ``maxabs`` (S_w from the
largest weight, nearest rounding), ``bias`` (+ bias correction), ``mse``
(+ error-minimising clipping of S_w) and ``mse-ta`` (+ threshold-aware
rounding of biases, thresholds and v_init); the methods live in lowbit.py,
their statistics come from one calibration pass (calibrate.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..analysis.groups import LAST_INPUT_FIRST, sum_tree
from ..analysis.ranges import synapse_sum_bounds
from ..errors import LmhtcError
from lmhtc.semantics import SEMANTICS_VERSION

from .calibrate import CALIB_BATCH, Calibration, calibrate
from .lowbit import bias_correction, bias_response, quantize_mantissa, search_scales, threshold_aware
from .quantize_lif import LIF_METHODS, drive_gain, lif_gap, lif_peak, lif_unit, pow2_ceil, quant_lif
from ..intir import (GlobalSumPool, QConv2d, QGain, QInput, QLinear, QNeuron, QReadout,
                     QTemporalMix, SumPool2d)
from ..ir import (Add, AvgPool2d, BatchNorm, Conv2d, Flatten, GlobalAvgPool, Graph, Input, IRError, Linear,
                  MaxPool2d, Neuron, Node, Readout, TemporalMix, finalize)
from ..lif_node import LIFNeuron
from ..intir_conv1d import QConv1d
from ..nir_ops import Conv1d, Scale, SumPool2d as NIRSumPool2d
from ..type_rules import rule_for


class QuantizeError(IRError):
    pass


# method → (scales, bias correction, threshold-aware rounding); bias correction and threshold-aware
# rounding need calibration data and are skipped without it
METHODS = {"maxabs": ("maxabs", False, False), "bias": ("maxabs", True, False),
           "mse": ("mse", True, False), "mse-ta": ("mse", True, True)}
DEFAULT_METHOD = "auto"     # mse-ta below 8-bit weights, bias from 8 bits on (measured: README, issue 20)


def method_for(method: str, weight_bits: int) -> str:
    """The method ``auto`` stands for at ``weight_bits``; any other method is itself."""
    if method != "auto":
        return method
    return "mse-ta" if weight_bits < 8 else "bias"
GAIN_BITS = 8         # mse scales: identity-shortcut gains have at least 8 bits (Lava's weight width)
MSE_MAX_BITS = 8      # wider weights keep max-abs scales (rounding error ≤ 1/510 of the largest weight)


def calibrate_for(graph: Graph, calib: np.ndarray, config: "QuantConfig", batch_size: int = CALIB_BATCH,
                  progress: bool = False) -> Calibration:
    """The one calibration pass that ``quantize(graph, config, calib)`` needs (reusable across widths)."""
    scales, bc, ta = METHODS["maxabs" if _dyadic(graph) else config.lowering]
    return calibrate(graph, calib, batch_size, progress, inputs=scales == "mse" or bc, near=ta,
                     squares=scales == "mse")       # E[x²] weighs the mse scale search only


@dataclass(frozen=True)
class QuantConfig:
    weight_bits: int = 8
    per_channel: bool = True
    shift: int = 6                  # default shared exponent E (Loihi's threshold shift)
    input_bits: int = 8
    mix_frac_bits: int = 12
    leak_frac_bits: int = 12
    membrane_bits: int | None = None   # default: 24 (Loihi) up to 8-bit weights, weight_bits + 16 above
    method: str = DEFAULT_METHOD
    layer_bits: tuple[tuple[str, int], ...] = ()   # (neuron layer or readout name, weight bits) overrides

    @property
    def membrane(self) -> int:
        return self.membrane_bits if self.membrane_bits is not None else max(24, self.weight_bits + 16)

    @classmethod
    def widest(cls) -> "QuantConfig":
        """Every width at its maximum: 24-bit weights and input, 24-bit T-GIM and leak fractions, 38-bit
        membranes (the largest whose leak products fit int64: 2^(24+1)·2^37 < 2^63). A verification
        setting: its integers follow the float network to float64 rounding."""
        return cls(weight_bits=24, input_bits=24, mix_frac_bits=24, leak_frac_bits=24, membrane_bits=38, shift=8,
                   method="maxabs")

    @property
    def lowering(self) -> str:
        """The lowering method used (``auto`` resolved at ``weight_bits``)."""
        return method_for(self.method, self.weight_bits)

    def bits_of(self, layer: str) -> int:
        return dict(self.layer_bits).get(layer, self.weight_bits)

    def check(self) -> None:
        if not 2 <= self.weight_bits <= 24:
            raise LmhtcError(f"--weight-bits must be between 2 and 24, got {self.weight_bits}")
        if self.method != "auto" and self.method not in METHODS:
            raise LmhtcError(f"--quant-method must be auto or one of {', '.join(METHODS)}, got {self.method!r}")
        for layer, bits in self.layer_bits:
            if not 2 <= bits <= 24:
                raise LmhtcError(f"layer {layer!r}: weight bits must be between 2 and 24, got {bits}")
        if not 2 <= self.input_bits <= 24:
            raise LmhtcError(f"input bits must be between 2 and 24, got {self.input_bits}")
        if not (1 <= self.mix_frac_bits <= 24 and 1 <= self.leak_frac_bits <= 24):
            raise LmhtcError("T-GIM and leak fraction bits must be between 1 and 24")
        if self.membrane + self.leak_frac_bits + 1 > 63:
            raise LmhtcError(f"{self.membrane}-bit membranes with {self.leak_frac_bits}-bit leak fractions "
                             f"overflow 64-bit leak products")
        if not 8 <= self.membrane <= 48:
            raise LmhtcError(f"membrane bits must be between 8 and 48, got {self.membrane}")


def _round(x) -> np.ndarray:
    """Round half away from zero."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _group_leaves(g: Graph, root: Node) -> tuple[list[str], list[str]]:
    """The accumulation tree feeding ``root`` (a TemporalMix or Readout): its Add nodes and its leaves, in
    analysis/groups.py's LAST_INPUT_FIRST order (the first conv/linear leaf carries the group's bias)."""
    tree = sum_tree(g, root.inputs[0], LAST_INPUT_FIRST)
    for name in tree.walk:
        node = g.node(name)
        if isinstance(node, (Add, Conv2d, Conv1d, Linear)) and len(g.consumers(name)) != 1:
            raise QuantizeError(f"node {name!r} ({node.kind}) feeds several layers; the integer lowering "
                                f"needs each synaptic sum to feed one neuron layer")
    return tree.adds, tree.leaves


def _input_range(graph: Graph, calib: np.ndarray | None) -> tuple[float, str]:
    if calib is not None:
        return float(np.abs(calib).max()) or 1.0, "calibration (max |x|)"
    norm = graph.meta.get("model_spec", {}).get("normalization") or {}
    if "mean" in norm and "std" in norm:
        mean, std = float(norm["mean"]), float(norm["std"])
        return max(abs((0 - mean) / std), abs((1 - mean) / std)), "data-free (normalisation, pixels in [0, 1])"
    return 4.0, "data-free (standardised input, ±4)"


def quantize(graph: Graph, config: QuantConfig = QuantConfig(), calib: np.ndarray | None = None,
             batch_size: int = CALIB_BATCH, progress: bool = False, stats: Calibration | None = None) -> Graph:
    """The integer network of ``graph`` (a float graph with BatchNorm folded); ``stats``: the calibration
    pass of ``graph`` on ``calib`` when the caller already ran it (``calibrate_for``)."""
    config.check()
    if graph.meta.get("integer"):
        raise QuantizeError("graph is already an integer network")
    for node in graph.topo():
        refusal = next((rule(node) for t, rule in REFUSALS.items() if isinstance(node, t)), None)
        if refusal is not None:
            raise QuantizeError(f"node {node.name!r} ({node.kind}): {refusal}")
    dyadic = _dyadic(graph)      # NIR graphs: power-of-two scales (quantize_lif.py)
    if dyadic and config.method not in LIF_METHODS:
        raise QuantizeError(f"--quant-method {config.method}: an imported NIR network lowers with maxabs "
                            f"(power-of-two scales) only")
    scales, want_bc, want_ta = METHODS["maxabs" if dyadic else config.lowering]
    cal = stats
    if calib is not None and cal is None:
        cal = calibrate_for(graph, calib, config, batch_size, progress)
    peaks = None if cal is None else cal.peaks
    use_bc, use_ta = want_bc and cal is not None, want_ta and cal is not None
    names = {n.name for n in graph.topo()}
    for layer, _ in config.layer_bits:
        if layer not in names:
            raise QuantizeError(f"layer {layer!r} (per-layer weight bits) is not a node of the network")
    qmax_x = 2 ** (config.input_bits - 1) - 1
    vmax = 2 ** (config.membrane - 1) - 1

    src = graph
    out = Graph(steps=src.steps, meta=dict(src.meta))
    unit: dict[str, np.ndarray] = {}       # per-element real value of one integer unit (float values only)
    max_in: dict[str, np.ndarray] = {}     # per-element max |integer| (range analysis)
    membrane_unit: dict[str, np.ndarray] = {}   # group root (mix/readout) → per-channel membrane unit
    group_shift: dict[str, int] = {}
    leaf_of_group: dict[str, str] = {}
    roots = [n for n in src.topo() if isinstance(n, (TemporalMix, Readout, LIFNeuron))]
    groups = {}
    for root in roots:
        adds, leaves = _group_leaves(src, root)
        groups[root.name] = (adds, leaves)
        for leaf in leaves:
            leaf_of_group[leaf] = root.name

    in_range, in_rule = _input_range(src, calib)
    input_scale = float(pow2_ceil(in_range / qmax_x)) if dyadic else in_range / qmax_x
    group_bits: dict[str, int] = {}       # group root → weight bits
    neuron_ints: dict[str, tuple[np.ndarray, np.ndarray]] = {}   # neuron → threshold-aware (Θ, v_init)

    def mean_int(name: str) -> np.ndarray:
        """E[x] of a synaptic input in integer units on the calibration data (the encoded input exactly)."""
        if isinstance(src.node(name), Input):
            return np.clip(_round(np.asarray(calib, np.float64) / input_scale), -qmax_x, qmax_x).mean(axis=0)
        return cal.mean_in[name] / unit[name]

    def importance(node: Node, name: str) -> np.ndarray:
        """E[x²] (integer units) of the input each weight of ``node`` reads; ones without data."""
        if cal is None:
            return np.ones(1)
        if isinstance(src.node(name), Input):
            xq = np.clip(_round(np.asarray(calib, np.float64) / input_scale), -qmax_x, qmax_x)
            sq = (xq ** 2).mean(axis=tuple(d for d in range(xq.ndim) if d != 1))
        else:
            sq = cal.sq_in[name] / unit[name].reshape(unit[name].shape[0], -1)[:, 0] ** 2
        if isinstance(node, Conv2d):
            return _conv_in(np.broadcast_to(sq.reshape(-1, *([1] * (len(node.shape) - 1))), src.node(name).shape),
                            node)
        if isinstance(node, Linear):
            return np.broadcast_to(sq, (1, len(sq))) if sq.shape[0] == node.weight.shape[1] else \
                np.repeat(sq, node.weight.shape[1] // sq.shape[0]).reshape(1, -1)
        return sq.reshape(-1, 1)

    def consumer_neuron(root: Node) -> Neuron | None:
        if isinstance(root, (Readout, LIFNeuron)):
            return None
        (n,) = src.consumers(root.name)
        if not isinstance(n, Neuron):
            raise QuantizeError(f"node {root.name!r} (temporal_mix) must feed a neuron")
        return n

    w_eff_of: dict[str, np.ndarray] = {}      # effective weights of the group being lowered (then freed)

    def effective_weights(node: Node) -> np.ndarray:
        """The real weight of one integer unit of each input: ``W × unit(input)`` (× a lif's drive gain);
        computed once per group (scales, mantissas, bias correction read the same array)."""
        if node.name in w_eff_of:
            return w_eff_of[node.name]
        u_in = unit[node.inputs[0]]
        g = gain_of_root(leaf_of_group[node.name]).reshape(-1, *([1] * (node.weight.ndim - 1)))
        w = node.weight.astype(np.float64)     # then ×unit, ×gain in place: the same roundings, one array
        w *= _conv_in(u_in, node) if isinstance(node, (Conv2d, Conv1d)) else u_in.reshape(1, -1)
        w *= g
        w_eff_of[node.name] = w
        return w

    def gain_of_root(root_name: str) -> np.ndarray:
        """Per output channel, the factor a group's sum is multiplied by before it drives its root (a lif's
        scale·w_in; 1 for the other roots)."""
        root = src.node(root_name)
        return drive_gain(root) if isinstance(root, LIFNeuron) else np.ones(1)

    def plan_group(root: Node) -> None:
        """Choose the membrane unit and shift of the group ending at ``root``."""
        adds, leaves = groups[root.name]
        neuron = consumer_neuron(root)
        bits = config.bits_of(root.name if neuron is None else neuron.name)
        group_bits[root.name] = bits
        qmax_w = 2 ** (bits - 1) - 1
        peaks_c, paths = [], []
        for leaf in leaves:
            node = src.node(leaf)
            if isinstance(node, (Conv2d, Conv1d, Linear)):
                w_eff = effective_weights(node)
                rows = w_eff.reshape(w_eff.shape[0], -1)
                peaks_c.append(np.maximum(rows.max(axis=1), -rows.min(axis=1)))     # max |w| per row, no |w| copy
                if scales == "mse" and bits <= MSE_MAX_BITS:
                    paths.append((w_eff, importance(node, node.inputs[0])))
            elif leaf in unit:    # identity shortcut of a spiking value → qgain
                if not own_gain_exponent(root.name):
                    u = unit[leaf].reshape(unit[leaf].shape[0], -1) * gain_of_root(root.name).reshape(-1, 1)
                    peaks_c.append(np.abs(u).max(axis=1))
            else:
                raise QuantizeError(f"node {leaf!r} ({node.kind}) cannot feed a neuron layer directly")
        peak = np.max(np.stack(peaks_c), axis=0)
        if not config.per_channel:
            peak = np.full_like(peak, peak.max())
        peak = np.where(peak > 0, peak, peak.max() if peak.max() > 0 else 1.0)
        if scales == "mse" and bits <= MSE_MAX_BITS:
            peak = peak * search_scales(peak, paths, qmax_w, config.per_channel)
        s_w = pow2_ceil(peak / qmax_w) if dyadic else peak / qmax_w
        shift = config.shift
        v_peak, layer = None, neuron
        if neuron is not None:
            # headroom: the membrane peak (calibrated, else 8·(L+1)·θ) must fit in membrane_bits − 1 bits
            v_peak = peaks[neuron.name] if peaks is not None else 8 * (neuron.levels + 1) * neuron.threshold
            v_peak = max(v_peak, (neuron.levels + 1) * neuron.threshold)
        elif isinstance(root, LIFNeuron):
            v_peak, layer = lif_peak(root, peaks), root
        if v_peak is not None:
            while shift > -32 and np.max(v_peak / (s_w / 2 ** shift)) > vmax / 2:
                shift -= 1     # a negative exponent is a rounding right shift of the synaptic sum
            if np.max(v_peak / (s_w / 2 ** shift)) > vmax:
                raise QuantizeError(f"node {layer.name!r}: membrane range does not fit {config.membrane} bits "
                                    f"at {bits}-bit weights")
        membrane_unit[root.name] = s_w / 2 ** shift
        group_shift[root.name] = shift

    def quant_leaf(node: Node, root_name: str) -> Node:
        mu = membrane_unit[root_name]
        shift = group_shift[root_name]
        s_w = mu * 2 ** shift
        wbits = group_bits[root_name]
        qmax_w = 2 ** (wbits - 1) - 1
        if isinstance(node, (Conv2d, Conv1d, Linear)):
            w_eff = effective_weights(node)
            mant = quantize_mantissa(w_eff, s_w, qmax_w)
            bias = None if node.bias is None else \
                _round(node.bias.astype(np.float64) * gain_of_root(root_name) / mu).astype(np.int64)
            m_in = max_in[node.inputs[0]]
            if isinstance(node, (Conv2d, Conv1d)):
                q = (QConv2d if isinstance(node, Conv2d) else QConv1d)(
                    node.name, list(node.inputs), weight=mant.astype(np.int32), bias=bias, stride=node.stride,
                    padding=node.padding, dilation=node.dilation, groups=node.groups, shift=shift,
                    weight_bits=wbits)
                m_in = m_in.reshape(m_in.shape[0], -1)[:, 0]     # per input channel (constant over H, W or L)
            else:
                q = QLinear(node.name, list(node.inputs), weight=mant.astype(np.int32), bias=bias, shift=shift,
                            weight_bits=wbits)
                m_in = m_in.reshape(-1)
            bound = q.acc_bound = int(synapse_sum_bounds(q, m_in).max())
            if bound * 2 ** max(shift, 0) + (0 if bias is None else int(np.abs(bias).max())) >= 2 ** 62:
                raise QuantizeError(f"node {node.name!r}: integer sums may exceed 62 bits")
            return q
        # identity shortcut
        u = unit[node.name].reshape(unit[node.name].shape[0], -1)[:, 0] * gain_of_root(root_name)
        if own_gain_exponent(root_name):      # its own exponent: a gain of max(8, weight_bits) bits
            wbits = min(max(wbits, GAIN_BITS), 24)
            shift, gain = gain_exponent(u / mu, 2 ** (wbits - 1) - 1)
        else:
            gain = np.clip(_round(u / s_w), -qmax_w, qmax_w).astype(np.int32)
        q = QGain(f"{node.name}.gain.{root_name}", [node.name], gain=gain, shift=shift, weight_bits=wbits)
        q.acc_bound = int(synapse_sum_bounds(q, max_in[node.name].reshape(gain.shape[0], -1).max(axis=1)).max())
        return q

    def own_gain_exponent(root_name: str) -> bool:
        """mse scales: an identity shortcut neither sets nor shares the conv paths' scale (when there is one)."""
        return scales == "mse" and any(isinstance(src.node(leaf), (Conv2d, Linear)) for leaf in groups[root_name][1])

    def finish_bias(root: Node, leaves_q: dict[str, Node]) -> None:
        """Bias correction (and threshold-aware rounding) of the group ending at ``root``. The synaptic sum
        adds every leaf's bias, so only the total matters: it goes to the group's first conv/linear leaf."""
        mu = membrane_unit[root.name]
        s_w = mu * 2 ** group_shift[root.name]
        carriers = [leaf for leaf, ql in leaves_q.items() if isinstance(ql, (QConv2d, QLinear))]
        if not carriers:
            return
        total = np.zeros(len(mu))
        for leaf, ql in leaves_q.items():
            node = src.node(leaf)
            if isinstance(ql, QGain):
                if use_bc:
                    u = unit[leaf].reshape(unit[leaf].shape[0], -1)[:, 0]
                    total -= bias_correction("gain", ql.gain * mu * 2.0 ** ql.shift - u, mean_int(leaf))
                continue
            if node.bias is not None:
                total += node.bias.astype(np.float64)
            if use_bc:
                w_eff = effective_weights(node)
                delta = ql.weight * s_w.reshape(-1, *([1] * (w_eff.ndim - 1))) - w_eff
                geo = dict(stride=node.stride, padding=node.padding, dilation=node.dilation, groups=node.groups) \
                    if isinstance(node, Conv2d) else None
                kind = "conv" if geo else "linear"
                total -= bias_correction(kind, delta, mean_int(node.inputs[0]), geo)
                if isinstance(src.node(node.inputs[0]), Input):    # and the input encoding's mean error
                    in_err = mean_int(node.inputs[0]) - np.asarray(calib, np.float64).mean(axis=0) / input_scale
                    total -= bias_correction(kind, w_eff, in_err, geo)
        bias_lsb = total / mu
        neuron = consumer_neuron(root)
        if use_ta and neuron is not None:
            rb, rv = bias_response(np.asarray(root.omega) * neuron.input_scale, neuron.leak, src.steps)
            b, th, vi, _ = threshold_aware(cal.near[neuron.name], neuron.threshold / mu, bias_lsb,
                                           np.full(len(mu), neuron.v_init * neuron.threshold) / mu, rb, rv)
            neuron_ints[neuron.name] = (th.astype(np.int64), vi.astype(np.int64))
        else:
            b = _round(bias_lsb)
        for leaf in carriers:
            leaves_q[leaf].bias = None
        leaves_q[carriers[0]].bias = b.astype(np.int64)

    qnodes: dict[str, Node] = {}
    alias: dict[str, str] = {}                    # a folded node (scale) → the integer node carrying its value
    gain_of: dict[tuple[str, str], QGain] = {}    # (identity leaf, group root) → its qgain
    for node in src.topo():
        shape = node.shape
        q = None
        if isinstance(node, Input):
            q = QInput(node.name, [], input_shape=node.input_shape, encoding=node.encoding, scale=input_scale,
                       bits=config.input_bits)
            unit[node.name] = np.full(shape, input_scale)
            max_in[node.name] = np.full(shape, float(qmax_x))
        elif isinstance(node, Neuron):
            mix = src.node(node.inputs[0])
            mu = membrane_unit[mix.name].reshape(-1)
            theta = _round(node.threshold / mu).astype(np.int64)
            v_init = _round(node.v_init * node.threshold / mu).astype(np.int64)
            if node.name in neuron_ints:
                theta, v_init = neuron_ints[node.name]
            if np.any(theta < 1):
                raise QuantizeError(f"node {node.name!r}: threshold underflows the membrane unit")
            q = QNeuron(node.name, list(node.inputs), threshold=theta, levels=node.levels,
                        leak=_round(np.asarray(node.leak) * 2 ** config.leak_frac_bits).astype(np.int64),
                        v_init=v_init, input_scale=1.0,
                        leak_frac_bits=config.leak_frac_bits, membrane_bits=config.membrane)
            unit[node.name] = np.full(shape, float(node.threshold))
            max_in[node.name] = np.full(shape, float(node.levels))
        elif isinstance(node, (TemporalMix, Readout, LIFNeuron)):
            plan_group(node)
            omega = None
            if isinstance(node, TemporalMix):
                neuron = consumer_neuron(node)
                omega = _round(np.asarray(node.omega) * neuron.input_scale * 2 ** config.mix_frac_bits)
                omega = omega.astype(np.int64)
            while True:
                leaves_q = {leaf: quant_leaf(src.node(leaf), node.name) for leaf in groups[node.name][1]}
                # range analysis of the T-GIM sums: Σ_m |omega[t,m]|·max|y| < 2^62 (exact in int64);
                # a smaller exponent shrinks the synaptic sums (and the membrane unit grows with it)
                if omega is None or int(np.abs(omega).sum(axis=1).max()) * _sum_bound(leaves_q.values()) < 2 ** 62:
                    break
                if group_shift[node.name] <= -32:
                    raise QuantizeError(f"node {node.name!r}: T-GIM sums cannot be bounded below 2^62")
                group_shift[node.name] -= 1
                membrane_unit[node.name] = membrane_unit[node.name] * 2
            if use_bc or use_ta:
                finish_bias(node, leaves_q)
                if omega is not None and int(np.abs(omega).sum(axis=1).max()) * _sum_bound(leaves_q.values()) >= 2 ** 62:
                    raise QuantizeError(f"node {node.name!r}: T-GIM sums cannot be bounded below 2^62")
            for leaf, ql in leaves_q.items():
                if isinstance(ql, QGain):
                    gain_of[(leaf, node.name)] = ql
                else:
                    qnodes[leaf] = ql
            w_eff_of.clear()
            if isinstance(node, LIFNeuron):
                q = quant_lif(node, membrane_unit[node.name], config.leak_frac_bits, config.membrane)
                unit[node.name] = lif_unit(node, membrane_unit[node.name])
                max_in[node.name] = np.full(shape, float(q.out_bound()))
            elif omega is not None:
                q = QTemporalMix(node.name, list(node.inputs), omega=omega, frac_bits=config.mix_frac_bits)
            else:
                q = QReadout(node.name, list(node.inputs), scale=membrane_unit[node.name].astype(np.float64))
        elif isinstance(node, (Conv2d, Conv1d, Linear)):
            if node.name not in leaf_of_group:
                raise QuantizeError(f"node {node.name!r} ({node.kind}) does not feed a neuron layer or the readout")
        elif (rule := rule_for(STRUCTURAL, node)) is not None:
            q, u, m = rule(node, src, unit.get(node.inputs[0]), max_in.get(node.inputs[0]))
            if u is not None:
                unit[node.name], max_in[node.name] = u, m
        elif isinstance(node, Scale):           # folded into the units: its consumers' weights carry it
            alias[node.name] = alias.get(node.inputs[0], node.inputs[0])
            unit[node.name] = unit[node.inputs[0]] * np.broadcast_to(np.asarray(node.scale, np.float64), shape)
            max_in[node.name] = max_in[node.inputs[0]]
        else:
            raise QuantizeError(f"node {node.name!r} ({node.kind}) has no integer lowering")
        if q is not None:
            qnodes[node.name] = q
    # build in the source's topological order; identity paths go through their qgain
    root_of_add = {a: root for root, (adds, _) in groups.items() for a in adds}
    for node in src.topo():
        if node.name in alias:
            continue
        q = qnodes[node.name]
        root = root_of_add.get(node.name, node.name if node.name in groups else None)
        if root is not None:
            q.inputs = [gain_of[(i, root)].name if (i, root) in gain_of else i for i in q.inputs]
            for (leaf, r), gain in gain_of.items():
                if r == root and gain.name not in out:
                    gain.inputs = [alias.get(i, i) for i in gain.inputs]
                    out.add(gain)
        q.inputs = [alias.get(i, i) for i in q.inputs]
        out.add(q)
    out.meta.update({"integer": True, "semantics_version": SEMANTICS_VERSION,
                     "quantization": {"weight_bits": config.weight_bits, "per_channel": config.per_channel,
                                      "method": "maxabs" if dyadic else config.lowering,
                                      "scales": "power-of-two" if dyadic else scales, "bias_correction": use_bc,
                                      "threshold_aware": use_ta, "layer_bits": dict(config.layer_bits),
                                      "input_bits": config.input_bits, "input_range": in_range,
                                      "input_rule": in_rule, "mix_frac_bits": config.mix_frac_bits,
                                      "leak_frac_bits": config.leak_frac_bits,
                                      "membrane_bits": config.membrane, "default_shift": config.shift,
                                      "calibration_images": 0 if calib is None else
                                      int(calib.shape[int(calib.ndim == len(src.input.input_shape) + 2)])}})
    out.meta.setdefault("passes", []).append(f"quantize[w{config.weight_bits}]")
    return finalize(out)


def _dyadic(graph: Graph) -> bool:
    """Imported NIR graphs (and any with lif layers) lower with power-of-two scales (quantize_lif.py)."""
    return graph.meta.get("frontend") == "nir" or bool(graph.nodes_of(LIFNeuron))


def gain_exponent(ratio: np.ndarray, qmax: int) -> tuple[int, np.ndarray]:
    """The smallest exponent E with every |round(ratio / 2^E)| ≤ qmax, and those mantissas (int32)."""
    top = float(np.abs(ratio).max()) or 1.0
    e = int(np.ceil(np.log2(top / qmax))) - 1
    while np.abs(_round(ratio / 2.0 ** e)).max() > qmax:
        e += 1
    return e, _round(ratio / 2.0 ** e).astype(np.int32)


def _sum_bound(leaves) -> int:
    """Max |y| of a synaptic sum: Σ over its paths of (max |Σ w·x| after the exponent + max |bias|)."""
    total = 0
    for ql in leaves:
        scaled = ql.acc_bound << ql.shift if ql.shift >= 0 else (ql.acc_bound >> -ql.shift) + 1
        bias = getattr(ql, "bias", None)
        total += scaled + (0 if bias is None else int(np.abs(bias).max()))
    return total


def _conv_in(u: np.ndarray, conv: Conv2d) -> np.ndarray:
    """A per-element quantity of a conv input (constant over H, W, or L) as ``[Cout, Cin/groups, 1, 1]``
    (``[Cout, Cin/groups, 1]`` for a conv1d): the value of the input channel that each weight reads (grouped
    convolutions included)."""
    per_channel = u.reshape(u.shape[0], -1)[:, 0]
    cout, cin_g = conv.weight.shape[:2]
    group_of_out = np.arange(cout) // (cout // conv.groups)
    idx = group_of_out[:, None] * cin_g + np.arange(cin_g)[None, :]
    return per_channel[idx].reshape(cout, cin_g, *([1] * (conv.weight.ndim - 2)))


def _pool_unit(u: np.ndarray, out_shape) -> np.ndarray:
    return np.broadcast_to(u.reshape(u.shape[0], -1)[:, :1].reshape(-1, *([1] * (len(out_shape) - 1))), out_shape)


# The weight-free kinds quantize() lowers one to one: kind type → (node, float graph, the input's per-element
# unit and max |integer|) → (its integer node, its unit, its max |integer|; None, None: none kept, an add).
# A pool sums its window, so its max grows by the window; an average pool's unit shrinks by it, NIR's
# sum pool keeps its input's unit.
def _window(node) -> int:
    return node.kernel[0] * node.kernel[1]


def _lower_global_pool(node, src: Graph, u, m):
    hw = src.node(node.inputs[0]).shape[1] * src.node(node.inputs[0]).shape[2]
    return GlobalSumPool(node.name, list(node.inputs)), _pool_unit(u, node.shape) / hw, _pool_unit(m, node.shape) * hw


def _sum_pool(node) -> SumPool2d:
    return SumPool2d(node.name, list(node.inputs), kernel=node.kernel, stride=node.stride, padding=node.padding)


STRUCTURAL = {
    Add: lambda node, src, u, m: (Add(node.name, list(node.inputs)), None, None),
    NIRSumPool2d: lambda node, src, u, m: (_sum_pool(node), _pool_unit(u, node.shape),
                                           _pool_unit(m, node.shape) * _window(node)),
    AvgPool2d: lambda node, src, u, m: (_sum_pool(node), _pool_unit(u, node.shape) / _window(node),
                                        _pool_unit(m, node.shape) * _window(node)),
    GlobalAvgPool: _lower_global_pool,
    Flatten: lambda node, src, u, m: (Flatten(node.name, list(node.inputs)), u.reshape(-1), m.reshape(-1)),
}


# float kinds (and variants) that quantize() refuses before it starts: kind type → why (None: it lowers)
REFUSALS = {
    BatchNorm: lambda node: "fold BatchNorm before integer lowering",
    MaxPool2d: lambda node: "max-pooling has no integer lowering yet",
    LIFNeuron: lambda node: lif_gap(node),
}


def lowering_gap(node: Node) -> str | None:
    """Why the integer lowering does not cover ``node`` (its kind, or a variant of a covered kind), or None."""
    if node.kind not in LOWERED_KINDS:
        return f"the {node.kind} kind has no integer lowering yet"
    return lif_gap(node) if isinstance(node, LIFNeuron) else None


# The float node kinds the integer lowering covers (BatchNorm must be folded first; the MSAT neuron kind
# and max-pool have no integer lowering yet).
LOWERED_KINDS = frozenset({"input", "conv2d", "linear", "avgpool2d", "globalavgpool", "add", "flatten",
                           "temporal_mix", "neuron", "readout", "lif", "sum_pool2d", "scale", "conv1d"})
