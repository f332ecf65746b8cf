"""The float reference executor of the IR: the oracle every later stage is compared with.

Layer-by-layer schedule: each node computes its whole ``[S, B, ...]``
sequence from its inputs' sequences, so T-GIM's non-causal mixing is just a
matrix product over the step axis. ``S`` is 1 for values that are the same at
every step (the analog input and what is computed from it before the first
neuron; they are computed once) and ``graph.steps`` otherwise. A value is
freed after its last consumer, so memory is bounded by a few layers'
sequences.

Neuron levels are found by comparisons (``v ≥ iθ``), never by ``floor(v/θ)``.
Spike events are counted per sample and layer as the sum of the emitted
levels (a level-k spike of an M-HT neuron counts k; a LIF spike counts 1), so
reparameterization keeps the totals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .ir import (Add, AvgPool2d, BatchNorm, Conv2d, Flatten, GlobalAvgPool, Graph, Input, Linear, MaxPool2d,
                 Neuron, Readout, TemporalMix)
from .convert.msat import MSATNeuron, run_msat_neuron   # the MSAT neuron kind (ANN→SNN conversion)


@dataclass
class RunResult:
    outputs: np.ndarray               # [steps, N, classes]
    logits: np.ndarray                # [N, classes], mean over steps
    spike_counts: np.ndarray          # [N, layers], spike events per sample (levels summed)
    layer_names: list[str]
    captured: dict[str, np.ndarray] = field(default_factory=dict)   # node name → [steps, N, ...]


def neuron_dynamics(current: torch.Tensor, threshold: float, levels: int, leak: torch.Tensor,
                    v_init: float, input_scale: float, return_peak: bool = False,
                    observe: Callable[[int, torch.Tensor], None] | None = None):
    """Run soft-reset (multi-level) neurons on input ``current`` [steps, ...]; returns spike levels k [steps, ...]
    (and, with ``return_peak``, the largest |v| reached, the membrane range calibration needs;
    ``observe(t, v)`` sees each step's membrane before the spike decision).

    ``v = leak[t]·v + input_scale·I(t)``; ``k = Σ_{i=1..levels} [v ≥ iθ]``; ``v -= kθ``.
    """
    theta = torch.tensor(threshold, dtype=current.dtype)
    v = torch.full_like(current[0], v_init) * theta
    peak = float(v.abs().max()) if return_peak and v.numel() else 0.0
    out = torch.empty_like(current)
    for t in range(current.shape[0]):
        v = leak[t] * v + current[t] * input_scale
        if return_peak:
            peak = max(peak, float(v.abs().max()))
        if observe is not None:
            observe(t, v)
        k = (v >= theta).to(current.dtype)
        for i in range(2, levels + 1):
            k += (v >= i * theta).to(current.dtype)
        out[t] = k
        v = v - k * theta
    return (out, peak) if return_peak else out


class _Params:
    """Per-run cache of node parameters as torch tensors of the run's dtype."""

    def __init__(self, dtype: torch.dtype, device: str):
        self.dtype, self.device, self.cache = dtype, device, {}

    def __call__(self, node, key: str):
        arr = getattr(node, key)
        if arr is None:
            return None
        ck = (node.name, key)
        if ck not in self.cache:
            self.cache[ck] = torch.as_tensor(np.asarray(arr), dtype=self.dtype, device=self.device)
        return self.cache[ck]


def _per_step(v: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    s, b = v.shape[:2]
    y = fn(v.reshape(s * b, *v.shape[2:]))
    return y.reshape(s, b, *y.shape[1:])


def _channel_view(p: torch.Tensor, ndim: int) -> torch.Tensor:
    return p.reshape(-1, *([1] * (ndim - 3)))   # [S, B, C, ...] → broadcast over C


def run_graph_batch(graph: Graph, x: torch.Tensor, params: _Params, capture: set[str] = frozenset()):
    """Run one batch ``x`` [B, C, H, W]; returns (outputs [steps,B,classes], counts [B,layers], captured)."""
    steps = graph.steps
    order = list(graph.topo())
    last_use: dict[str, int] = {}
    for i, node in enumerate(order):
        for src in node.inputs:
            last_use[src] = i
    values: dict[str, torch.Tensor] = {}
    counts, captured, outputs = [], {}, None
    for i, node in enumerate(order):
        ins = [values[s] for s in node.inputs]
        v = ins[0] if ins else None
        if isinstance(node, Input):
            out = x.to(params.dtype).unsqueeze(0)
        elif isinstance(node, Conv2d):
            w, b = params(node, "weight"), params(node, "bias")
            out = _per_step(v, lambda t: F.conv2d(t, w, b, node.stride, node.padding, node.dilation, node.groups))
        elif isinstance(node, Linear):
            w, b = params(node, "weight"), params(node, "bias")
            out = _per_step(v, lambda t: F.linear(t, w, b))
        elif isinstance(node, BatchNorm):
            scale = params(node, "weight") / torch.sqrt(params(node, "running_var") + node.eps)
            shift = params(node, "bias") - params(node, "running_mean") * scale
            out = v * _channel_view(scale, v.dim()) + _channel_view(shift, v.dim())
        elif isinstance(node, AvgPool2d):
            out = _per_step(v, lambda t: F.avg_pool2d(t, node.kernel, node.stride, node.padding))
        elif isinstance(node, GlobalAvgPool):
            out = v.mean(dim=(-2, -1), keepdim=True)
        elif isinstance(node, MaxPool2d):
            out = _per_step(v, lambda t: F.max_pool2d(t, node.kernel, node.stride, node.padding))
        elif isinstance(node, Add):
            out = ins[0] + ins[1]
        elif isinstance(node, Flatten):
            out = v.flatten(2)
        elif isinstance(node, TemporalMix):
            omega = params(node, "omega")
            if v.shape[0] == 1:
                out = omega.sum(1).reshape(steps, *([1] * (v.dim() - 1))) * v
            else:
                out = torch.einsum("tj,j...->t...", omega, v)
        elif isinstance(node, Neuron):
            cur = v.expand(steps, *v.shape[1:]) if v.shape[0] == 1 else v
            k = neuron_dynamics(cur, node.threshold, node.levels, params(node, "leak"), node.v_init,
                                node.input_scale)
            counts.append(k.sum(dim=tuple(d for d in range(k.dim()) if d != 1)))
            out = k * node.threshold
        elif isinstance(node, MSATNeuron):
            k, out = run_msat_neuron(node, v, steps, params)
            counts.append(k.sum(dim=tuple(d for d in range(k.dim()) if d != 1)))
        elif isinstance(node, Readout):
            outputs = v.expand(steps, *v.shape[1:]) if v.shape[0] == 1 else v
            out = outputs
        else:
            raise TypeError(f"executor: unknown node kind {node.kind!r} ({node.name})")
        if node.name in capture:
            captured[node.name] = out.expand(steps, *out.shape[1:]) if out.shape[0] == 1 else out
        values[node.name] = out
        for src in set(node.inputs):
            if last_use.get(src) == i:
                del values[src]
    count_t = torch.stack(counts, dim=1) if counts else torch.zeros(x.shape[0], 0)
    return outputs, count_t, captured


def run_float(graph: Graph, x: np.ndarray | torch.Tensor, batch_size: int = 64, dtype: torch.dtype = torch.float32,
              device: str = "cpu", progress: bool = False, capture: set[str] = frozenset(),
              desc: str = "simulate (float)") -> RunResult:
    """Run the graph in floating point on ``x`` [N, C, H, W]; outputs, logits and spike counts."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    expected = tuple(graph.input.input_shape)
    if tuple(x.shape[1:]) != expected:
        from .errors import LmhtcError

        raise LmhtcError(f"inputs have per-sample shape {tuple(x.shape[1:])}, the network expects {expected}")
    params = _Params(dtype, device)
    outs, cnts, caps = [], [], {name: [] for name in capture}
    with torch.no_grad():
        for i in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, unit="batch"):
            o, c, cap = run_graph_batch(graph, x[i:i + batch_size].to(device), params, capture)
            outs.append(o.cpu())
            cnts.append(c.cpu())
            for name, val in cap.items():
                caps[name].append(val.cpu())
    outputs = torch.cat(outs, dim=1).numpy()
    return RunResult(outputs=outputs, logits=outputs.mean(axis=0), spike_counts=torch.cat(cnts).numpy(),
                     layer_names=[n.name for n in graph.nodes_of(Neuron, MSATNeuron)],
                     captured={k: torch.cat(v, dim=1).numpy() for k, v in caps.items()})
