"""Pass contracts and the one pass runner (torch.fx's PassManager with a lint after every pass).

A pass is IR → IR. It declares the graph properties it ``requires`` and those it ``ensures``;
``run_passes`` checks the requirements before each pass, then lints the result with the phase's
validator (``ir.validate`` for float graphs, ``ir.validate_integer`` for integer graphs, neither of
which changes the graph) and checks the guarantees. A pass that breaks its contract fails here,
naming the pass and the property, not later in a target.

Properties are read off the graph, never stored: ``float`` / ``integer`` (the phase), ``bn_free``
(no BatchNorm left), ``reparameterized`` (single-threshold neurons over L·T steps), ``shaped``
(every node has its inferred shape), ``windows_planned`` (an integer graph annotated with its window
plan, compiler/analysis/windows.py; the validator checks the annotation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import LmhtcError
from ..ir import RUNNER_LINTS, Graph, check


class PassContractError(LmhtcError):
    """A pass was run without what it requires, or did not ensure what it declares."""


def properties(graph: Graph) -> frozenset[str]:
    """The contract properties ``graph`` has now."""
    props = {"integer" if graph.meta.get("integer") else "float"}
    if not any(n.kind == "batchnorm" for n in graph.topo()):
        props.add("bn_free")
    if graph.meta.get("reparameterized"):
        props.add("reparameterized")
    if all(n.shape is not None for n in graph.topo()):
        props.add("shaped")
    if "window_plan" in graph.meta:
        props.add("windows_planned")
    return frozenset(props)


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[..., Graph]
    requires: frozenset[str]
    ensures: frozenset[str]

    def __call__(self, graph: Graph, **options) -> Graph:
        missing = self.requires - properties(graph)
        if missing:
            raise PassContractError(f"pass {self.name!r} requires a graph that is {', '.join(sorted(missing))}")
        token = RUNNER_LINTS.set(True)      # the pass's own finalize leaves the lint to the line below
        try:
            out = self.run(graph, **options)
        finally:
            RUNNER_LINTS.reset(token)
        out = check(out)
        lacking = self.ensures - properties(out)
        if lacking:
            raise PassContractError(f"pass {self.name!r} did not ensure {', '.join(sorted(lacking))}")
        return out


def _passes() -> dict[str, Pass]:
    from ..analysis.windows import plan_windows
    from .fold_batchnorm import fold_batchnorm
    from .quantize import quantize
    from .reparameterize import reparameterize

    return {
        "fold_batchnorm": Pass("fold_batchnorm", fold_batchnorm, frozenset({"float", "shaped"}),
                               frozenset({"float", "shaped"})),
        "reparameterize": Pass("reparameterize", reparameterize, frozenset({"float", "shaped"}),
                               frozenset({"float", "shaped", "reparameterized"})),
        "quantize": Pass("quantize", quantize, frozenset({"float", "shaped", "bn_free"}),
                         frozenset({"integer", "shaped", "bn_free"})),
        "plan_windows": Pass("plan_windows", plan_windows, frozenset({"integer", "shaped"}),
                             frozenset({"integer", "shaped", "windows_planned"})),
    }


def get_pass(name: str) -> Pass:
    passes = _passes()
    if name not in passes:
        raise PassContractError(f"unknown pass {name!r} (known: {', '.join(passes)})")
    return passes[name]


def run_passes(graph: Graph, pipeline: list[tuple[str, dict]]) -> Graph:
    """Run the named passes in order, each with its options; the graph is linted after every pass."""
    for name, options in pipeline:
        graph = get_pass(name)(graph, **options)
    return graph
