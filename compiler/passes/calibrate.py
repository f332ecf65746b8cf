"""One calibration pass of the float network: every statistic the integer lowering's methods use.

Invariant: the float executor (``compiler/executor.py``) runs once per batch of calibration data, with
the synaptic products a T-GIM allows taken once per window on window sums (``float_window_plan``, as in
``run_float(windows=True)``;
the values it observes — neuron inputs, spike trains, identity shortcuts — are per step as ever), and
everything is accumulated from that run — per neuron layer the largest |v| of the executor's own membrane
loop (membrane headroom) and the membranes lying within ``band``·θ of a level k·θ (threshold-aware
rounding; a float64 membrane loop on the run's T-GIM outputs, only when asked for); per synaptic input the
mean over samples and steps of the input map (bias correction) and the per-channel mean of x²
(data-aware scale search). Nothing depends on the batch split but the float rounding of the run, and
nothing on the threads the batches run on (each batch's statistics are added up in batch order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import LmhtcError
from ..ir import Add, Conv2d, Graph, Linear, Readout, TemporalMix

NEAR_BAND = 5e-3          # membranes within 0.5 % of θ of a level are "near" a threshold
NEAR_MAX = 200_000        # at most this many near records per layer (the closest kept)
CALIB_BATCH = 4           # images per executor batch (ResNet-18, 64 images, whole compile on two threads: peak RSS 808–853 MiB; batches of 2 or 8 no faster; one batch at a time it was 743–795 MiB at 4, 806–902 at 8, 953–967 at 16)


@dataclass
class Near:
    """Membranes near a threshold: channel, step, level k, spikes emitted before the step (levels
    summed) and margin ``(v − k·θ)/θ`` of each record."""
    channel: np.ndarray
    step: np.ndarray
    level: np.ndarray
    prior: np.ndarray
    margin: np.ndarray


@dataclass
class Calibration:
    images: int
    peaks: dict[str, float]                    # neuron → max |v|
    mean_in: dict[str, np.ndarray]             # synaptic input node → E[x] per element (samples, steps)
    sq_in: dict[str, np.ndarray]               # synaptic input node → E[x²] per channel
    near: dict[str, Near] = field(default_factory=dict)


def synaptic_sources(graph: Graph) -> set[str]:
    """The nodes whose values enter a synaptic sum: conv/linear inputs and identity shortcuts."""
    srcs = set()
    for root in graph.nodes_of(TemporalMix, Readout):
        stack = [root.inputs[0]]
        while stack:
            node = graph.node(stack.pop())
            if isinstance(node, Add):
                stack.extend(node.inputs)
            elif isinstance(node, (Conv2d, Linear)):
                srcs.add(node.inputs[0])
            else:
                srcs.add(node.name)
    return srcs


def _channel_mean(v: torch.Tensor) -> torch.Tensor:
    """[S, B, C, ...] → mean per channel C."""
    return v.transpose(0, 2).reshape(v.shape[2], -1).mean(dim=1)


def _keep_closest(parts: list[tuple], limit: int) -> Near:
    cols = [np.concatenate([p[i] for p in parts]) if parts else np.zeros(0) for i in range(5)]
    if len(cols[-1]) > limit:
        idx = np.argpartition(np.abs(cols[-1]), limit)[:limit]
        cols = [c[idx] for c in cols]
    return Near(*(c.astype(np.int64) for c in cols[:4]), cols[4].astype(np.float64))


def calibrate(graph: Graph, calib: np.ndarray, batch_size: int = CALIB_BATCH, progress: bool = False,
              inputs: bool = True, near: bool = True, band: float = NEAR_BAND, squares: bool = True,
              workers: int | None = None) -> Calibration:
    """Run the float ``graph`` on ``calib`` once and gather the lowering's statistics (the synaptic input
    moments only with ``inputs`` — E[x²] only with ``squares`` too —, the near-threshold records only with
    ``near``).

    One pass of the float executor (``run_graph_batch`` per batch, one progress bar): its ``observe`` hook
    reduces each value as it is computed — nothing is captured, every sequence is freed after its last
    consumer. Each statistic is computed from the float32 value expanded over the steps, reduced in float64
    (cast to a float64 copy only where a product or a membrane loop needs one) as a capture-then-reduce pass
    would, so the statistics, and the integer graph made from them, do not depend on this schedule
    (tests/test_calibrate.py compares them with a plain capture-then-reduce reference bit for bit). The
    batches run on ``workers`` threads (``batch_threads.ordered_map``); each batch's statistics are its own
    and are added up in batch order, so they do not depend on the threads either.
    """
    from ..batch_threads import ordered_map
    from ..executor import _Params, input_batches, is_sequence, run_graph_batch
    from ..lif_node import LIFNeuron
    from ..lowering import check_lowerable
    from ..analysis.windows import float_window_plan

    lifs: dict[str, list] = {}                                       # lif input → its lif layers
    for n in graph.nodes_of(LIFNeuron):                              # their peak |u| per channel (headroom)
        lifs.setdefault(n.inputs[0], []).append(n)
    observed = _Observed(graph, {n.inputs[0]: n for n in graph.neuron_layers()}, lifs,
                         synaptic_sources(graph) if inputs else set(), near, squares, band)
    batches = input_batches(graph, calib, batch_size)
    if not batches:
        raise LmhtcError("calibration data holds no images")
    table, plan, params = check_lowerable(graph, "float"), float_window_plan(graph), _Params(torch.float32, "cpu")

    def batch_stats(xb: torch.Tensor) -> _BatchStats:
        stats = observed.empty()
        with torch.no_grad():           # grad mode is per thread
            run_graph_batch(graph, xb, params, frozenset(), table, lambda *a: observed(stats, *a), stats.peaks,
                            plan)
        return stats

    total = observed.empty()
    for stats in tqdm(ordered_map(batch_stats, batches, workers), total=len(batches), desc="calibrate",
                      disable=not progress, unit="batch"):
        total.add(stats)
    count = np.shape(calib)[int(is_sequence(graph, calib))]
    steps = graph.steps
    mean_in = {k: (v / (count * steps)).numpy() for k, v in total.sums.items()}
    sq_in = {k: (v / (count * steps)).numpy() for k, v in total.sqs.items()}
    return Calibration(count, total.peaks, mean_in, sq_in,
                       {k: _keep_closest(p, NEAR_MAX) for k, p in total.near.items()})


@dataclass
class _BatchStats:
    """What calibration gathers from one batch (or, added up in batch order, from all of them)."""
    peaks: dict[str, float | np.ndarray]           # neuron → max |v|; lif → max |u| per channel
    sums: dict[str, torch.Tensor] = field(default_factory=dict)     # synaptic source → Σ x (float64)
    sqs: dict[str, torch.Tensor] = field(default_factory=dict)      # synaptic source → Σ x² per channel
    near: dict[str, list] = field(default_factory=dict)             # neuron → its near records' parts

    def add(self, other: "_BatchStats") -> None:
        """Fold ``other`` (the next batch) in: maxima, float64 sums in batch order, records appended."""
        for k, v in other.peaks.items():
            self.peaks[k] = np.maximum(self.peaks[k], v) if isinstance(v, np.ndarray) else max(self.peaks[k], v)
        for mine, theirs in ((self.sums, other.sums), (self.sqs, other.sqs)):
            for k, v in theirs.items():
                mine[k] = mine[k] + v if k in mine else v
        for k, parts in other.near.items():
            self.near[k].extend(parts)


class _Observed:
    """The ``observe`` hook of a calibration run: reduces the values it is shown into a batch's statistics."""

    def __init__(self, graph: Graph, neurons: dict, lifs: dict, srcs: set, near: bool, squares: bool,
                 band: float):
        from ..executor import _Params
        self.neurons, self.lifs, self.srcs = neurons, lifs, srcs      # neurons: T-GIM output → its neuron
        self.near, self.squares, self.band, self.steps = near, squares, band, graph.steps
        self.f64 = _Params(torch.float64, "cpu")

    def empty(self) -> _BatchStats:
        return _BatchStats({n.name: 0.0 for n in self.neurons.values()}
                           | {n.name: np.zeros(n.shape[0]) for ns in self.lifs.values() for n in ns},
                           near={n.name: [] for n in self.neurons.values()})

    def __call__(self, stats: _BatchStats, node, ins, out) -> None:
        from ..executor import neuron_dynamics
        from ..lif_node import lif_dynamics

        name, neurons, lifs, srcs = node.name, self.neurons, self.lifs, self.srcs
        if name not in srcs and (name not in neurons or not self.near) and name not in lifs:
            return
        v = out.expand(self.steps, *out.shape[1:]) if out.shape[0] == 1 else out      # [steps, B, ...]
        if name in lifs or (name in srcs and self.squares) or (name in neurons and self.near):
            v = v.to(torch.float64).contiguous()    # the statistics' one float64 value
        for n in lifs.get(name, ()):
            _, u = lif_dynamics(v, n, self.f64)
            per = u.abs().transpose(0, 2).reshape(n.shape[0], -1).amax(dim=1).numpy()
            stats.peaks[n.name] = np.maximum(stats.peaks[n.name], per)
        if name in srcs:
            stats.sums[name] = v.sum(dim=(0, 1), dtype=torch.float64)     # float64 sums without a float64 copy
            if self.squares:
                stats.sqs[name] = _channel_mean(v * v) * (v.shape[0] * v.shape[1])
        if name in neurons and self.near:
            n = neurons[name]
            neuron_dynamics(v, n.threshold, n.levels, self.f64(n, "leak"), n.v_init, n.input_scale,
                            observe=_near_observer(stats.near[n.name], n.levels, float(n.threshold), self.band,
                                                   v[0]))


def _near_observer(parts: list, levels: int, theta: float, band: float, like: torch.Tensor):
    """``observe(t, v)`` for ``neuron_dynamics``: appends the near-threshold records of step ``t`` to ``parts``
    (channel, step, level, spikes emitted before the step, margin)."""
    prior = torch.zeros_like(like)

    def observe(t, v):
        nonlocal prior
        k = torch.clamp(torch.round(v / theta), 1, levels)
        m = v / theta - k
        hit = tuple((m.abs() < band).nonzero(as_tuple=False).T)
        if len(hit[0]):
            parts.append((hit[1].numpy(), np.full(len(hit[0]), t), k[hit].numpy(), prior[hit].numpy(),
                          m[hit].numpy()))
        prior = prior + sum((v >= i * theta).to(v.dtype) for i in range(1, levels + 1))

    return observe
