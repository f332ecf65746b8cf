"""Exactness report of a reparameterization, measured on data.

Per neuron layer, both neuron forms are fed the same layer input (end-to-end
float comparisons of spiking networks are chaotic, so they say little about
the method): the source (M-HT) graph is run on the data and the synaptic
input sequence X [T, N, ...] of every neuron layer is captured. The M-HT
neuron turns it into levels k[t]. The reparameterized layer receives the
sequence X' [L·T, N, ...] whose window sums equal X (``X[⌊m/L⌋]/L`` for a
spiking input; for the analog input ``X[⌊m/L⌋]``, as the reparameterized graph
presents the image at every step); its own Ω', leak schedule, input scale and
θ produce binary spikes whose window counts c[k] are compared with k[t].

Reported per layer: the fraction of (neuron, window) pairs with c = k, the
number of mismatches and the largest |c − k|; and for the whole network the
argmax agreement of the logits (reparameterized logits × L vs M-HT logits),
their mean |Δ| and the share of entries within 1e-3·(1 + |ref|).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from tqdm.auto import tqdm

from .executor import neuron_dynamics, run_float
from .ir import Graph, Neuron, receives_spikes


@dataclass
class LayerExactness:
    layer: str
    pairs: int
    matching: int
    max_abs_diff: int

    @property
    def fraction(self) -> float:
        return self.matching / self.pairs if self.pairs else 1.0


@dataclass
class ExactnessReport:
    schedule: str
    levels: int
    images: int
    layers: list[LayerExactness]
    argmax_agreement: float
    mean_abs_dlogits: float
    within_tol: float

    @property
    def fraction(self) -> float:
        pairs = sum(layer.pairs for layer in self.layers)
        return sum(layer.matching for layer in self.layers) / pairs if pairs else 1.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["fraction"] = self.fraction
        for row, layer in zip(d["layers"], self.layers):
            row["fraction"] = layer.fraction
        return d


def _run_neuron(node: Neuron, current: np.ndarray, dtype=torch.float64) -> np.ndarray:
    cur = torch.as_tensor(current, dtype=dtype)
    leak = torch.as_tensor(node.leak, dtype=dtype)
    return neuron_dynamics(cur, node.threshold, node.levels, leak, node.v_init, node.input_scale).numpy()


def _mix(omega: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.einsum("tj,j...->t...", omega, x)


def exactness_report(source: Graph, compiled: Graph, x: np.ndarray, batch_size: int = 32,
                     progress: bool = False) -> ExactnessReport:
    """Compare ``compiled`` (reparameterized) with ``source`` (M-HT) per layer and end to end on ``x``."""
    levels = int(compiled.meta["reparam_levels"])
    neurons = source.neuron_layers()
    mix_inputs = {n.name: source.node(n.inputs[0]).inputs[0] for n in neurons}
    stats = {n.name: [0, 0, 0] for n in neurons}   # pairs, matching, max |c − k|
    src_logits = []
    for i in tqdm(range(0, len(x), batch_size), desc="exactness: per layer", disable=not progress, unit="batch"):
        src_run = run_float(source, x[i:i + batch_size], batch_size, torch.float64, capture=set(mix_inputs.values()))
        src_logits.append(src_run.logits)
        for n in neurons:
            X = src_run.captured[mix_inputs[n.name]].astype(np.float64)            # [T, B, ...]
            k = _run_neuron(n, _mix(source.node(n.inputs[0]).omega, X))             # levels [T, B, ...]
            new = compiled.node(n.name)
            new_mix = compiled.node(new.inputs[0])
            spiking = receives_spikes(compiled, new_mix.name)
            Xp = np.repeat(X, levels, axis=0) / (levels if spiking else 1)          # window sums equal X
            spikes = _run_neuron(new, _mix(new_mix.omega, Xp))                      # [L·T, B, ...]
            counts = spikes.reshape(X.shape[0], levels, *spikes.shape[1:]).sum(axis=1)
            diff = np.abs(counts - k)
            st = stats[n.name]
            st[0] += int(diff.size)
            st[1] += int((diff == 0).sum())
            st[2] = max(st[2], int(diff.max(initial=0)))
    layers = [LayerExactness(name, *st) for name, st in stats.items()]
    comp_run = run_float(compiled, x, batch_size, torch.float64, progress=progress, desc="exactness: LIF")
    ref, out = np.concatenate(src_logits), comp_run.logits * levels
    d = np.abs(out - ref)
    return ExactnessReport(schedule=str(compiled.meta.get("schedule")), levels=levels, images=len(x), layers=layers,
                           argmax_agreement=float((out.argmax(1) == ref.argmax(1)).mean()),
                           mean_abs_dlogits=float(d.mean()),
                           within_tol=float((d <= 1e-3 * (1 + np.abs(ref))).mean()))
