"""One calibration pass of the float network: every statistic the integer lowering's methods use.

Invariant: the float executor (``compiler/executor.py``) runs once per batch of calibration data, and
everything is accumulated from that run — per neuron layer the largest |v| (membrane headroom) and the
membranes lying within ``band``·θ of a level k·θ (threshold-aware rounding); per synaptic input the
mean over samples and steps of the input map (bias correction) and the per-channel mean of x²
(data-aware scale search). Nothing depends on the batch split but the float rounding of the run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..ir import Add, Conv2d, Graph, Linear, Readout, TemporalMix

NEAR_BAND = 5e-3          # membranes within 0.5 % of θ of a level are "near" a threshold
NEAR_MAX = 200_000        # at most this many near records per layer (the closest kept)


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


def calibrate(graph: Graph, calib: np.ndarray, batch_size: int = 32, progress: bool = False,
              inputs: bool = True, near: bool = True, band: float = NEAR_BAND) -> Calibration:
    """Run the float ``graph`` on ``calib`` once and gather the lowering's statistics (the synaptic input
    moments only with ``inputs``, the near-threshold records only with ``near``)."""
    from ..executor import neuron_dynamics, run_float

    from ..lif_node import LIFNeuron, lif_dynamics
    from ..executor import _Params, is_sequence

    neurons = graph.neuron_layers()
    mix_of = {n.name: n.inputs[0] for n in neurons}
    lifs = graph.nodes_of(LIFNeuron)      # their peak |u| per channel (the membrane headroom)
    srcs = synaptic_sources(graph) if inputs else set()
    peaks = {n.name: 0.0 for n in neurons} | {n.name: np.zeros(n.shape[0]) for n in lifs}
    sums: dict[str, torch.Tensor] = {}
    sqs: dict[str, torch.Tensor] = {}
    near_parts: dict[str, list] = {n.name: [] for n in neurons}
    count = 0
    seq = is_sequence(graph, calib)      # a per-step sequence [steps, N, ...]: samples along axis 1
    for i in tqdm(range(0, calib.shape[int(seq)], batch_size), desc="calibrate", disable=not progress,
                  unit="batch"):
        xb = calib[:, i:i + batch_size] if seq else calib[i:i + batch_size]
        run = run_float(graph, xb, batch_size, capture=set(mix_of.values()) | srcs | {n.inputs[0] for n in lifs})
        for n in lifs:
            _, u = lif_dynamics(torch.as_tensor(run.captured[n.inputs[0]], dtype=torch.float64), n,
                                _Params(torch.float64, "cpu"))
            per = u.abs().transpose(0, 2).reshape(n.shape[0], -1).amax(dim=1).numpy()
            peaks[n.name] = np.maximum(peaks[n.name], per)
        for name in srcs:
            v = torch.as_tensor(run.captured[name], dtype=torch.float64)
            w = v.shape[0] * v.shape[1]
            s, q = v.sum(dim=(0, 1)), _channel_mean(v * v) * w
            sums[name] = sums[name] + s if name in sums else s
            sqs[name] = sqs[name] + q if name in sqs else q
        count += xb.shape[int(seq)]
        for n in neurons:
            cur = torch.as_tensor(run.captured[mix_of[n.name]], dtype=torch.float64)
            theta = float(n.threshold)

            state = {"prior": torch.zeros_like(cur[0])}

            def observe(t, v, parts=near_parts[n.name], levels=n.levels, theta=theta, state=state):
                k = torch.clamp(torch.round(v / theta), 1, levels)
                m = v / theta - k
                hit = tuple((m.abs() < band).nonzero(as_tuple=False).T)
                if len(hit[0]):
                    parts.append((hit[1].numpy(), np.full(len(hit[0]), t), k[hit].numpy(),
                                  state["prior"][hit].numpy(), m[hit].numpy()))
                fired = sum((v >= i * theta).to(v.dtype) for i in range(1, levels + 1))
                state["prior"] = state["prior"] + fired

            _, peak = neuron_dynamics(cur, n.threshold, n.levels, torch.as_tensor(n.leak, dtype=torch.float64),
                                      n.v_init, n.input_scale, return_peak=True, observe=observe if near else None)
            peaks[n.name] = max(peaks[n.name], peak)
    steps = graph.steps      # captured values hold every step (constant ones expanded)
    mean_in = {k: (v / (count * steps)).numpy() for k, v in sums.items()}
    sq_in = {k: (v / (count * steps)).numpy() for k, v in sqs.items()}
    return Calibration(count, peaks, mean_in, sq_in, {k: _keep_closest(p, NEAR_MAX) for k, p in near_parts.items()})
