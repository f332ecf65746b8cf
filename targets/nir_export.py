"""NIR target: an lmhtc float graph → a ``nir.NIRGraph`` (written with ``nir.write``, HDF5).

Only graphs NIR 1.0 expresses exactly are exported: imported graphs (the ``lif``
kind, through the dialect that imported them, stored in the graph's metadata
with its reset and comparison) and single-level soft-reset IR neurons with a
constant leak and no T-GIM (exported in the ``generic`` dialect with dt = 1 as
LIF → Scale(θ), since the IR neuron outputs θ per spike). Anything else raises
an ExportError naming the node and what NIR 1.0 cannot express. NIR's own
reset is hard and its spike test is v > θ; a graph with reset "subtract" or
v ≥ θ records that in the metadata, which only lmhtc's importer reads back.
"""
from __future__ import annotations

import numpy as np

from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.frontends.nir_dialects import Dialect, export_params, make_dialect
from lmhtc.compiler.ir import AvgPool2d, Graph, Neuron
from lmhtc.compiler.lif_node import LIFNeuron
from lmhtc.compiler.lowering import LoweringError, check_lowerable, refuse


class NIRExportError(LmhtcError):
    """The graph holds something NIR 1.0 cannot express; the message names the node."""


def _dialect(graph: Graph) -> Dialect:
    meta = graph.meta
    if meta.get("frontend") == "nir":
        return make_dialect(meta["dialect"], meta["dt"], None)
    return make_dialect("generic", 1.0, None)


def _neuron_as_lif(node: Neuron) -> LIFNeuron:
    where = f"node {node.name!r} ({node.kind})"
    if node.levels != 1:
        raise NIRExportError(f"{where}: {node.levels}-level spikes; NIR 1.0 neurons emit one level")
    leak = np.asarray(node.leak, np.float64)
    if not np.all(leak == leak[0]):
        raise NIRExportError(f"{where}: a time-varying leak; NIR 1.0 has constant time constants")
    if node.v_init != 0:
        raise NIRExportError(f"{where}: initial membrane {node.v_init}·θ; NIR 1.0 neurons start at 0")
    one = np.ones(node.shape)
    return LIFNeuron(node.name, node.inputs, shape=node.shape, beta=leak[0] * one, scale=node.input_scale * one,
                     bias=0 * one, threshold=np.asarray(node.threshold, np.float64) * one, v_reset=0 * one,
                     reset="subtract", compare=">=")


def _lif_nodes(node: LIFNeuron, d: Dialect) -> dict:
    import nir

    beta, scale, bias = (np.asarray(a, np.float64) for a in (node.beta, node.scale, node.bias))
    if node.spiking and node.reset == "zero" and np.all(beta == 0) and np.all(scale == 1) and np.all(bias == 0) \
            and np.all(np.asarray(node.v_reset) == 0) and node.reset_timing == "same-step":
        return {node.name: nir.Threshold(np.broadcast_to(node.threshold, node.shape).astype(np.float32))}
    kind, arrays = export_params(d, node)
    arrays = {k: np.broadcast_to(v, node.shape).astype(np.float32) for k, v in arrays.items()}
    return {node.name: getattr(nir, kind)(**arrays)}


class _Ctx:
    """The NIR graph being built: nodes, edges and the resets and comparisons its neurons use."""

    def __init__(self, graph: Graph, d: Dialect):
        self.graph, self.d = graph, d
        self.nodes, self.edges = {}, []
        self.sums: dict[str, list[str]] = {}   # an IR add → the NIR nodes it sums (NIR sums the edges into a node)
        self.srcs: list[str] = []              # the NIR sources of the node being lowered
        self.resets, self.compares = set(), set()


def _input(ctx, node, nir):
    ctx.nodes[node.name] = nir.Input(input_type={"input": np.array(node.input_shape)})


def _readout(ctx, node, nir):
    ctx.nodes[node.name] = nir.Output(output_type={"output": np.array(node.shape)})


def _linear(ctx, node, nir):
    w = np.asarray(node.weight, np.float32)
    ctx.nodes[node.name] = nir.Linear(w) if node.bias is None else nir.Affine(w, np.asarray(node.bias, np.float32))


def _conv2d(ctx, node, nir):
    cin_shape = ctx.graph.node(node.inputs[0]).shape
    bias = np.zeros(node.weight.shape[0], np.float32) if node.bias is None else node.bias
    ctx.nodes[node.name] = nir.Conv2d(input_shape=tuple(cin_shape[1:]), weight=np.asarray(node.weight, np.float32),
                                      stride=node.stride, padding=node.padding, dilation=node.dilation,
                                      groups=node.groups, bias=np.asarray(bias, np.float32))


def _conv1d(ctx, node, nir):
    bias = np.zeros(node.weight.shape[0], np.float32) if node.bias is None else node.bias
    ctx.nodes[node.name] = nir.Conv1d(input_shape=ctx.graph.node(node.inputs[0]).shape[1],
                                      weight=np.asarray(node.weight, np.float32), stride=node.stride,
                                      padding=node.padding, dilation=node.dilation, groups=node.groups,
                                      bias=np.asarray(bias, np.float32))


def _pool(ctx, node, nir):
    cls = nir.AvgPool2d if isinstance(node, AvgPool2d) else nir.SumPool2d
    ctx.nodes[node.name] = cls(kernel_size=np.array(node.kernel), stride=np.array(node.stride),
                               padding=np.array(node.padding))


def _flatten(ctx, node, nir):
    ctx.nodes[node.name] = nir.Flatten(input_type={"input": np.array(ctx.graph.node(node.inputs[0]).shape)},
                                       start_dim=0, end_dim=-1)


def _scale(ctx, node, nir):
    ctx.nodes[node.name] = nir.Scale(np.broadcast_to(node.scale, node.shape).astype(np.float32))


_NO_NODE = object()


def _add(ctx, node, nir):
    """NIR sums the edges into a node: an IR add has no NIR node; its consumers get its sources' edges."""
    if len(set(ctx.srcs)) != len(ctx.srcs):
        raise NIRExportError(f"node {node.name!r} ({node.kind}): adds a value to itself; NIR's summed edges cannot "
                             f"express that")
    ctx.sums[node.name] = ctx.srcs
    return _NO_NODE


def _neuron(ctx, node, nir):   # an IR neuron becomes LIF → Scale(θ)
    head = f"{node.name}_lif"
    ctx.nodes[head] = _lif_nodes(_neuron_as_lif(node), ctx.d)[node.name]
    ctx.nodes[node.name] = nir.Scale(np.broadcast_to(np.asarray(node.threshold, np.float32), node.shape).copy())
    ctx.edges.append((head, node.name))
    ctx.resets.add("subtract"), ctx.compares.add(">=")


def _lif(ctx, node, nir):
    where = f"node {node.name!r} ({node.kind})"
    if node.v_min is not None:
        raise NIRExportError(f"{where}: a membrane floor (v_min); NIR 1.0 cannot express it")
    ctx.nodes.update(_lif_nodes(node, ctx.d))
    if node.spiking:
        ctx.resets.add(node.reset), ctx.compares.add(node.compare)
    if node.reset_timing != ctx.d.reset_timing and node.spiking:
        raise NIRExportError(f"{where}: reset timing {node.reset_timing!r} differs from the {ctx.d.name} dialect's")


def to_nir(graph: Graph):
    """The NIRGraph of ``graph`` plus metadata {dialect, dt, reset, compare}; raises NIRExportError."""
    import nir

    if graph.meta.get("quantization") is not None or graph.meta.get("integer"):
        raise NIRExportError("this is an integer network; the NIR target exports float graphs")
    try:
        table = check_lowerable(graph, "nir")
    except LoweringError as exc:
        raise NIRExportError(str(exc)) from None
    ctx = _Ctx(graph, _dialect(graph))
    for node in graph.topo():
        ctx.srcs = [t for src in node.inputs for t in ctx.sums.get(src, [src])]
        head = f"{node.name}_lif" if node.kind == "neuron" else node.name
        if table[node.kind](ctx, node, nir) is not _NO_NODE:
            ctx.edges += [(src, head) for src in ctx.srcs]
    if len(ctx.resets) > 1 or len(ctx.compares) > 1:
        raise NIRExportError("neurons with different resets or comparisons; NIR metadata records one of each")
    d = ctx.d
    meta = {"dialect": d.name, "dt": d.dt, "reset": ctx.resets.pop() if ctx.resets else d.reset,
            "compare": ctx.compares.pop() if ctx.compares else d.compare, "producer": "lmhtc"}
    return nir.NIRGraph(nodes=ctx.nodes, edges=ctx.edges, metadata=meta, type_check=False)


def write_nir(graph: Graph, path) -> None:
    """Export ``graph`` and write it to ``path`` (HDF5) with ``nir.write``."""
    import nir

    nir.write(str(path), to_nir(graph))


# The NIR target's lowering table: node kind → (context, node, nir module); what NIR 1.0 cannot express is refused.
LOWERING = {
    "input": _input, "readout": _readout, "linear": _linear, "conv2d": _conv2d, "conv1d": _conv1d,
    "avgpool2d": _pool, "sum_pool2d": _pool, "flatten": _flatten, "scale": _scale, "add": _add,
    "neuron": _neuron, "lif": _lif,
    "temporal_mix": refuse("T-GIM mixes time-steps (non-causal T×T mixing); NIR 1.0 cannot express it"),
    "batchnorm": refuse("NIR 1.0 has no node for the batchnorm kind (fold it: lmhtc compile does)"),
    "globalavgpool": refuse("NIR 1.0 has no node for the globalavgpool kind"),
    "maxpool2d": refuse("NIR 1.0 has no node for the maxpool2d kind"),
    "msat_neuron": refuse("NIR 1.0 has no adaptive-threshold (MSAT) neuron"),
}
