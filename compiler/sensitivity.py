"""Per-layer sensitivity of the integer lowering: one layer at N bits, every other layer at the widest setting.

Invariant: row ``layer`` is the integer runtime's network with only the synaptic weights into ``layer`` (a
neuron layer, or the readout) at ``bits`` bits, compared with the float compiled network on the same
inputs: argmax agreement of the logits, and spike agreement at that layer and at the last neuron layer.
Spike agreement is the weighted Jaccard index Σ min(k_int, k_float) / Σ max(k_int, k_float) over every
(step, sample, neuron) spike count — 1 when the spike trains are equal, whatever the firing rate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .executor import run_float
from .ir import Graph, Readout
from .passes.quantize import DEFAULT_METHOD, QuantConfig, calibrate_for, method_for, quantize


def spike_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Σ min / Σ max of two spike-count arrays (1.0 when both are silent)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    top = np.maximum(a, b).sum()
    return float(np.minimum(a, b).sum() / top) if top > 0 else 1.0


def float_counts(graph: Graph, run, name: str) -> np.ndarray:
    """Spike counts k of neuron layer ``name`` from a float run that captured it (its output is k·θ)."""
    return np.rint(run.captured[name] / graph.node(name).threshold)


@dataclass
class SensitivityRow:
    layer: str
    bits: int
    agreement: float           # argmax agreement with the float compiled network
    spikes_layer: float        # spike agreement at the layer itself (readout: nan)
    spikes_last: float         # spike agreement at the last neuron layer

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and v != v else v) for k, v in asdict(self).items()}   # NaN → null


@dataclass
class Sensitivity:
    images: int
    bits: int
    method: str
    widest_agreement: float
    rows: list[SensitivityRow]

    @property
    def keep_wider(self) -> str:
        """The layer whose narrowing costs the most (lowest agreement, then lowest last-layer spikes)."""
        return min(self.rows, key=lambda r: (r.agreement, r.spikes_last)).layer

    def to_json(self) -> dict:
        return {"images": self.images, "bits": self.bits, "method": self.method,
                "widest_agreement": self.widest_agreement, "keep_wider": self.keep_wider,
                "rows": [r.to_json() for r in self.rows]}


def layer_names(graph: Graph) -> list[str]:
    """The layers a width can be chosen for: every neuron layer, then the readout."""
    return [n.name for n in graph.neuron_layers()] + [n.name for n in graph.nodes_of(Readout)]


def layer_sensitivity(graph: Graph, x: np.ndarray, bits: int, calib: np.ndarray | None = None,
                      method: str = DEFAULT_METHOD, layers: list[str] | None = None, batch_size: int = 64,
                      progress: bool = False) -> Sensitivity:
    from lmhtc.runtime.simulator import run_int

    method = method_for(method, bits)
    neurons = [n.name for n in graph.neuron_layers()]
    last = neurons[-1]
    ref = run_float(graph, x, batch_size, capture=set(neurons), progress=progress, desc="float compiled")
    ref_arg = ref.logits.argmax(1)
    base = replace(QuantConfig.widest(), method=method)
    stats = None if calib is None else calibrate_for(graph, calib, base, progress=progress)   # one pass for all
    widest = run_int(quantize(graph, base, calib=calib, stats=stats), x, batch_size)
    rows = []
    for layer in layers or layer_names(graph):
        q = quantize(graph, replace(base, layer_bits=((layer, bits),)), calib=calib, stats=stats)
        cap = {last} | ({layer} if layer in neurons else set())
        r = run_int(q, x, batch_size, capture=cap, progress=progress, desc=f"int ({layer} at {bits} bits)")
        own = spike_agreement(r.captured[layer], float_counts(graph, ref, layer)) if layer in neurons else float("nan")
        rows.append(SensitivityRow(layer, bits, float((r.logits.argmax(1) == ref_arg).mean()), own,
                                   spike_agreement(r.captured[last], float_counts(graph, ref, last))))
    return Sensitivity(len(x), bits, method, float((widest.logits.argmax(1) == ref_arg).mean()), rows)
