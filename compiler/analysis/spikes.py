"""Spike-fed analysis: which values carry spikes and which nodes (synapses) are fed by them.

A value carries spikes when the node kind that makes it declares ``emits_spikes`` (a neuron layer of
either phase: ``neuron``, ``qneuron``, ``lif``, ``qlif``, ``msat_neuron``); every other kind passes on
what reaches it. ``spike_sources`` walks back through non-spiking nodes to the nearest spike emitters
and/or the graph input; ``spike_fed`` says whether those are all emitters (the node's operations are
SOPs and it is reparameterized as spiking) or none (the analog input: MACs).

Invariant: one answer for the integer validator, reparameterization, the exactness check, the runtime
and the cost passes; a node reached by both spikes and the analog input is an error for each of them,
raised as the caller's own exception type (``mixed`` builds it from the node's name). Reads only
``node.inputs`` and the kind attribute, so it imports nothing from the IR.
"""

from __future__ import annotations

from typing import Callable


def carries_spikes(node) -> bool:
    """True when ``node``'s output is a spike train (its kind declares ``emits_spikes``)."""
    return bool(getattr(node, "emits_spikes", False))


def spike_sources(graph, name: str) -> set[str]:
    """What feeds ``name`` through nodes that do not emit spikes: the nearest upstream spike emitters
    and/or the source nodes (no inputs: the graph input)."""
    out: set[str] = set()
    stack = list(graph.node(name).inputs)
    seen: set[str] = set()
    while stack:
        cur = stack.pop()
        if cur in seen:
            continue
        seen.add(cur)
        node = graph.node(cur)
        if carries_spikes(node) or not node.inputs:
            out.add(cur)
        else:
            stack.extend(node.inputs)
    return out


def spike_fed(graph, name: str, mixed: Callable[[str], Exception]) -> bool:
    """True when only spikes reach ``name``, False when no spikes do (the analog input, or nothing);
    raises ``mixed(name)`` when both spikes and some other source reach it."""
    sources = spike_sources(graph, name)
    spiking = [s for s in sources if carries_spikes(graph.node(s))]
    if spiking and len(spiking) != len(sources):
        raise mixed(name)
    return bool(spiking)
