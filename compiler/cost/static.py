"""Static cost pass: what a network costs before it sees any data.

Per layer (a neuron layer or the readout, with the synaptic units that feed
it) and in total:

* ``neurons``; ``synapses`` — connections, Σ over each unit's input positions of
  their fan-out (zero padding excluded); ``parameters`` — stored weights, biases
  and integer shortcut gains;
* ``ann_macs`` — multiply-accumulates of one pass of the equivalent ANN (the
  same conv/linear layers on analog values, once, not × steps:
  Cout·Cin/groups·kh·kw·Hout·Wout per conv, in·out per linear);
* ``worst_case_sops`` — synaptic operations per image if every source neuron
  emitted its largest level at every step (steps × levels × Σ fan-out); the
  analog-input layer's MACs are separate (``analog_macs``, once per distinct
  input frame; ``analog_macs_per_step`` is the × steps count much of the
  literature uses);
* memory footprint: weights (and biases, gains) and neuron state (membranes)
  at the integer widths of an integer graph, or as float32.

Invariant: a function of the graph alone. Reparameterization keeps
``worst_case_sops`` (L levels × T steps become 1 level × L·T steps) and
``ann_macs``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..ir import Graph
from .fanout import CostGraph, SynapticUnit, cost_graph

FLOAT_BITS = 32


@dataclass
class UnitStatic:
    name: str
    kind: str
    target: str
    analog: bool
    sources: list[str]
    fan_in: int
    synapses: int
    ann_macs: int
    worst_case_sops: int
    analog_macs: int                 # per image (once per distinct input frame)
    analog_macs_per_step: int        # × steps
    weight_bits: int | None


@dataclass
class LayerStatic:
    name: str
    kind: str                        # neuron | readout
    shape: list[int]
    neurons: int
    outputs: int
    levels: int
    units: list[str]
    fan_in: int                      # inputs per neuron, all units together
    synapses: int
    parameters: int
    ann_macs: int
    worst_case_sops: int
    analog_macs: int
    analog_macs_per_step: int
    weight_bits: int | None          # widest weight mantissa into the layer (None: float32)
    membrane_bits: int | None
    weight_memory_bytes: float
    state_memory_bytes: float


@dataclass
class StaticCosts:
    integer: bool
    steps: int
    levels: int                      # largest spike level of any neuron
    input_frames: int
    layers: list[LayerStatic]
    units: list[UnitStatic] = field(default_factory=list)

    def totals(self) -> dict:
        keys = ("neurons", "synapses", "parameters", "ann_macs", "worst_case_sops", "analog_macs",
                "analog_macs_per_step", "weight_memory_bytes", "state_memory_bytes")
        return {k: sum(getattr(layer, k) for layer in self.layers) for k in keys}

    def layer(self, name: str) -> LayerStatic:
        return next(layer for layer in self.layers if layer.name == name)

    def to_json(self) -> dict:
        return {"integer": self.integer, "steps": self.steps, "levels": self.levels,
                "input_frames": self.input_frames, "totals": self.totals(),
                "layers": [asdict(layer) for layer in self.layers], "units": [asdict(u) for u in self.units]}


def _unit_static(cg: CostGraph, u: SynapticUnit) -> UnitStatic:
    worst = sum(cg.steps * cg.sources[s].levels * int(f.sum()) for s, f in u.fanout.items())
    frames = cg.input_frames if u.analog else 0
    return UnitStatic(name=u.name, kind=u.kind, target=u.target, analog=u.analog, sources=sorted(u.fanout),
                      fan_in=u.fan_in, synapses=u.synapses, ann_macs=u.ann_macs, worst_case_sops=worst,
                      analog_macs=u.ann_macs * frames, analog_macs_per_step=u.ann_macs * cg.steps if u.analog else 0,
                      weight_bits=u.weight_bits)


def _membrane_bits(graph: Graph, name: str) -> int | None:
    if not graph.meta.get("integer"):
        return None
    node = graph.node(name)
    return int(getattr(node, "membrane_bits", None) or graph.meta.get("quantization", {}).get("membrane_bits", 24))


def static_costs(graph: Graph, cg: CostGraph | None = None) -> StaticCosts:
    """Per-layer and total static costs of ``graph`` (float or integer)."""
    cg = cg or cost_graph(graph)
    units = {u.name: _unit_static(cg, u) for u in cg.units}
    raw = {u.name: u for u in cg.units}
    layers = []
    for layer in cg.layers:
        us = [units[n] for n in layer.units]
        rs = [raw[n] for n in layer.units]
        mbits = _membrane_bits(graph, layer.name)
        wbits = max((u.weight_bits for u in rs if u.weight_bits is not None), default=None)
        if cg.integer:
            weight_bits = sum(u.weights * (u.weight_bits or FLOAT_BITS) + u.biases * mbits for u in rs)
            state_bits = layer.outputs * mbits
        else:
            weight_bits = sum((u.weights + u.biases) * FLOAT_BITS for u in rs)
            state_bits = layer.outputs * FLOAT_BITS
        layers.append(LayerStatic(
            name=layer.name, kind=layer.kind, shape=list(layer.shape), neurons=layer.neurons,
            outputs=layer.outputs, levels=layer.levels, units=list(layer.units),
            fan_in=sum(u.fan_in for u in us), synapses=sum(u.synapses for u in us),
            parameters=sum(u.weights + u.biases for u in rs), ann_macs=sum(u.ann_macs for u in us),
            worst_case_sops=sum(u.worst_case_sops for u in us), analog_macs=sum(u.analog_macs for u in us),
            analog_macs_per_step=sum(u.analog_macs_per_step for u in us), weight_bits=wbits, membrane_bits=mbits,
            weight_memory_bytes=weight_bits / 8, state_memory_bytes=state_bits / 8))
    levels = max((s.levels for s in cg.sources.values()), default=1)
    return StaticCosts(integer=cg.integer, steps=cg.steps, levels=levels, input_frames=cg.input_frames,
                       layers=layers, units=list(units.values()))
