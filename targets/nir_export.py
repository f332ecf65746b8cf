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
from lmhtc.compiler.ir import (Add, AvgPool2d, Conv2d, Flatten, Graph, Input, Linear, Neuron, Readout,
                               TemporalMix)
from lmhtc.compiler.lif_node import LIFNeuron
from lmhtc.compiler.nir_ops import Conv1d, Scale, SumPool2d


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


def to_nir(graph: Graph):
    """The NIRGraph of ``graph`` plus metadata {dialect, dt, reset, compare}; raises NIRExportError."""
    import nir

    if graph.meta.get("quantization") is not None:
        raise NIRExportError("this is an integer network; the NIR target exports float graphs")
    d = _dialect(graph)
    nodes, edges = {}, []
    sums: dict[str, list[str]] = {}   # an IR add → the NIR nodes it sums (NIR sums the edges into a node)
    resets, compares = set(), set()
    for node in graph.topo():
        where = f"node {node.name!r} ({node.kind})"
        name = node.name
        head = f"{name}_lif" if isinstance(node, Neuron) else name   # an IR neuron becomes LIF → Scale(θ)
        srcs = [t for src in node.inputs for t in sums.get(src, [src])]
        if isinstance(node, Add):
            if len(set(srcs)) != len(srcs):
                raise NIRExportError(f"{where}: adds a value to itself; NIR's summed edges cannot express that")
            sums[name] = srcs
            continue
        edges += [(src, head) for src in srcs]
        if isinstance(node, Input):
            nodes[name] = nir.Input(input_type={"input": np.array(node.input_shape)})
        elif isinstance(node, Readout):
            nodes[name] = nir.Output(output_type={"output": np.array(node.shape)})
        elif isinstance(node, Linear):
            w = np.asarray(node.weight, np.float32)
            nodes[name] = nir.Linear(w) if node.bias is None else nir.Affine(w, np.asarray(node.bias, np.float32))
        elif isinstance(node, Conv2d):
            cin_shape = graph.node(node.inputs[0]).shape
            bias = np.zeros(node.weight.shape[0], np.float32) if node.bias is None else node.bias
            nodes[name] = nir.Conv2d(input_shape=tuple(cin_shape[1:]), weight=np.asarray(node.weight, np.float32),
                                     stride=node.stride, padding=node.padding, dilation=node.dilation,
                                     groups=node.groups, bias=np.asarray(bias, np.float32))
        elif isinstance(node, Conv1d):
            bias = np.zeros(node.weight.shape[0], np.float32) if node.bias is None else node.bias
            nodes[name] = nir.Conv1d(input_shape=graph.node(node.inputs[0]).shape[1],
                                     weight=np.asarray(node.weight, np.float32), stride=node.stride,
                                     padding=node.padding, dilation=node.dilation, groups=node.groups,
                                     bias=np.asarray(bias, np.float32))
        elif isinstance(node, (AvgPool2d, SumPool2d)):
            cls = nir.AvgPool2d if isinstance(node, AvgPool2d) else nir.SumPool2d
            nodes[name] = cls(kernel_size=np.array(node.kernel), stride=np.array(node.stride),
                              padding=np.array(node.padding))
        elif isinstance(node, Flatten):
            nodes[name] = nir.Flatten(input_type={"input": np.array(graph.node(node.inputs[0]).shape)},
                                      start_dim=0, end_dim=-1)
        elif isinstance(node, Scale):
            nodes[name] = nir.Scale(np.broadcast_to(node.scale, node.shape).astype(np.float32))
        elif isinstance(node, TemporalMix):
            raise NIRExportError(f"{where}: T-GIM mixes time-steps (non-causal T×T mixing); NIR 1.0 cannot "
                                 f"express it")
        elif isinstance(node, Neuron):
            nodes[head] = _lif_nodes(_neuron_as_lif(node), d)[name]
            nodes[name] = nir.Scale(np.broadcast_to(np.asarray(node.threshold, np.float32), node.shape).copy())
            edges.append((head, name))
            resets.add("subtract"), compares.add(">=")
        elif isinstance(node, LIFNeuron):
            if node.v_min is not None:
                raise NIRExportError(f"{where}: a membrane floor (v_min); NIR 1.0 cannot express it")
            nodes.update(_lif_nodes(node, d))
            if node.spiking:
                resets.add(node.reset), compares.add(node.compare)
            if node.reset_timing != d.reset_timing and node.spiking:
                raise NIRExportError(f"{where}: reset timing {node.reset_timing!r} differs from the "
                                     f"{d.name} dialect's")
        else:
            raise NIRExportError(f"{where}: NIR 1.0 has no node for the {node.kind} kind")
    if len(resets) > 1 or len(compares) > 1:
        raise NIRExportError("neurons with different resets or comparisons; NIR metadata records one of each")
    meta = {"dialect": d.name, "dt": d.dt, "reset": resets.pop() if resets else d.reset,
            "compare": compares.pop() if compares else d.compare, "producer": "lmhtc"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def write_nir(graph: Graph, path) -> None:
    """Export ``graph`` and write it to ``path`` (HDF5) with ``nir.write``."""
    import nir

    nir.write(str(path), to_nir(graph))
