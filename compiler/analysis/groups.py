"""Synaptic groups: the synaptic nodes whose sums meet (through adds) in one T-GIM, neuron or readout.

Invariant: in an integer graph every synaptic node (and every add) feeds exactly one consumer until
its group root (the first node after the tree of adds); ``group_root`` raises naming the node that
feeds several, so every caller groups the same way.
"""
from __future__ import annotations

from ..ir import Add, Graph, IRError, Node


def group_root(graph: Graph, node: Node) -> Node:
    """The first node after the tree of adds that ``node``'s output enters (its group's T-GIM, neuron or
    readout); IRError naming the node when one on the way feeds several nodes."""
    cur = node
    while True:
        consumers = graph.consumers(cur.name)
        if len(consumers) != 1:
            raise IRError(f"node {cur.name!r} ({cur.kind}) feeds {len(consumers)} nodes; each synaptic sum must "
                          f"feed one neuron layer or the readout")
        cur = consumers[0]
        if not isinstance(cur, Add):
            return cur
