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


def exactness_batch(source: Graph, compiled: Graph, x: np.ndarray, batch_size: int = 32) -> dict:
    """One batch's per-image figures: per layer (neuron, window) pairs, matches and max |c − k|; both logits."""
    levels = int(compiled.meta["reparam_levels"])
    neurons = source.neuron_layers()
    mix_inputs = {n.name: source.node(n.inputs[0]).inputs[0] for n in neurons}
    src_run = run_float(source, x, batch_size, torch.float64, capture=set(mix_inputs.values()))
    layers = {}
    for n in neurons:
        X = src_run.captured[mix_inputs[n.name]].astype(np.float64)            # [T, B, ...]
        k = _run_neuron(n, _mix(source.node(n.inputs[0]).omega, X))             # levels [T, B, ...]
        new = compiled.node(n.name)
        new_mix = compiled.node(new.inputs[0])
        spiking = receives_spikes(compiled, new_mix.name)
        Xp = np.repeat(X, levels, axis=0) / (levels if spiking else 1)          # window sums equal X
        spikes = _run_neuron(new, _mix(new_mix.omega, Xp))                      # [L·T, B, ...]
        counts = spikes.reshape(X.shape[0], levels, *spikes.shape[1:]).sum(axis=1)
        diff = np.moveaxis(np.abs(counts - k), 1, 0).reshape(len(x), -1)       # [B, pairs per image]
        layers[n.name] = {"pairs": np.full(len(x), diff.shape[1], dtype=np.int64),
                          "matching": (diff == 0).sum(1).astype(np.int64),
                          "max_abs_diff": diff.max(1, initial=0).astype(np.int64)}
    comp_run = run_float(compiled, x, batch_size, torch.float64)
    return {"schedule": str(compiled.meta.get("schedule")), "levels": levels, "layers": layers,
            "source_logits": src_run.logits, "compiled_logits": comp_run.logits}


def finish_exactness(rec: dict) -> ExactnessReport:
    """The report from the combined per-image record of all batches."""
    layers = [LayerExactness(name, int(st["pairs"].sum()), int(st["matching"].sum()),
                             int(st["max_abs_diff"].max(initial=0))) for name, st in rec["layers"].items()]
    ref, out = rec["source_logits"], rec["compiled_logits"] * rec["levels"]
    d = np.abs(out - ref)
    return ExactnessReport(schedule=rec["schedule"], levels=rec["levels"], images=len(ref), layers=layers,
                           argmax_agreement=float((out.argmax(1) == ref.argmax(1)).mean()),
                           mean_abs_dlogits=float(d.mean()),
                           within_tol=float((d <= 1e-3 * (1 + np.abs(ref))).mean()))


def exactness_report(source: Graph, compiled: Graph, x: np.ndarray, batch_size: int = 32,
                     progress: bool = False) -> ExactnessReport:
    """Compare ``compiled`` (reparameterized) with ``source`` (M-HT) per layer and end to end on ``x``."""
    from .records import combine

    records = [exactness_batch(source, compiled, x[i:i + batch_size], batch_size)
               for i in tqdm(range(0, len(x), batch_size), desc="exactness", disable=not progress, unit="batch")]
    return finish_exactness(combine(records))
