"""Integer IR → Lava network description (the export side: reads lmhtc.compiler.ir/intir, knows no checkpoint).

Invariant: the description's processes compute docs/integer-semantics.md on
the graph's integers exactly — every synaptic sum fits the 24 bits that
Lava's fixed-point Conv keeps (and Loihi's dendritic accumulators hold), every
weight is an 8-bit mantissa that Lava's fixed-point Dense represents, and
exponents, biases, T-GIM, leak and saturation are applied where the contract
applies them. Anything else raises LavaExportError naming the node.

Mapping (one Lava process per row; Add, Flatten and T-GIM need none):

* qinput → ``input``; qconv2d → stock ``Conv``; qlinear → stock ``Dense``;
* qgain (identity shortcut) → stock ``Conv``, depthwise 1×1 with the gains;
* sumpool2d / globalsumpool → stock ``Conv``, depthwise all-ones kernel;
* add → the consumer's ports (one per synaptic path, summed after each path's exponent);
* qtemporal_mix + qneuron → ``LMHTLayer``; qreadout → ``IntReadout``;
* flatten → a reshaped (flattened) port, the Dense columns permuted to Lava's (X, Y, C) order.
"""
from __future__ import annotations

import numpy as np

from lmhtc.semantics import SEMANTICS_VERSION

from lmhtc.compiler.analysis.ranges import value_bounds
from lmhtc.compiler.intir import (GlobalSumPool, QConv2d, QGain, QInput, QLinear, QNeuron, QReadout, QTemporalMix,
                            SumPool2d)
from lmhtc.compiler.intir_lif import QLIF
from lmhtc.compiler.ir import Add, Flatten, Graph, Node
from lmhtc.compiler import lowering as lowering_checks
from lmhtc.compiler.lowering import LoweringError, refuse
from lmhtc.targets.lava.description import NetworkDescription, PortSpec, ProcessSpec
from lmhtc.targets.lava.errors import LavaExportError
from lmhtc.targets.lava.procs.ports import MAX_PORTS
from lmhtc.targets.lava.schedule import schedule

DENDRITE_BITS = 24            # Lava's fixed-point Conv output and Loihi's dendritic accumulator
WEIGHT_MANTISSA = 127         # 8-bit signed mantissa (Loihi; Lava's fixed-point Dense)
SYNAPTIC = (QConv2d, QLinear, QGain)
SOURCES = (QInput, QNeuron, QLIF, SumPool2d, GlobalSumPool)


def lava_shape(shape) -> tuple[int, ...]:
    """IR per-sample shape (C, H, W) → Lava (X=W, Y=H, C); vectors unchanged."""
    return (shape[2], shape[1], shape[0]) if len(shape) == 3 else tuple(shape)


def check_integer_graph(graph: Graph) -> None:
    try:
        lowering_checks.check_integer_graph(graph, "lava")
    except LoweringError as exc:
        raise LavaExportError(str(exc)) from None


class _Lowering:
    def __init__(self, graph: Graph):
        self.g = graph
        self.steps = graph.steps
        self.procs: list[ProcessSpec] = []
        self.max_value, _ = value_bounds(graph)  # largest |value| a source process emits

    def run(self) -> NetworkDescription:
        for node in self.g.topo():
            LOWERING[node.kind](self, node)
            self._check_consumers(node)      # add, flatten and qtemporal_mix become ports of their consumers
        return NetworkDescription(self.steps, self.procs, SEMANTICS_VERSION, {})

    def _port(self, node) -> None:
        """add, flatten, qtemporal_mix: no process of their own; they become ports of their consumers."""

    # -- sources and the synapses between them ------------------------------------------
    def _source(self, node: Node) -> tuple[str, bool]:
        """The process feeding synaptic ``node`` and whether its output is flattened on the way."""
        src, flatten = self.g.node(node.inputs[0]), False
        while isinstance(src, Flatten):
            src, flatten = self.g.node(src.inputs[0]), True
        if not isinstance(src, SOURCES):
            raise LavaExportError(f"node {node.name!r} ({node.kind}): its input {src.name!r} ({src.kind}) is "
                                  f"not a neuron layer, the input or a sum-pool; Lava synapses connect those only")
        return src.name, flatten and len(src.shape) == 3

    def _message_bits(self, source: str) -> int:
        """Lava's num_message_bits of a connection from ``source``: 0 for binary spikes, else graded."""
        m = self.max_value[source]
        return 0 if m <= 1 and self.g.node(source).kind in ("qneuron", "qlif") else int(m).bit_length() + 1

    def _input(self, node: QInput) -> None:
        n = int(np.prod(node.shape))
        self.procs.append(ProcessSpec(node.name, "input", lava_shape(node.shape), [],
                                      {"scale": float(node.scale), "bits": int(node.bits),
                                       "ir_shape": list(node.input_shape),
                                       "sequence": node.encoding == "sequence"},
                                      {}, [node.name], {"neurons": n, "synapses": 0}))

    def _conv(self, node) -> None:
        src, _ = self._source(node)
        src_shape = self.g.node(src).shape
        if len(src_shape) != 3:
            if isinstance(node, QGain):       # an identity shortcut between vectors: a diagonal Dense
                return self._dense(node)
            raise LavaExportError(f"node {node.name!r} ({node.kind}): expects a feature map, gets {src_shape}")
        c, h, w = src_shape
        if isinstance(node, QConv2d):
            weight, role = node.weight.astype(np.int64), "conv"
            stride, padding, dilation, groups = node.stride, node.padding, node.dilation, node.groups
            bits = node.weight_bits
        elif isinstance(node, QGain):
            weight, role = node.gain.astype(np.int64).reshape(c, 1, 1, 1), "gain"
            stride, padding, dilation, groups, bits = (1, 1), (0, 0), (1, 1), c, node.weight_bits
        else:
            k = (h, w) if isinstance(node, GlobalSumPool) else node.kernel
            stride = (1, 1) if isinstance(node, GlobalSumPool) else node.stride
            padding = (0, 0) if isinstance(node, GlobalSumPool) else node.padding
            weight, role, dilation, groups, bits = np.ones((c, 1, *k), np.int64), node.kind, (1, 1), c, 1
        self._check_weights(node, weight)
        bound = self._bound(node, src, weight)
        if bound >= 2 ** (DENDRITE_BITS - 1):
            raise LavaExportError(f"node {node.name!r} ({node.kind}): synaptic sums up to {bound} exceed the "
                                  f"{DENDRITE_BITS}-bit accumulator of Lava's fixed-point Conv (and Loihi's "
                                  f"dendrites); lower --weight-bits or the input bits")
        # (Cout, Cin/g, kh, kw) correlation → Lava (Cout, kx, ky, Cin/g), convolved: transpose and flip
        lava_w = weight.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :]
        out = lava_shape(node.shape)
        synapses = _conv_synapses((h, w), weight.shape, stride, padding, dilation, node.shape[1:])
        self.procs.append(ProcessSpec(
            node.name, "conv", out, [PortSpec(src)],
            {"input_shape": list(lava_shape(src_shape)), "stride": _xy(stride), "padding": _xy(padding),
             "dilation": _xy(dilation), "groups": int(groups), "num_message_bits": self._message_bits(src),
             "weight_bits": int(bits), "role": role, "acc_bound": int(bound)},
            {"weight": np.ascontiguousarray(lava_w).astype(np.int32)}, [node.name],
            _synapse_resources(synapses, weight.size, bits)))

    def _dense(self, node) -> None:
        src, flatten = self._source(node)
        if isinstance(node, QGain):
            weight = np.diag(node.gain.astype(np.int64))
        else:
            weight = node.weight.astype(np.int64)
        self._check_weights(node, weight)
        src_shape = self.g.node(src).shape
        if flatten:    # IR flattens (C, H, W) in C order; the Lava port flattens (X, Y, C) in C order
            ir_index = np.arange(int(np.prod(src_shape))).reshape(src_shape)
            weight = weight[:, ir_index.transpose(2, 1, 0).ravel()]
        bound = self._bound(node, src, weight)
        if bound >= 2 ** (DENDRITE_BITS - 1):
            raise LavaExportError(f"node {node.name!r} ({node.kind}): synaptic sums up to {bound} exceed the "
                                  f"{DENDRITE_BITS}-bit dendritic accumulator; lower --weight-bits")
        self.procs.append(ProcessSpec(
            node.name, "dense", lava_shape(node.shape), [PortSpec(src, 0, flatten)],
            {"num_message_bits": self._message_bits(src), "weight_bits": int(node.weight_bits),
             "acc_bound": int(bound)},
            {"weight": weight.astype(np.int32)}, [node.name],
            _synapse_resources(int(np.count_nonzero(weight)), weight.size, node.weight_bits)))

    def _check_weights(self, node, weight: np.ndarray) -> None:
        if getattr(node, "weight_bits", 8) > 8 or np.abs(weight).max(initial=0) > WEIGHT_MANTISSA:
            raise LavaExportError(f"node {node.name!r} ({node.kind}): {getattr(node, 'weight_bits', '?')}-bit "
                                  f"weights; Loihi synapses and Lava's fixed-point Dense hold 8-bit mantissas "
                                  f"(|w| <= {WEIGHT_MANTISSA}); compile with --weight-bits 8 or less")

    def _bound(self, node, src: str, weight: np.ndarray) -> int:
        """Max |Σ w·x| (the larger of the compiler's range analysis and Σ|w|·max|x| over a fan-in)."""
        fan_in = np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1).max(initial=0)
        return max(int(getattr(node, "acc_bound", 0)), int(fan_in) * self.max_value[src])

    # -- neuron layers and the readout ----------------------------------------------------
    def _sink(self, node) -> None:
        mix = None
        sum_node = self.g.node(node.inputs[0])
        if isinstance(sum_node, QTemporalMix):
            mix, sum_node = sum_node, self.g.node(sum_node.inputs[0])
        leaves = self._leaves(sum_node, node)
        if len(leaves) > MAX_PORTS:
            raise LavaExportError(f"node {node.name!r} ({node.kind}): sums {len(leaves)} synaptic paths; the "
                                  f"Lava processes take at most {MAX_PORTS}")
        channels = node.shape[0]
        bias = np.zeros(channels, np.int64)
        for leaf in leaves:
            if getattr(leaf, "bias", None) is not None:
                bias += leaf.bias.astype(np.int64)
        ports = [PortSpec(leaf.name, int(leaf.shift)) for leaf in leaves]
        ir_nodes = [n.name for n in (mix, node) if n is not None]
        if isinstance(node, QReadout):
            self.procs.append(ProcessSpec(node.name, "readout", tuple(node.shape), ports, {},
                                          {"bias": bias, "scale": np.asarray(node.scale, np.float64)}, ir_nodes,
                                          {"neurons": int(channels), "synapses": 0}))
            return
        if node.input_scale != 1 or node.reset != "soft":
            raise LavaExportError(f"node {node.name!r} (qneuron): input_scale must be 1 and reset soft in an "
                                  f"integer network")
        n = int(np.prod(node.shape))
        arrays = {"threshold": _per_channel(node.threshold, channels), "v_init": _per_channel(node.v_init, channels),
                  "bias": bias, "leak": np.asarray(node.leak, np.int64)}
        if mix is not None:
            arrays["omega"] = np.asarray(mix.omega, np.int64)
        self.procs.append(ProcessSpec(
            node.name, "layer", lava_shape(node.shape), ports,
            {"levels": int(node.levels), "frac_bits": int(mix.frac_bits) if mix is not None else 0,
             "leak_frac_bits": int(node.leak_frac_bits), "membrane_bits": int(node.membrane_bits),
             "ir_shape": list(node.shape)},
            arrays, ir_nodes,
            {"neurons": n, "synapses": 0, "membrane_bits": int(node.membrane_bits),
             "state_bits": n * int(node.membrane_bits), "tgim_buffer_words": 2 * self.steps * n}))

    def _lif(self, node: QLIF) -> None:
        """qlif → ``LIFLayer``: per-neuron arrays in the Lava layout, the synaptic bias per channel."""
        leaves = self._leaves(self.g.node(node.inputs[0]), node)
        if len(leaves) > MAX_PORTS:
            raise LavaExportError(f"node {node.name!r} (qlif): sums {len(leaves)} synaptic paths; the Lava "
                                  f"processes take at most {MAX_PORTS}")
        if not node.spiking:
            raise LavaExportError(f"target 'lava' cannot lower node {node.name!r} (qlif): a non-spiking "
                                  f"integrator sends its membrane, wider than the 24-bit graded spikes of a Lava port")
        if node.out_bound() >= 2 ** 23:
            raise LavaExportError(f"target 'lava' cannot lower node {node.name!r} (qlif): up to "
                                  f"{node.out_bound()} spikes per step exceed the 24-bit graded spikes of a Lava port")
        bias = np.zeros(node.shape[0], np.int64)
        for leaf in leaves:
            if getattr(leaf, "bias", None) is not None:
                bias += leaf.bias.astype(np.int64)
        arrays = {("bias_v" if k == "bias" else k): _to_lava(getattr(node, k))
                  for k in ("beta", "alpha", "bias", "threshold", "v_reset", "v_min", "v_init")
                  if getattr(node, k) is not None}
        options = {k: v for k, v in node.step_params().items() if not isinstance(v, np.ndarray) and v is not None}
        n = int(np.prod(node.shape))
        self.procs.append(ProcessSpec(
            node.name, "lif", lava_shape(node.shape), [PortSpec(leaf.name, int(leaf.shift)) for leaf in leaves],
            {"options": options, "ir_shape": list(node.shape), "membrane_bits": int(node.membrane_bits)},
            {"bias": bias, **arrays}, [node.name],
            {"neurons": n, "synapses": 0, "membrane_bits": int(node.membrane_bits),
             "state_bits": n * int(node.membrane_bits) * (2 if node.alpha is not None else 1),
             "tgim_buffer_words": 2 * self.steps * n}))

    def _leaves(self, node: Node, sink: Node) -> list[Node]:
        if isinstance(node, Add):
            return [leaf for i in node.inputs for leaf in self._leaves(self.g.node(i), sink)]
        if isinstance(node, SYNAPTIC):
            return [node]
        raise LavaExportError(f"node {sink.name!r} ({sink.kind}): its input {node.name!r} ({node.kind}) is not a "
                              f"sum of synaptic layers; the Lava mapping needs synapses in front of every layer")

    def _check_consumers(self, node: Node) -> None:
        """A synaptic output may only reach neurons or the readout (through adds and T-GIM)."""
        if isinstance(node, SYNAPTIC + (Add,)):
            for c in self.g.consumers(node.name):
                if not isinstance(c, (Add, QTemporalMix, QNeuron, QLIF, QReadout)):
                    raise LavaExportError(f"node {c.name!r} ({c.kind}): takes the synaptic output of "
                                          f"{node.name!r}; Lava synapses feed neurons only")


def _to_lava(a: np.ndarray) -> np.ndarray:
    """A per-neuron IR array (C, H, W) in Lava's (X, Y, C) layout; vectors unchanged."""
    a = np.asarray(a, np.int64)
    return np.ascontiguousarray(a.transpose(2, 1, 0)) if a.ndim == 3 else a


def _xy(pair) -> list[int]:
    """An IR (h, w) pair in Lava's (x, y) order."""
    return [int(pair[1]), int(pair[0])]


def _per_channel(arr, channels: int) -> np.ndarray:
    a = np.asarray(arr, np.int64).reshape(-1)
    return np.full(channels, a[0], np.int64) if a.size == 1 else a


def _taps(size: int, out: int, k: int, s: int, p: int, d: int) -> int:
    """Σ over output positions of the kernel taps that land inside the input (not on zero padding)."""
    pos = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d - p
    return int(((pos >= 0) & (pos < size)).sum())


def _conv_synapses(in_hw, wshape, stride, padding, dilation, out_hw) -> int:
    cout, cin_g, kh, kw = wshape
    return cout * cin_g * _taps(in_hw[0], out_hw[0], kh, stride[0], padding[0], dilation[0]) * \
        _taps(in_hw[1], out_hw[1], kw, stride[1], padding[1], dilation[1])


def _synapse_resources(synapses: int, weights: int, bits: int) -> dict:
    return {"neurons": 0, "synapses": int(synapses), "weights": int(weights), "weight_bits": int(bits),
            "synaptic_memory_bits": int(synapses) * int(bits), "shared_weight_memory_bits": int(weights) * int(bits)}


def lower_to_lava(graph: Graph) -> NetworkDescription:
    """The Lava network description of an integer graph, with resources and schedule figures."""
    check_integer_graph(graph)
    desc = _Lowering(graph).run().validate("lowering")
    sched = schedule(desc)
    for p in desc.processes:
        if p.kind in ("layer", "lif", "readout"):
            p.resources["port_delays"] = sched.delays[p.name]
            p.resources["delay_line_words"] = sum(sched.delays[p.name]) * int(np.prod(p.shape))
    desc.meta.update({"levels": graph.meta.get("reparam_levels", 1), "latency_steps": sched.latency,
                      "period_steps": sched.period, "quantization": graph.meta.get("quantization", {})})
    return desc


def resource_totals(desc: NetworkDescription) -> dict:
    keys = ("neurons", "synapses", "synaptic_memory_bits", "shared_weight_memory_bits", "state_bits",
            "tgim_buffer_words", "delay_line_words")
    return {k: int(sum(p.resources.get(k, 0) for p in desc.processes)) for k in keys} | \
        {"processes": len(desc.processes)}


# The Lava target's lowering table: node kind → _Lowering method (processes and their connections).
LOWERING = {
    "qinput": _Lowering._input,
    "qconv2d": _Lowering._conv, "qgain": _Lowering._conv, "sumpool2d": _Lowering._conv,
    "globalsumpool": _Lowering._conv,
    "qlinear": _Lowering._dense,
    "qconv1d": refuse("Lava's Conv is 2-D and the Lava mapping has no (C, L) layout for a 1-D convolution's "
                      "input and output"),
    "qneuron": _Lowering._sink, "qreadout": _Lowering._sink, "qlif": _Lowering._lif,
    "add": _Lowering._port, "flatten": _Lowering._port, "qtemporal_mix": _Lowering._port,
    "maxpool2d": refuse("max-pool is not a synaptic (linear) operation; Lava's Conv/Dense cannot express it"),
}
