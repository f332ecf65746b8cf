"""Event fan-out of a network's synaptic layers: what one spike event costs, layer by layer.

A *synaptic unit* is a node that carries weights — ``conv2d``/``linear`` (float
or integer) and the integer ``qgain`` — or, in a float graph, an identity
shortcut: a spiking value added into a residual sum without weights (the float
form of ``qgain``, named as the integer lowering names it,
``<leaf>.gain.<root>``). Every unit feeds one *layer*: a neuron layer or the
readout.

An *event source* is a neuron, or a max-pool of spikes (its output is again a
spike count). For every unit and every source that reaches it, ``fanout[source]``
is an integer map over the source's output positions: the number of the unit's
outputs that one unit of that source's output (a level-1 spike) reaches. Linear
nodes between the source and the unit are folded in (docs/design.md §4,
the SOP conventions): an avg-/sum-pool's input position reaches every
pooled position whose window covers it, each with the unit's fan-out there; a
global pool broadcasts the fan-out of its single position; flatten reshapes;
an add passes the map to both of its inputs.

Invariant: for spike counts k of the sources, ``Σ_source Σ_p k[p]·fanout[source][p]``
equals the runtime's count ``Σ_q x[q]·fanout(q)`` over the unit's own input x
(docs/integer-semantics.md, "Spike events and synaptic operations"), because
x is the sum-pool of k and the fold is that sum's transpose. A unit fed by the
analog input (``analog``) does MACs, not SOPs; it has no fan-out maps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..analysis.cover import conv_cover, fold_through_pool
from ..analysis.groups import group_root
from ..analysis.spikes import spike_fed, spike_sources
from ..errors import LmhtcError
from ..intir import QGain
from ..intir_conv1d import conv2d_view
from ..nir_ops import Conv1dBase
from ..ir import (Add, BatchNorm, ConvBase, Flatten, GlobalPoolBase, Graph, LinearBase, MaxPool2d, NeuronBase, Node,
                  PoolBase, ReadoutBase, is_spiking)
from ..type_rules import rule_for


def _rule(table: dict, node: Node):
    """The entry of ``table`` for ``node``'s type or its nearest base (the float and integer kinds of one
    geometry share a base, so one entry covers both phases); None when no entry applies."""
    return rule_for(table, node)


class CostError(LmhtcError):
    """A graph whose synaptic operations cannot be counted; the message names the node."""


@dataclass
class SynapticUnit:
    name: str                       # the runtime's synaptic layer name
    kind: str                       # conv2d | linear | identity
    node: str | None                # the IR node holding the weights (None: float identity shortcut)
    target: str                     # the neuron layer or readout it feeds
    analog: bool                    # fed by the analog input: counted as MACs
    fan_in: int                     # inputs per output (the largest, for a conv: Cin/groups·kh·kw)
    synapses: int                   # connections: Σ over the unit's input positions of their fan-out
    ann_macs: int                   # one pass of the equivalent ANN (0 for an identity shortcut)
    weights: int                    # stored weight values (gains for a qgain)
    biases: int
    weight_bits: int | None         # integer mantissa width (None in a float graph)
    fanout: dict[str, np.ndarray] = field(default_factory=dict)   # source → int64 map over its output


@dataclass
class Source:
    name: str
    neuron: str                     # the neuron whose spikes it carries (itself, or the max-pool's input neuron)
    threshold: float | None         # float θ of that neuron: an output k·θ is k events (None: binary, output ≠ 0
                                    # is one event); unused in integer graphs, whose outputs are counts
    levels: int


@dataclass
class Layer:
    name: str                       # neuron or readout node
    kind: str                       # neuron | readout
    shape: tuple[int, ...]
    neurons: int                    # 0 for the readout
    outputs: int                    # values it holds per step (neurons, or the readout's accumulators)
    levels: int                     # spike levels of its neurons (0 for the readout)
    units: list[str] = field(default_factory=list)


@dataclass
class CostGraph:
    """The synaptic structure of a graph as the cost passes see it."""
    steps: int
    integer: bool
    input_frames: int               # distinct analog frames per image (1: direct encoding)
    layers: list[Layer]
    units: list[SynapticUnit]
    sources: dict[str, Source]      # every neuron layer, and every other node whose output units consume
    meta: dict

    def spiking_units(self) -> list[SynapticUnit]:
        return [u for u in self.units if not u.analog]


# -- fan-out maps -------------------------------------------------------------------------

def unit_input_fanout(node: Node, in_shape: tuple[int, ...]) -> np.ndarray:
    """The fan-out of each position of a synaptic node's own input: outputs reached per unit of input
    (a conv1d's: its 2-D view's on (C, 1, L))."""
    rule = _rule(UNIT_FANOUT, node)
    if rule is None:
        raise CostError(f"node {node.name!r} ({node.kind}): the cost passes have no fan-out rule for this kind")
    return rule(node, in_shape)


def _conv_fanout(node: ConvBase, in_shape) -> np.ndarray:
    cout, _, kh, kw = node.weight.shape
    cover = conv_cover(node.shape[1:], in_shape[1:], (kh, kw), node.stride, node.padding, node.dilation)
    return np.broadcast_to(cover * (cout // node.groups), in_shape).copy()


# per-kind fan-out of a synaptic node's input positions: outputs reached per unit of input
UNIT_FANOUT = {
    Conv1dBase: lambda node, in_shape: unit_input_fanout(conv2d_view(node),
                                                         (in_shape[0], 1, in_shape[1])).reshape(in_shape),
    ConvBase: _conv_fanout,
    LinearBase: lambda node, in_shape: np.full(in_shape, node.weight.shape[0], dtype=np.int64),
    QGain: lambda node, in_shape: np.ones(in_shape, dtype=np.int64),      # identity: fan-out 1
}


def _fold(graph: Graph, name: str, fmap: np.ndarray, acc: dict[str, np.ndarray], unit: str) -> None:
    """Carry ``fmap`` (over node ``name``'s output) back through linear nodes to the event sources."""
    node = graph.node(name)
    if is_spiking(node) or isinstance(node, MaxPool2d):
        acc[name] = acc[name] + fmap if name in acc else fmap
        return
    if isinstance(node, Add):
        for src in node.inputs:
            _fold(graph, src, fmap, acc, unit)
        return
    src_shape = graph.node(node.inputs[0]).shape if node.inputs else None
    rule = _rule(FOLD_BACK, node)
    if rule is None:     # a temporal mix, a neuron-free input path or any other node
        raise CostError(f"node {name!r} ({node.kind}) lies between spikes and synaptic layer {unit!r}; "
                        f"SOPs are defined through linear pooling, flatten and adds only")
    _fold(graph, node.inputs[0], rule(node, fmap, src_shape), acc, unit)


# per-kind fold of a fan-out map over a linear node's output back to its input (pools of both phases)
FOLD_BACK = {
    PoolBase: lambda node, fmap, src: fold_through_pool(fmap, src, node.kernel, node.stride, node.padding),
    GlobalPoolBase: lambda node, fmap, src: np.broadcast_to(fmap.reshape(-1, 1, 1), src).copy(),
    Flatten: lambda node, fmap, src: fmap.reshape(src),
    BatchNorm: lambda node, fmap, src: fmap,
}


# -- spiking nodes and event sources ----------------------------------------------------------------

def _fed_by_spikes(graph: Graph, name: str) -> bool:
    """True when spikes reach ``name``, False when the analog input does; an error when both do
    (analysis/spikes.py's ``spike_fed``, the analysis the validator and the runtime use)."""
    return spike_fed(graph, name, lambda n: CostError(
        f"node {n!r} mixes the analog input with spikes; its operations are neither SOPs nor MACs"))


def _source(graph: Graph, name: str) -> Source:
    """The event source ``name``: a neuron layer (its θ and levels), or a max-pool of one neuron layer's spikes."""
    node = graph.node(name)
    if not is_spiking(node):
        ups = spike_sources(graph, name)
        if len(ups) != 1 or not is_spiking(graph.node(next(iter(ups)))):
            raise CostError(f"node {name!r} ({node.kind}) pools values that are not the spikes of one neuron layer")
        node = graph.node(next(iter(ups)))
    threshold = getattr(node, "threshold", None) if isinstance(node, NeuronBase) else None
    theta = None if threshold is None else float(np.asarray(threshold).reshape(-1)[0])
    if node.counts_spikes:   # outputs spike counts themselves (several per step with multi_spike)
        theta = 1.0
    return Source(name, node.name, theta, int(getattr(node, "levels", 1)))


# -- structure ------------------------------------------------------------------------------

def _follow(graph: Graph, cur: Node, stop, what: str) -> Node:
    """Walk from ``cur`` through single consumers until ``stop(node)``; a node with several consumers is an
    error (``what`` says which sum must feed one neuron layer or the readout)."""
    while not stop(cur):
        consumers = graph.consumers(cur.name)
        if len(consumers) != 1:
            raise CostError(f"node {cur.name!r} ({cur.kind}) feeds {len(consumers)} nodes; each {what} "
                            f"must feed one neuron layer or the readout")
        cur = consumers[0]
    return cur


def _target(graph: Graph, name: str) -> Node:
    """The neuron layer or readout that the output of ``name`` reaches (through adds, mixes, pools)."""
    return _follow(graph, graph.node(name), lambda n: is_spiking(n) or isinstance(n, ReadoutBase), "synaptic sum")


def _group_root(graph: Graph, add: Add) -> Node:
    """The first node after a tree of adds (the T-GIM or readout the integer lowering groups by):
    analysis/groups.py's ``group_root``, the grouping the window plan and the lowering use."""
    return group_root(graph, add, CostError)


def _identity_leaves(graph: Graph) -> list[tuple[str, Add, Node]]:
    """Float identity shortcuts: (leaf, add, group root) for add inputs that carry spikes without weights."""
    out = []
    for add in graph.nodes_of(Add):
        for src in add.inputs:
            node = graph.node(src)
            if isinstance(node, Add) or node.synaptic:
                continue
            if not is_spiking(node) and not _fed_by_spikes(graph, src):
                raise CostError(f"node {add.name!r} (add) adds the analog input {src!r} without weights")
            out.append((src, add, _group_root(graph, add)))
    return out


def _weights(node: Node) -> tuple[int, int, int | None]:
    if isinstance(node, QGain):
        return int(node.gain.size), 0, int(node.weight_bits)
    bias = 0 if getattr(node, "bias", None) is None else int(node.bias.size)
    return int(node.weight.size), bias, getattr(node, "weight_bits", None)


def _ann_macs(node: Node) -> tuple[int, int]:
    """(MACs of one pass, fan-in per output) of a conv/linear node."""
    rule = _rule(ANN_MACS, node)
    return (0, 1) if rule is None else rule(node)


ANN_MACS = {
    Conv1dBase: lambda node: _ann_macs(conv2d_view(node)),
    ConvBase: lambda node: (node.synapses(), int(np.prod(node.weight.shape[1:]))),
    LinearBase: lambda node: (node.synapses(), int(node.weight.shape[1])),
}
UNIT_KIND = {QGain: "identity", ConvBase: "conv2d", Conv1dBase: "conv1d", LinearBase: "linear"}


def cost_graph(graph: Graph) -> CostGraph:
    """The synaptic units, event sources, fan-out maps and layers of ``graph`` (float or integer)."""
    integer = bool(graph.meta.get("integer"))
    units: list[SynapticUnit] = []
    specs = []      # (unit name, kind, weight node, input, target, node it is placed at)
    for node in graph.topo():
        if node.synaptic:
            kind = _rule(UNIT_KIND, node) or "linear"
            specs.append((node.name, kind, node, node.inputs[0], _target(graph, node.name), node.name))
    if not integer:
        for leaf, add, root in _identity_leaves(graph):
            specs.append((f"{leaf}.gain.{root.name}", "identity", None, leaf, _target(graph, add.name), add.name))
    # units in the order the integer lowering places them (an identity shortcut's qgain just before its add)
    order = {n.name: i for i, n in enumerate(graph.topo())}
    specs.sort(key=lambda sp: order[sp[5]] - (0.5 if sp[2] is None else 0.0))
    for name, kind, node, inp, target, _ in specs:
        in_shape = graph.node(inp).shape
        analog = node is not None and not _fed_by_spikes(graph, node.name)
        own = unit_input_fanout(node, in_shape) if node is not None else np.ones(in_shape, dtype=np.int64)
        fanout: dict[str, np.ndarray] = {}
        if not analog:
            _fold(graph, inp, own, fanout, name)
        macs, fan_in = _ann_macs(node) if node is not None else (0, 1)
        weights, biases, bits = _weights(node) if node is not None else (0, 0, None)
        units.append(SynapticUnit(name=name, kind=kind, node=None if node is None else node.name,
                                  target=target.name, analog=analog, fan_in=fan_in, synapses=int(own.sum()),
                                  ann_macs=macs, weights=weights, biases=biases, weight_bits=bits, fanout=fanout))
    names = [n.name for n in graph.topo() if is_spiking(n)] + [s for u in units for s in u.fanout]
    sources = {name: _source(graph, name) for name in dict.fromkeys(names)}
    layers = []
    for node in graph.topo():
        if is_spiking(node) or isinstance(node, ReadoutBase):
            n = int(np.prod(node.shape))
            neuron = is_spiking(node)
            layers.append(Layer(node.name, "neuron" if neuron else "readout", tuple(node.shape),
                                n if neuron else 0, n, int(getattr(node, "levels", 1)) if neuron else 0,
                                [u.name for u in units if u.target == node.name]))
    encoding = graph.input.encoding
    return CostGraph(steps=graph.steps, integer=integer, input_frames=1 if encoding == "direct" else graph.steps,
                     layers=layers, units=units, sources=sources, meta=dict(graph.meta))
