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
            lw = int(graph.meta.get("reparam_levels", 1))
            if lw <= 1 or graph.steps % lw or not np.array_equal(
                    root.omega, np.repeat(root.omega[:, ::lw], lw, axis=1)):
                lw = 1
        plan[node.name] = lw
    return plan


def planned_windows(graph: Graph) -> dict[str, int]:
    """The plan a target runs: the graph's annotation, or (an artifact written before the pass existed)
    the plan computed now."""
    stored = graph.meta.get(META_KEY)
    return {str(k): int(v) for k, v in stored.items()} if isinstance(stored, dict) else window_plan(graph)


def plan_windows(graph: Graph) -> Graph:
    """The pass: a copy of the integer ``graph`` annotated with its window plan."""
    out = graph.copy()
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
