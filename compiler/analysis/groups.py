"""Synaptic groups: the synaptic nodes whose sums meet (through adds) in one T-GIM, neuron or readout.

Invariant: in an integer graph every synaptic node (and every add) feeds exactly one consumer until
its group root (the first node after the tree of adds); ``group_root`` raises naming the node that
feeds several, so every caller groups the same way. Going the other way, ``sum_tree`` is the one walk
of the tree of adds into a group (the quantizer's leaves and bias carrier, Lava's ports), in one of
two named orders that the artifacts depend on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir import Add, Graph, IRError, Node


def group_root(graph: Graph, node: Node, error: Callable[[str], Exception] = IRError) -> Node:
    """The first node after the tree of adds that ``node``'s output enters (its group's T-GIM, neuron or
    readout); ``error(message)`` (IRError, or the caller's own type) naming the node when one on the way
    feeds several nodes."""
    cur = node
    while True:
        consumers = graph.consumers(cur.name)
        if len(consumers) != 1:
            raise error(f"node {cur.name!r} ({cur.kind}) feeds {len(consumers)} nodes; each synaptic sum must "
                        f"feed one neuron layer or the readout")
        cur = consumers[0]
        if not isinstance(cur, Add):
            return cur


# The two leaf orders of a sum tree (``sum_tree``). They are part of the artifacts: the quantizer puts a
# group's bias on the first conv/linear leaf of LAST_INPUT_FIRST, Lava numbers a process's ports in
# FIRST_INPUT_FIRST; changing either changes the bytes written.
FIRST_INPUT_FIRST = "first-input-first"   # depth-first, an add's first input's subtree before its second's
LAST_INPUT_FIRST = "last-input-first"     # depth-first, an add's last input's subtree first (the mirror image)
ORDERS = (FIRST_INPUT_FIRST, LAST_INPUT_FIRST)


@dataclass(frozen=True)
class SumTree:
    """The tree of adds whose output is ``top``: its adds and its leaves (the first non-add node on each
    path), each in the walk's order; ``walk`` is every visit in that order (adds and leaves interleaved,
    a node reached twice listed twice)."""
    top: str
    adds: list[str]
    leaves: list[str]
    walk: list[str]


def sum_tree(graph: Graph, top: str, order: str) -> SumTree:
    """The adds and leaves of the sum that ``top`` outputs (``top`` itself is the one leaf when it is no
    add), walked depth-first in ``order`` (FIRST_INPUT_FIRST or LAST_INPUT_FIRST, see above). Reads the
    graph only; what a leaf may be is the caller's rule."""
    if order not in ORDERS:
        raise ValueError(f"unknown sum-tree order {order!r} (choose from {', '.join(ORDERS)})")
    adds, leaves, walk, stack = [], [], [], [top]
    while stack:
        name = stack.pop()
        walk.append(name)
        node = graph.node(name)
        if isinstance(node, Add):
            adds.append(name)
            stack.extend(reversed(node.inputs) if order == FIRST_INPUT_FIRST else node.inputs)
        else:
            leaves.append(name)
    return SumTree(top, adds, leaves, walk)
