"""The window plan of an integer graph, and the pass that writes it as the annotation
``graph.meta["window_plan"]`` (synaptic node → window size in steps; 1: per step).

When every column block of a T-GIM matrix is constant (the reparameterized uniform schedule:
Ω'[t, m] depends on m only through ⌊m/L⌋), the mix needs only the window sums
Σ_{m in window} y(m) = W·(Σ_{m in window} s(m)) + L·bias of its inputs: one synaptic product per
window instead of one per step, with identical integers. A synapse with a right shift
(``shift < 0``) is always planned per step: a sum of rounded shifts is not the shift of the sum.

Invariants: ``window_plan`` is the one computation (the runtime, the pass and the validator call
it); the annotation, where present, equals it exactly (``check_window_plan``, run by
``ir.validate_integer``), so a tampered plan is refused before any target reads it.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, IRError
from .groups import group_root

META_KEY = "window_plan"


def block_window(graph: Graph, omega) -> int:
    """The window size L a T-GIM matrix ``omega`` of ``graph`` lets its synaptic products run per window
    (every column block of L steps constant), else 1."""
    lw = int(graph.meta.get("reparam_levels", 1))
    om = np.asarray(omega)
    if lw <= 1 or graph.steps % lw or not np.array_equal(om, np.repeat(om[:, ::lw], lw, axis=1)):
        return 1
    return lw


def row_window(graph: Graph, omega) -> tuple[int, bool]:
    """The window structure of a T-GIM matrix's rows (the currents it gives): (L, False) when the rows are
    equal within blocks of L steps (every step of a window gets one current: the uniform schedule);
    (L, True) when only each block's first row is non-zero (the window's current at its first step: the
    exact schedule); (1, False) otherwise. ``block_window`` is the same question about the columns."""
    lw = int(graph.meta.get("reparam_levels", 1))
    om = np.asarray(omega)
    if lw > 1 and om.shape[0] % lw == 0:
        if np.array_equal(om, np.repeat(om[::lw], lw, axis=0)):
            return lw, False
        if not om.reshape(-1, lw, om.shape[1])[:, 1:].any():
            return lw, True
    return 1, False


def window_plan(graph: Graph) -> dict[str, int]:
    """Window size per synaptic node of the integer ``graph`` (module docstring)."""
    from ..intir import QConv2d, QGain, QLinear, QTemporalMix

    plan: dict[str, int] = {}
    for node in graph.topo():
        if not isinstance(node, (QConv2d, QLinear, QGain)):
            continue
        root = group_root(graph, node)
        lw = 1
        if isinstance(root, QTemporalMix) and node.shift >= 0:   # Σ of rounded right shifts ≠ shift of Σ
            lw = block_window(graph, root.omega)
        plan[node.name] = lw
    return plan


def float_window_plan(graph: Graph) -> dict[str, int]:
    """Window size per conv/linear node of the float ``graph`` whose group ends in a T-GIM with constant
    column blocks (the products a float run may take on window sums, real arithmetic being linear);
    nodes not listed run per step."""
    from ..ir import Conv2d, Linear, TemporalMix

    plan: dict[str, int] = {}
    for node in graph.nodes_of(Conv2d, Linear):
        try:
            root = group_root(graph, node)
        except IRError:
            continue
        if isinstance(root, TemporalMix) and (lw := block_window(graph, root.omega)) > 1:
            plan[node.name] = lw
    return plan


def planned_windows(graph: Graph) -> dict[str, int]:
    """The plan a target runs: the graph's annotation, or (an artifact written before the pass existed)
    the plan computed now."""
    stored = graph.meta.get(META_KEY)
    return {str(k): int(v) for k, v in stored.items()} if isinstance(stored, dict) else window_plan(graph)


def plan_windows(graph: Graph) -> Graph:
    """The pass: a copy of the integer ``graph`` annotated with its window plan (the parameter arrays are
    shared: the pass writes only the graph's meta)."""
    out = graph.copy(share_arrays=True)
    out.meta[META_KEY] = window_plan(out)
    return out


def check_window_plan(graph: Graph) -> None:
    """IRError when the graph carries a window plan that is not ``window_plan(graph)`` (a missing plan is
    allowed: it is computed when needed)."""
    if META_KEY not in graph.meta:
        return
    stored, plan = graph.meta[META_KEY], window_plan(graph)
    if not isinstance(stored, dict) or set(stored) != set(plan):
        raise IRError(f"window plan names {sorted(stored) if isinstance(stored, dict) else type(stored).__name__}, "
                      f"the graph's synaptic nodes are {sorted(plan)}")
    for name, lw in plan.items():
        if type(stored[name]) is not int or stored[name] != lw:
            raise IRError(f"node {name!r}: window plan {stored[name]!r} is not the {lw} its T-GIM and shift allow")
