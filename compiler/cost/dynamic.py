"""Dynamic cost pass: spike events and synaptic operations of a network on given data.

Runs the network — the bit-accurate integer runtime on an integer graph
(``mode="int"``), the float reference executor otherwise (``mode="float"``) —
captures every event source's output per step, and counts:

* spike events per image, layer and step (a level-k spike counts k, so an
  M-HT network before reparameterization and its LIF form count alike; float
  outputs k·θ are divided by the neuron's θ);
* SOPs per image, synaptic unit and step: ``Σ_p k[p]·fanout[p]`` with the
  fan-out maps of ``fanout.cost_graph`` (pooling folded into the next synaptic
  layer, identity shortcuts fan-out 1);
* MACs of the analog-input layer, once per distinct input frame.

Invariant: in int mode the SOPs equal the runtime's own event counts
(``IntRunResult.sops_by_layer_step``) exactly, and the spike events its
``spike_counts``; every batch is checked, and a difference is an internal error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import LmhtcError
from ..ir import Graph
from ..records import combine
from .fanout import CostGraph, cost_graph


@dataclass
class Activity:
    mode: str                       # int | float
    steps: int
    layer_names: list[str]          # neuron layers
    neurons: list[int]
    spikes: np.ndarray              # [N, layers, steps] spike events per image (levels summed)
    unit_names: list[str]           # synaptic units fed by spikes
    sops: np.ndarray                # [N, units, steps]
    macs: np.ndarray                # [N] analog-input MACs (once per distinct frame)
    logits: np.ndarray              # [N, classes] (dequantized in int mode)

    @property
    def images(self) -> int:
        return int(self.spikes.shape[0])

    def firing_rate_per_step(self) -> np.ndarray:
        """[layers, steps]: mean spike count per neuron and step (levels summed; at most the levels L)."""
        return self.spikes.mean(axis=0) / np.asarray(self.neurons, dtype=np.float64)[:, None]

    def sops_per_image(self) -> np.ndarray:
        """[units]: mean SOPs per image."""
        return self.sops.sum(axis=2).mean(axis=0)


class SopCounter:
    """Turns captured source outputs into SOPs per unit: one matrix product per source."""

    def __init__(self, cg: CostGraph):
        self.units = [u.name for u in cg.spiking_units()]
        index = {n: i for i, n in enumerate(self.units)}
        self.per_source: dict[str, tuple[list[int], torch.Tensor]] = {}
        for s in cg.sources:
            cols = [(index[u.name], u.fanout[s]) for u in cg.spiking_units() if s in u.fanout]
            if not cols:
                continue
            mat = np.stack([f.reshape(-1) for _, f in cols], axis=1).astype(np.float64)
            self.per_source[s] = ([i for i, _ in cols], torch.from_numpy(mat))

    def count(self, events: dict[str, np.ndarray], steps: int, b: int) -> np.ndarray:
        """``events[source]`` [steps, B, ...] spike counts → SOPs [B, units, steps] (exact: integer sums < 2^53;
        all zeros for a network without spiking layers)."""
        out = np.zeros((b, len(self.units), steps), dtype=np.int64)
        for s, (cols, mat) in self.per_source.items():
            k = torch.as_tensor(events[s]).reshape(steps * b, -1).to(torch.float64)
            per = torch.round(k @ mat).to(torch.int64).reshape(steps, b, len(cols)).permute(1, 2, 0).numpy()
            out[:, cols, :] += per
        return out


def _float_events(out: np.ndarray, threshold: float | None) -> np.ndarray:
    """Spike counts from a float neuron output: k·θ → k (rounded: k is an integer), or ≠ 0 for binary kinds."""
    if threshold is None:
        return (out != 0).astype(np.int64)
    return np.rint(out.astype(np.float64) / threshold).astype(np.int64)


def _layer_events(events: dict[str, np.ndarray], names: list[str], steps: int, b: int) -> np.ndarray:
    """[B, layers, steps] total spike events per layer and step (no columns without spiking layers)."""
    per = [events[n].reshape(events[n].shape[0], events[n].shape[1], -1).sum(-1, dtype=np.int64).T for n in names]
    return np.stack(per, axis=1) if per else np.zeros((b, 0, steps), dtype=np.int64)


def measure_activity(graph: Graph, x: np.ndarray, mode: str, batch_size: int = 16, progress: bool = False,
                     cg: CostGraph | None = None) -> Activity:
    """Run ``graph`` on ``x`` [N, C, H, W] or a per-step sequence [steps, N, ...] and count
    spike events, SOPs and analog MACs per image."""
    if mode not in ("int", "float"):
        raise LmhtcError(f"mode must be int or float, got {mode!r}")
    integer = bool(graph.meta.get("integer"))
    if (mode == "int") != integer:
        raise LmhtcError(f"mode {mode!r} needs {'an integer' if mode == 'int' else 'a float'} graph")
    if batch_size < 1:
        raise LmhtcError(f"batch size must be >= 1, got {batch_size}")
    cg = cg or cost_graph(graph)
    counter = SopCounter(cg)
    layers = [layer for layer in cg.layers if layer.kind == "neuron"]
    names = [layer.name for layer in layers]
    capture = set(cg.sources)
    macs_per_image = sum(u.ann_macs for u in cg.units if u.analog) * cg.input_frames
    from ..executor import is_sequence
    from ..verify import per_step

    if mode == "int":      # a sequence-encoded (NIR) network counts its analog MACs at every step
        x = per_step(graph, x)
    seq = is_sequence(graph, x)   # a per-step sequence: samples along axis 1
    n = x.shape[1] if seq else len(x)
    records = [_batch_record(graph, x[:, i:i + batch_size] if seq else x[i:i + batch_size], mode, cg, counter,
                             names, layers, capture, macs_per_image, seq)
               for i in tqdm(range(0, n, batch_size), desc=f"report ({mode})", disable=not progress, unit="batch")]
    if not records:
        return Activity(mode=mode, steps=cg.steps, layer_names=names, neurons=[layer.neurons for layer in layers],
                        spikes=np.zeros((0, len(names), cg.steps), np.int64), unit_names=counter.units,
                        sops=np.zeros((0, len(counter.units), cg.steps), np.int64),
                        macs=np.zeros(0, dtype=np.int64), logits=np.zeros((0, 0)))
    return Activity(**combine(records))


def _batch_record(graph: Graph, xb: np.ndarray, mode: str, cg: CostGraph, counter: SopCounter, names: list[str],
                  layers: list, capture: set[str], macs_per_image: int, seq: bool = False) -> dict:
    """The Activity fields of one batch (joined over batches by ``records.combine``)."""
    if mode == "int":
        from lmhtc.runtime.simulator import run_int

        r = run_int(graph, xb, batch_size=xb.shape[int(seq)], capture=capture)
        events, b = r.captured, xb.shape[int(seq)]
        counted = counter.count(events, cg.steps, b)
        _check_against_runtime(r, counter.units, counted, names, _layer_events(events, names, cg.steps, b))
        if not np.array_equal(r.macs, np.full(xb.shape[int(seq)], macs_per_image)):
            raise RuntimeError(f"internal: analog MACs {r.macs[:1]} differ from the cost graph's {macs_per_image}")
    else:
        from ..executor import run_float

        r = run_float(graph, xb, batch_size=xb.shape[1] if seq else len(xb), capture=capture)
        events, b = {name: _float_events(r.captured[name], cg.sources[name].threshold) for name in capture}, \
            xb.shape[int(seq)]
        counted = counter.count(events, cg.steps, b)
    return {"mode": mode, "steps": int(cg.steps), "layer_names": list(names),
            "neurons": [int(layer.neurons) for layer in layers], "spikes": _layer_events(events, names, cg.steps, b),
            "unit_names": list(counter.units), "sops": counted,
            "macs": np.full(xb.shape[1] if seq else len(xb), macs_per_image, dtype=np.int64),
            "logits": np.asarray(r.logits, dtype=np.float64)}


def _check_against_runtime(r, units: list[str], counted: np.ndarray, layer_names: list[str],
                           layer_events: np.ndarray) -> None:
    """The pass's figures must equal the runtime's own counts exactly."""
    if r.synaptic_layer_names != units:
        raise RuntimeError(f"internal: synaptic layers {units} differ from the runtime's {r.synaptic_layer_names}")
    if not np.array_equal(counted, r.sops_by_layer_step):
        bad = [u for i, u in enumerate(units) if not np.array_equal(counted[:, i], r.sops_by_layer_step[:, i])]
        raise RuntimeError(f"internal: SOPs of {bad[0]!r} differ from the runtime's count")
    if r.layer_names != layer_names or not np.array_equal(layer_events.sum(2), r.spike_counts):
        raise RuntimeError("internal: spike events differ from the runtime's count")
