"""Threshold schemes of ANN → SNN conversion, as passes on the IF-network IR of ``ann.if_graph``.

The input graph holds IF neurons (``Neuron``: levels 1, λ = 1, input scale 1, no
T-GIM) whose threshold is the layer's θ_max and whose membrane starts at θ/2.

* ``tb-max``  — threshold balancing: θ = θ_max (the graph unchanged);
* ``tb-0.7``  — fixed θ = 0.7·θ_max (membranes start at half of it);
* ``msat``    — every IF neuron → an ``MSATNeuron`` (DTT + DET) with that θ_max, spike confidence off;
* ``msat-sc`` — the same with spike confidence (p per layer during the first steps, seeded).

Invariant: only neuron nodes change; synapses, shapes, names and steps stay, so
neuron layers keep the names of the ANN's activation layers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np

from ..ir import Graph, IRError, Neuron, TemporalMix
from .ann import ConversionError
from .msat_node import MSATNeuron

SCHEMES = {
    "tb-max": "threshold balancing (θ = θ_max)",
    "tb-0.7": "fixed θ = 0.7·θ_max",
    "msat": "MSAT (DTT + DET)",
    "msat-sc": "MSAT + spike confidence",
}
FIXED_FRACTION = 0.7


@dataclass(frozen=True)
class MSATConfig:
    """MSAT hyper-parameters (paper Table 1) and the spike-confidence setting."""
    alpha: float = 0.3
    k_a: float = 1.0
    k_i: float = 1.0
    c: float = 5.0
    tau_mp: float = 0.5
    tau_rd: float = 0.5
    v_t: float = 0.0
    v_init: float = 0.5
    confidence: tuple[float, ...] = (1.0,)   # one p for every neuron layer, or one per layer
    confidence_steps: int = 0
    seed: int = 0

    def to_json(self) -> dict:
        d = asdict(self)
        d["confidence"] = list(self.confidence)
        return d

    @property
    def confidence_on(self) -> bool:
        """Some layer keeps early spikes with p < 1 (a step count of 0 means: a quarter of T)."""
        return any(p < 1.0 for p in self.confidence)


MSAT_PRESETS = {
    "resnet20": MSATConfig(alpha=0.3, tau_mp=0.5, tau_rd=0.5),
    "vgg16": MSATConfig(alpha=0.03, tau_mp=1.0, tau_rd=1.0),
}
# The spike-confidence setting the accuracy-vs-T experiment uses when none is given:
# keep early spikes with p = 0.9 in every layer during the first quarter of the steps.
DEFAULT_CONFIDENCE = 0.9
DEFAULT_CONFIDENCE_SHARE = 0.25


def preset_for(arch: str) -> MSATConfig:
    """Paper Table 1: the VGG-16 parameters for the VGG family, the ResNet-20 ones otherwise."""
    return MSAT_PRESETS["vgg16" if arch.startswith("vgg") else "resnet20"]


def with_default_confidence(config: MSATConfig, steps: int) -> MSATConfig:
    """``config`` with spike confidence on: its own p values if any is < 1, else the default p; its own
    number of early steps if set, else a quarter of ``steps``."""
    ps = config.confidence if any(p < 1.0 for p in config.confidence) else (DEFAULT_CONFIDENCE,)
    early = config.confidence_steps or max(1, int(round(DEFAULT_CONFIDENCE_SHARE * steps)))
    return replace(config, confidence=ps, confidence_steps=early)


def _if_neurons(graph: Graph) -> list[Neuron]:
    if graph.nodes_of(TemporalMix):
        raise ConversionError(f"node {graph.nodes_of(TemporalMix)[0].name!r}: threshold schemes apply to IF "
                              f"networks without T-GIM mixing")
    neurons = graph.neuron_layers()
    for n in neurons:
        if n.levels != 1 or not np.all(n.leak == 1.0) or n.input_scale != 1.0:
            raise ConversionError(f"node {n.name!r}: not an IF neuron (levels {n.levels}, input scale "
                                  f"{n.input_scale}, leak not 1); threshold schemes need IF neurons")
    return neurons


def fixed_thresholds(graph: Graph, fraction: float) -> Graph:
    """A copy of ``graph`` with every IF threshold multiplied by ``fraction`` (v_init stays a fraction of θ)."""
    if not fraction > 0:
        raise ConversionError(f"threshold fraction must be > 0, got {fraction}")
    g = graph.copy()
    for n in _if_neurons(g):
        n.threshold = float(n.threshold) * fraction
    return g


def layer_confidences(config: MSATConfig, layers: int) -> list[float]:
    """One spike-confidence p per neuron layer (a single value applies to every layer)."""
    ps = list(config.confidence)
    if len(ps) == 1:
        ps = ps * layers
    if len(ps) != layers:
        raise ConversionError(f"--spike-confidence gives {len(config.confidence)} values; the network has "
                              f"{layers} neuron layers (give one value or one per layer)")
    for p in ps:
        if not 0.0 <= p <= 1.0:
            raise ConversionError(f"--spike-confidence values must lie in [0, 1], got {p}")
    return ps


def to_msat(graph: Graph, config: MSATConfig) -> Graph:
    """A copy of ``graph`` with every IF neuron replaced by an MSAT neuron whose θ_max is its threshold."""
    if config.confidence_steps < 0:
        raise ConversionError(f"--confidence-steps must be >= 0, got {config.confidence_steps}")
    g = graph.copy()
    neurons = _if_neurons(g)
    ps = layer_confidences(config, len(neurons))
    for n, p in zip(neurons, ps):
        node = MSATNeuron(n.name, list(n.inputs), n.shape, theta_max=float(n.threshold), alpha=config.alpha,
                          k_a=config.k_a, k_i=config.k_i, c=config.c, tau_mp=config.tau_mp, tau_rd=config.tau_rd,
                          v_t=config.v_t, v_init=config.v_init, confidence=float(p),
                          confidence_steps=int(config.confidence_steps) if p < 1.0 else 0, seed=int(config.seed))
        try:
            node.check()
        except IRError as exc:
            raise ConversionError(str(exc)) from None
        g.g.nodes[n.name]["node"] = node
    return g


def apply_scheme(if_graph: Graph, scheme: str, config: MSATConfig) -> Graph:
    """The converted network of ``scheme`` (see SCHEMES) from an IF-network IR with θ = θ_max."""
    if scheme == "tb-max":
        g = if_graph.copy()
        _if_neurons(g)
    elif scheme == "tb-0.7":
        g = fixed_thresholds(if_graph, FIXED_FRACTION)
    elif scheme == "msat":
        config = replace(config, confidence=(1.0,), confidence_steps=0)
        g = to_msat(if_graph, config)
    elif scheme == "msat-sc":
        config = with_default_confidence(config, if_graph.steps)
        g = to_msat(if_graph, config)
    else:
        raise ConversionError(f"unknown threshold scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    conv = dict(g.meta.get("conversion", {}))
    conv["scheme"] = scheme
    if scheme.startswith("msat"):
        conv["msat"] = config.to_json()
    g.meta["conversion"] = conv
    return g


def parse_confidence(text: str | None) -> tuple[float, ...]:
    """``"0.9"`` or ``"1,1,0.8,…"`` → a tuple of probabilities (one-line error otherwise)."""
    if text is None or not text.strip():
        return (1.0,)
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConversionError(f"--spike-confidence must be comma-separated probabilities, got {text!r}") from None
    for p in values:
        if not 0.0 <= p <= 1.0:
            raise ConversionError(f"--spike-confidence values must lie in [0, 1], got {p:g}")
    return values


def describe(config: MSATConfig) -> str:
    return (f"α={config.alpha:g}, k_a={config.k_a:g}, k_i={config.k_i:g}, C={config.c:g}, τ_mp={config.tau_mp:g}, "
            f"τ_rd={config.tau_rd:g}, V_T={config.v_t:g}")


def confidences_text(config: MSATConfig, layers: Sequence[str]) -> str:
    if not config.confidence_on or not config.confidence_steps:
        return "spike confidence off"
    ps = layer_confidences(config, len(layers))
    shown = f"p = {ps[0]:g}" if len(set(ps)) == 1 else "p = " + ",".join(f"{p:g}" for p in ps)
    return f"spike confidence {shown} in the first {config.confidence_steps} steps (seed {config.seed})"
