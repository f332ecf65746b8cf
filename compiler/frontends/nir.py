"""NIR frontend: a ``.nir`` file (read with ``nir.read``, HDF5, no pickle) → an IR graph.

Maps Input, Output (→ Readout: per-step values, their mean as logits), Affine,
Linear, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten (to a vector), Scale, Threshold,
IF, LIF, LI, I, CubaLIF and CubaLI; neurons become the ``lif`` kind through the
chosen dialect (``nir_dialects``). Edges into one node are summed (NIR's rule).
Any other node type, a nested graph, a cycle, or a second Input/Output is
refused with one line naming the node and its type. The graph is a valid IR
graph (``validate``) or nothing is returned.
"""
from __future__ import annotations

import os
from pathlib import Path

import networkx as nx
import numpy as np

from ..errors import LmhtcError
from ..ir import Add, AvgPool2d, Conv2d, Flatten, Graph, Input, IRError, Linear, Readout, infer_shapes, validate
from ..lif_node import LIFNeuron
from ..nir_ops import Conv1d, Scale, SumPool2d
from .nir_dialects import Dialect, neuron_params

NEURONS = ("IF", "LIF", "LI", "I", "CubaLIF", "CubaLI", "Threshold")


class NIRImportError(LmhtcError):
    """The NIR graph cannot be imported; the message names the file and the node."""


def read_nir(path: str | os.PathLike):
    """``nir.read`` of ``path``; a one-line NIRImportError for a missing or unreadable file."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise NIRImportError(f"{path}: no such file")
    try:
        return nir.read(path)
    except Exception as exc:   # h5py and nir raise many types for a bad file
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise NIRImportError(f"{path}: not a readable NIR file ({type(exc).__name__}: {text})") from None


def _two(v) -> tuple[int, int]:
    """A NIR size given as a scalar, one value or two, as a pair."""
    flat = np.ravel(np.asarray(v)).tolist()
    if len(flat) not in (1, 2):
        raise ValueError(f"expected one or two sizes, got {flat}")
    return (int(flat[0]), int(flat[-1]))


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).copy()


def _padding(node, where: str) -> tuple[int, int]:
    pad = node.padding
    if isinstance(pad, (str, bytes)):
        pad = pad.decode() if isinstance(pad, bytes) else pad
        if pad == "valid":
            return (0, 0)
        kh, kw = node.weight.shape[-2:]
        if pad == "same" and _two(node.stride) == (1, 1) and kh % 2 and kw % 2:
            d = _two(node.dilation)
            return (d[0] * (kh - 1) // 2, d[1] * (kw - 1) // 2)
        raise NIRImportError(f"{where}: padding {pad!r} is not supported (use explicit sizes)")
    return _two(pad)


def _layer(name: str, node, src: list[str], d: Dialect, where: str):
    kind = type(node).__name__
    if kind == "Affine":
        return Linear(name, src, weight=_f32(node.weight), bias=_f32(node.bias))
    if kind == "Linear":
        return Linear(name, src, weight=_f32(node.weight))
    if kind == "Conv2d":
        bias = None if node.bias is None else _f32(np.broadcast_to(node.bias, (node.weight.shape[0],)))
        return Conv2d(name, src, weight=_f32(node.weight), bias=bias, stride=_two(node.stride),
                      padding=_padding(node, where), dilation=_two(node.dilation),
                      groups=int(node.groups))
    if kind == "Conv1d":
        pad = node.padding if isinstance(node.padding, (str, bytes)) else _two(node.padding)[0]
        if isinstance(pad, (str, bytes)):
            raise NIRImportError(f"{where}: padding {pad!r} is not supported (use an explicit size)")
        bias = None if node.bias is None else _f32(np.broadcast_to(node.bias, (node.weight.shape[0],)))
        return Conv1d(name, src, weight=_f32(node.weight), bias=bias, stride=_two(node.stride)[0], padding=pad,
                      dilation=_two(node.dilation)[0], groups=int(node.groups))
    if kind in ("SumPool2d", "AvgPool2d"):
        cls = SumPool2d if kind == "SumPool2d" else AvgPool2d
        return cls(name, src, kernel=_two(node.kernel_size), stride=_two(node.stride), padding=_two(node.padding))
    if kind == "Flatten":
        return Flatten(name, src)   # checked to produce a vector below
    if kind == "Scale":
        return Scale(name, src, scale=np.asarray(node.scale, np.float64))
    if kind in NEURONS:
        return LIFNeuron(name, src, **neuron_params(d, node, where))
    raise NIRImportError(f"{where}: NIR node type {kind} is not supported by lmhtc")


def nir_to_ir(graph, d: Dialect, steps: int, input_shape: tuple[int, ...] | None = None,
              source: str = "graph") -> Graph:
    """The IR graph of the NIR ``graph`` under dialect ``d``, running ``steps`` steps."""
    g = nx.DiGraph()
    g.add_nodes_from(graph.nodes)
    for a, b in graph.edges:
        for end in (a, b):
            if end not in graph.nodes:
                raise NIRImportError(f"{source}: edge {a!r} -> {b!r} names {end!r}, which is not a node "
                                     f"(nested graphs are not supported)")
        g.add_edge(a, b)
    for key, node in graph.nodes.items():
        if type(node).__name__ == "NIRGraph":
            raise NIRImportError(f"{source}: node {key!r} (NIRGraph): nested graphs are not supported")
    if not nx.is_directed_acyclic_graph(g):
        a, b = nx.find_cycle(g)[0][:2]
        raise NIRImportError(f"{source}: node {a!r} ({type(graph.nodes[a]).__name__}) lies on a cycle "
                             f"(recurrent NIR graphs are not supported)")
    by_type = {t: [k for k, n in graph.nodes.items() if type(n).__name__ == t] for t in ("Input", "Output")}
    for t, keys in by_type.items():
        if len(keys) != 1:
            raise NIRImportError(f"{source}: needs exactly one {t} node, has {len(keys)} ({', '.join(keys)})")
    ir = Graph(steps=steps, meta={"frontend": "nir", "dialect": d.name, "dt": d.dt})
    names: dict[str, str] = {}
    order = {k: i for i, k in enumerate(graph.nodes)}
    for key in nx.lexicographical_topological_sort(g, key=lambda k: order[k]):
        node = graph.nodes[key]
        kind = type(node).__name__
        where = f"{source}: node {key!r} ({kind})"
        preds = [names[p] for p in sorted(g.predecessors(key), key=lambda k: order[k])]
        if kind == "Input":
            shape = tuple(int(s) for s in np.ravel(node.input_type["input"])) if input_shape is None else input_shape
            if not shape or min(shape) < 1:
                raise NIRImportError(f"{where}: input shape {shape} is unknown; pass --input-shape")
            names[key] = _add(ir, Input(_name(ir, key), input_shape=shape, encoding="sequence"), where)
            continue
        if not preds:
            raise NIRImportError(f"{where}: has no input")
        while len(preds) > 1:   # NIR sums the edges into a node
            preds = [_add(ir, Add(ir.unique_name(f"{key}_sum"), preds[:2]), where)] + preds[2:]
        if kind == "Output":
            names[key] = _add(ir, Readout(_name(ir, key), preds), where)
            continue
        if kind == "Flatten":
            ndim = len(ir.node(preds[0]).shape)
            if node.start_dim not in (0, -ndim) or node.end_dim not in (-1, ndim - 1):
                raise NIRImportError(f"{where}: only flattening every dimension is supported "
                                     f"(start_dim={node.start_dim}, end_dim={node.end_dim} of {ndim})")
        try:
            layer = _layer(_name(ir, key), node, preds, d, where)
        except (ValueError, TypeError, IndexError, AttributeError) as exc:   # malformed node parameters
            raise NIRImportError(f"{where}: malformed parameters ({exc})") from None
        names[key] = _add(ir, layer, where)
        if kind == "Flatten" and len(ir.node(preds[0]).shape) == 1:
            ir.remove_passthrough(names[key])   # flattening a vector is the identity
            names[key] = preds[0]
    try:
        return validate(ir)
    except IRError as exc:
        raise NIRImportError(f"{source}: {exc}") from None


def _name(ir: Graph, key: str) -> str:
    return ir.unique_name(str(key).replace(".", "_") or "node")


def _add(ir: Graph, node, where: str) -> str:
    ir.add(node)
    try:
        infer_shapes(ir)
    except IRError as exc:
        raise NIRImportError(f"{where}: {exc}") from None
    return node.name

