"""Lowering tables and the target registry.

Every target maps node kind → lowering in ONE table (``LOWERING`` in its module, the target's only
dispatch: tinygrad's per-backend ``code_for_op``). A target is one registration here: its name, the
graph phase it reads (``float`` or ``integer``), where its table lives, and its ``run`` / ``export``
entry points. The CLI, ``verify`` and the Python API read this registry; no target name list is
written anywhere else.

Invariants the checks keep:

* ``check_tables()``: every target's table covers every node kind its phase can contain (a kind it
  cannot express is an explicit ``refuse(...)`` entry with the reason), so a new node kind fails
  here, naming the kind and each target that lacks it, before any network runs;
* ``check_lowerable(graph, target)``: before a target touches a graph, the graph's phase is the
  target's and every node's kind has a lowering; otherwise one ``LoweringError`` naming the node,
  its kind and the target.

Modules load lazily (``"module:attribute"`` references), so reading the registry imports neither
onnx nor lava.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from .errors import LmhtcError
from .ir import NODE_TYPES, Graph

PHASES = ("float", "integer")


class LoweringError(LmhtcError):
    """A target cannot lower a graph (wrong phase, or a node kind without a lowering); names both."""


@dataclass(frozen=True)
class Target:
    name: str
    phase: str                    # the graph phase it reads: "float" or "integer"
    table: str                    # "module:attribute" of its LOWERING table (node kind → lowering)
    run: str | None = None        # "module:function": (graphs, x, progress) → verify.TargetRun
    export: str | None = None     # "module:function": (graph, metadata) → ONNX model (file targets)
    output: str = "onnx"          # what its export gives: an ONNX "onnx" model, a "file" it writes, a "directory"
    export_options: tuple[str, ...] = ()   # keyword options its export takes (e.g. "spikes")
    requires: str | None = None   # a module that must be importable for the target to run (e.g. lava)
    description: str = ""


def _load(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class _Refusal:
    """A table entry for a kind the target cannot express: lowering it raises with the reason."""

    def __init__(self, reason: str):
        self.reason = reason

    def __call__(self, *args, **kwargs):
        raise LoweringError(self.reason)


def refuse(reason: str) -> _Refusal:
    """An explicit 'cannot express' entry of a lowering table."""
    return _Refusal(reason)


TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> Target:
    if target.phase not in PHASES:
        raise ValueError(f"target {target.name!r}: phase must be one of {PHASES}, got {target.phase!r}")
    TARGETS[target.name] = target
    return target


register_target(Target("float", "float", "lmhtc.compiler.executor:LOWERING",
                       run="lmhtc.compiler.verify:float_runner",
                       description="the float reference executor (torch)"))
register_target(Target("int", "integer", "lmhtc.runtime.simulator:LOWERING",
                       run="lmhtc.compiler.verify:int_runner",
                       description="the bit-accurate integer runtime"))
register_target(Target("onnx", "float", "lmhtc.targets.onnx_float:LOWERING",
                       run="lmhtc.compiler.verify:onnx_runner", export="lmhtc.targets.onnx_float:export_float_onnx",
                       description="float ONNX (onnxruntime)"))
register_target(Target("onnx-int", "integer", "lmhtc.targets.onnx_int:LOWERING",
                       run="lmhtc.compiler.verify:onnx_int_runner", export="lmhtc.targets.onnx_int:export_int_onnx",
                       export_options=("spikes", "products"),
                       description="integer ONNX, bit-exact with the runtime (onnxruntime)"))
register_target(Target("lava", "integer", "lmhtc.targets.lava.lowering:LOWERING",
                       run="lmhtc.compiler.verify:lava_runner", export="lmhtc.targets.lava:export_lava",
                       output="directory", requires="lmhtc.targets.lava",
                       description="Lava processes (lava-nc, Loihi2SimCfg fixed point)"))

register_target(Target("nir", "float", "lmhtc.targets.nir_export:LOWERING", export="lmhtc.targets.nir_export:write_nir",
                       output="file", description="NIR 1.0 graph (HDF5), for graphs NIR expresses exactly"))


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise LoweringError(f"unknown target {name!r} (choose from {', '.join(TARGETS)})")
    return TARGETS[name]


def lowering_table(name: str) -> dict:
    """The target's node kind → lowering table."""
    return _load(get_target(name).table)


def target_function(name: str, which: str) -> Callable:
    ref = getattr(get_target(name), which)
    if ref is None:
        raise LoweringError(f"target {name!r} has no {which} entry point")
    return _load(ref)


def names(*, phase: str | None = None, exportable: bool | None = None, runnable: bool | None = None) -> list[str]:
    """Registered target names (in registration order), optionally of one phase, with an export or a run."""
    return [t.name for t in TARGETS.values() if (phase is None or t.phase == phase)
            and (exportable is None or (t.export is not None) == exportable)
            and (runnable is None or (t.run is not None) == runnable)]


def kinds_of_phase(phase: str) -> set[str]:
    """Every registered node kind that a graph of ``phase`` can contain (a node type's ``phases``)."""
    from . import artifact  # noqa: F401  (imports every module that registers node kinds)

    return {kind for kind, cls in NODE_TYPES.items() if phase in cls.phases}


def phase_of(graph: Graph) -> str:
    return "integer" if graph.meta.get("integer") else "float"


def _foreign_kind(graph: Graph, phase: str) -> str:
    """`` (node 'n' is of kind 'k')`` for the first node whose kind is not of ``phase`` (the first node when
    every kind belongs to both phases): what a phase refusal names."""
    nodes = list(graph.topo())
    node = next((n for n in nodes if phase not in n.phases), nodes[0] if nodes else None)
    return "" if node is None else f" (node {node.name!r} is of kind {node.kind!r})"


def check_tables(targets: list[str] | None = None) -> None:
    """Fail naming the node kind and the target when a target's table lacks a kind its phase can contain."""
    missing = []
    for name in targets or list(TARGETS):
        table = lowering_table(name)
        for kind in sorted(kinds_of_phase(get_target(name).phase) - set(table)):
            missing.append(f"target {name!r} has no lowering for node kind {kind!r}")
    if missing:
        raise LoweringError("; ".join(missing))


def check_integer_graph(graph: Graph, target: str) -> dict:
    """``check_lowerable`` for an integer target, after the graph's integer flag and semantics version."""
    from lmhtc.semantics import SEMANTICS_VERSION

    if not graph.meta.get("integer"):
        raise LoweringError(f"target {target!r}: the graph is not an integer network (a float network; compile "
                            f"with integer lowering first, without --no-int){_foreign_kind(graph, 'integer')}")
    version = graph.meta.get("semantics_version")
    if version != SEMANTICS_VERSION:
        raise LoweringError(f"integer semantics version {version} is not supported by target {target!r} (it "
                            f"implements version {SEMANTICS_VERSION})")
    return check_lowerable(graph, target)


def check_lowerable(graph: Graph, target: str) -> dict:
    """The target's table, after checking that it can lower every node of ``graph``; else LoweringError."""
    t = get_target(target)
    phase = phase_of(graph)
    if phase != t.phase:
        raise LoweringError(f"target {target!r} reads {t.phase} graphs; this is {'an' if phase == 'integer' else 'a'} "
                            f"{phase} graph{_foreign_kind(graph, t.phase)}")
    table = lowering_table(target)
    for node in graph.topo():
        entry = table.get(node.kind)
        if entry is None:
            raise LoweringError(f"target {target!r} has no lowering for node kind {node.kind!r} (node {node.name!r})")
        if isinstance(entry, _Refusal):
            raise LoweringError(f"target {target!r} cannot lower node {node.name!r} ({node.kind}): {entry.reason}")
    return table


def integer_lowering_gap(graph: Graph | None):
    """The first node of a float ``graph`` that the integer lowering (the quantize pass) does not cover (its
    kind, or a variant: ``quantize.lowering_gap``), or None: why an artifact has no integer graph."""
    from .passes.quantize import lowering_gap

    if graph is None:
        return None
    return next((n for n in graph.topo() if lowering_gap(n) is not None), None)


def require_graph(graphs: dict[str, Graph], target: str, artifact, float_graph: str = "compiled") -> Graph:
    """The graph of an artifact that ``target`` reads (``float_graph`` for a float target), checked by
    ``check_lowerable``; a one-line LoweringError naming the target otherwise, and, where the integer
    graph is missing because a node kind has no integer lowering, that node and its kind."""
    t = get_target(target)
    if t.phase == "float":
        if float_graph not in graphs or float_graph == "integer":
            raise LoweringError(f"{artifact}: no float graph {float_graph!r} "
                                f"(has: {', '.join(g for g in graphs if g != 'integer')})")
        graph = graphs[float_graph]
    else:
        graph = graphs.get("integer")
        if graph is None:
            gap = integer_lowering_gap(graphs.get("compiled"))
            if gap is not None:
                from .passes.quantize import lowering_gap

                raise LoweringError(f"{artifact}: has no integer network: target {target!r} cannot run node "
                                    f"{gap.name!r} ({gap.kind}): {lowering_gap(gap)} (the float executor runs it)")
            raise LoweringError(f"{artifact}: target {target!r} cannot run: the artifact has no integer graph (it has "
                                f"no integer network: compiled with --no-int, or a network the integer lowering "
                                f"does not cover)")
    check_lowerable(graph, target)
    return graph
