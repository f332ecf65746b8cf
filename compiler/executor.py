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

from .analysis.windows import float_window_plan
from .convert.msat import MSATNeuron, run_msat_neuron   # the MSAT neuron kind (ANN→SNN conversion)
from .errors import LmhtcError
from .ir import Graph, Neuron
from .lowering import check_lowerable


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
    ``observe(t, v)`` sees each step's membrane before the spike decision; ``v`` is updated in place
    afterwards, so an observer reads it during the call and keeps no reference).

    ``v = leak[t]·v + input_scale·I(t)``; ``k = Σ_{i=1..levels} [v ≥ iθ]``; ``v -= kθ``.
    """
    theta = torch.tensor(threshold, dtype=current.dtype)
    v = torch.full_like(current[0], v_init) * theta
    peak = _abs_max(v) if return_peak and v.numel() else 0.0
    out = torch.empty_like(current)
    # the same roundings as ``v = leak[t]·v + I(t)·input_scale`` (one multiply or add per term, in place);
    # a multiply by exactly 1 is skipped (x·1 = x in every precision)
    for t in range(current.shape[0]):
        if float(leak[t]) != 1.0:
            v.mul_(leak[t])
        v.add_(current[t] if input_scale == 1.0 else current[t] * input_scale)
        if return_peak and v.numel():
            peak = max(peak, _abs_max(v))
        if observe is not None:
            observe(t, v)
        k = out[t]
        k.copy_(v >= theta)
        for i in range(2, levels + 1):
            k.add_(v >= i * theta)
        v.sub_(k * theta)
    return (out, peak) if return_peak else out


def _abs_max(v: torch.Tensor) -> float:
    """max |v| in one pass (max(v_max, −v_min), the same value as ``v.abs().max()``)."""
    lo, hi = torch.aminmax(v)
    return max(float(hi), -float(lo))


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


class _Ctx:
    """What a lowering sees besides its node and inputs: the run's parameters, the steps, the spike counts,
    and the window plan of a run on window sums."""

    def __init__(self, params: _Params, steps: int, x: torch.Tensor, peaks: dict | None = None,
                 windows: dict[str, int] | None = None):
        self.params, self.steps, self.x = params, steps, x
        self.peaks = peaks          # when given: neuron name → largest |v| of this run's membranes so far
        self.counts: list[torch.Tensor] = []
        self.outputs: torch.Tensor | None = None
        self.windows = windows or {}            # conv/linear → window size L (products on window sums)
        self.window_form: dict[str, int] = {}   # node → L where its value is [steps/L, B, ...] window sums

    def window_of(self, node, ins) -> int:
        """L when ``node`` (a planned conv/linear) runs on window sums of a per-step input, else 0."""
        lw = self.windows.get(node.name, 0)
        return lw if lw and ins[0].shape[0] == self.steps else 0

    def count(self, k: torch.Tensor) -> None:
        self.counts.append(k.sum(dim=tuple(d for d in range(k.dim()) if d != 1)))


def _window_sums(v: torch.Tensor, lw: int) -> torch.Tensor:
    """[steps, B, ...] → [steps/L, B, ...]: the sum of each window of ``lw`` steps."""
    return v.reshape(v.shape[0] // lw, lw, *v.shape[1:]).sum(dim=1)


def _synaptic_input(node, ins, ctx):
    """(input, bias) of a conv/linear: per step, or — planned for window sums — the window sums of its
    input and L·bias (W·Σ_m s(m) + L·b = Σ_m (W·s(m) + b) in real arithmetic)."""
    b = ctx.params(node, "bias")
    lw = ctx.window_of(node, ins)
    if not lw:
        return ins[0], b
    ctx.window_form[node.name] = lw
    return _window_sums(ins[0], lw), None if b is None else b * lw


def _conv(node, ins, ctx):
    w = ctx.params(node, "weight")
    x, b = _synaptic_input(node, ins, ctx)
    return _per_step(x, lambda t: F.conv2d(t, w, b, node.stride, node.padding, node.dilation, node.groups))


def _linear(node, ins, ctx):
    w = ctx.params(node, "weight")
    x, b = _synaptic_input(node, ins, ctx)
    return _per_step(x, lambda t: F.linear(t, w, b))


def _add(node, ins, ctx):
    """A sum; inside a group run on window sums, every addend in window form (a per-step value summed per
    window, a static one times L)."""
    forms = {ctx.window_form[i] for i in node.inputs if i in ctx.window_form}
    if not forms:
        return ins[0] + ins[1]
    (lw,) = forms
    ctx.window_form[node.name] = lw
    a, b = (v if i in ctx.window_form else v * lw if v.shape[0] == 1 else _window_sums(v, lw)
            for i, v in zip(node.inputs, ins))
    return a + b


def _batchnorm(node, ins, ctx):
    v, p = ins[0], ctx.params
    scale = p(node, "weight") / torch.sqrt(p(node, "running_var") + node.eps)
    shift = p(node, "bias") - p(node, "running_mean") * scale
    return v * _channel_view(scale, v.dim()) + _channel_view(shift, v.dim())


def _temporal_mix(node, ins, ctx):
    v, omega = ins[0], ctx.params(node, "omega")
    lw = ctx.window_form.get(node.inputs[0])
    if lw:        # window sums: Ω'[t, m] is constant over each window's columns
        return torch.einsum("tk,k...->t...", omega[:, ::lw], v)
    if v.shape[0] == 1:
        return omega.sum(1).reshape(ctx.steps, *([1] * (v.dim() - 1))) * v
    return torch.einsum("tj,j...->t...", omega, v)


def _neuron(node, ins, ctx):
    v = ins[0]
    cur = v.expand(ctx.steps, *v.shape[1:]) if v.shape[0] == 1 else v
    run = neuron_dynamics(cur, node.threshold, node.levels, ctx.params(node, "leak"), node.v_init, node.input_scale,
                          return_peak=ctx.peaks is not None)
    if ctx.peaks is None:
        k = run
    else:
        k, peak = run
        ctx.peaks[node.name] = max(ctx.peaks.get(node.name, 0.0), peak)
    ctx.count(k)
    return k * node.threshold


def _msat_neuron(node, ins, ctx):
    k, out = run_msat_neuron(node, ins[0], ctx.steps, ctx.params)
    ctx.count(k)
    return out


def _input(node, ins, ctx):
    x = ctx.x.to(ctx.params.dtype)
    return x.unsqueeze(0) if x.dim() == len(node.input_shape) + 1 else x     # static input: one step


def _own_semantics(node, ins, ctx):
    """Kinds that carry their float semantics themselves (the NIR kinds: ``lif``, ``scale``, ...)."""
    out, k = node.run_float(ins[0], ctx.steps, ctx.params)
    if k is not None:
        ctx.count(k)
    return out


def _readout(node, ins, ctx):
    v = ins[0]
    ctx.outputs = v.expand(ctx.steps, *v.shape[1:]) if v.shape[0] == 1 else v
    return ctx.outputs


# The float executor's lowering table: node kind → (node, input sequences, context) → output sequence.
LOWERING = {
    "input": _input,
    "conv2d": _conv,
    "linear": _linear,
    "batchnorm": _batchnorm,
    "avgpool2d": lambda node, ins, ctx: _per_step(ins[0], lambda t: F.avg_pool2d(t, node.kernel, node.stride,
                                                                                node.padding)),
    "globalavgpool": lambda node, ins, ctx: ins[0].mean(dim=(-2, -1), keepdim=True),
    "maxpool2d": lambda node, ins, ctx: _per_step(ins[0], lambda t: F.max_pool2d(t, node.kernel, node.stride,
                                                                                node.padding)),
    "add": _add,
    "flatten": lambda node, ins, ctx: ins[0].flatten(2),
    "temporal_mix": _temporal_mix,
    "neuron": _neuron,
    MSATNeuron.kind: _msat_neuron,
    "readout": _readout,
    **{kind: _own_semantics for kind in ("lif", "scale", "sum_pool2d", "conv1d")},   # compiler/lif_node.py, nir_ops.py
}


def run_graph_batch(graph: Graph, x: torch.Tensor, params: _Params, capture: set[str] = frozenset(),
                    table: dict | None = None, observe: Callable | None = None, peaks: dict | None = None,
                    windows: dict[str, int] | None = None):
    """Run one batch ``x`` [B, C, H, W] (or a sequence [steps, B, ...]); returns (outputs [steps,B,classes],
    counts [B,layers], captured).

    ``observe(node, inputs, output)``, when given, sees every node's values as they are computed (before they
    are freed), so a caller can reduce them on the fly instead of capturing whole sequences. ``peaks``, when
    given, gathers each neuron layer's largest membrane |v| of the run (its own loop, the run's dtype).
    ``windows`` (``float_window_plan``): the convs/linears that run on window sums; the values of their
    groups up to the T-GIM are then window sums, which ``observe`` sees as such and ``capture`` refuses."""
    table = table or check_lowerable(graph, "float")
    steps = graph.steps
    order = list(graph.topo())
    last_use: dict[str, int] = {}
    for i, node in enumerate(order):
        for src in node.inputs:
            last_use[src] = i
    values: dict[str, torch.Tensor] = {}
    ctx = _Ctx(params, steps, x, peaks, windows)
    captured = {}
    for i, node in enumerate(order):
        ins = [values[s] for s in node.inputs]
        out = table[node.kind](node, ins, ctx)
        if observe is not None:
            observe(node, ins, out)
        if node.name in capture:
            if node.name in ctx.window_form:
                raise ValueError(f"node {node.name!r} runs on window sums here; its per-step values are not formed")
            captured[node.name] = out.expand(steps, *out.shape[1:]) if out.shape[0] == 1 else out
        values[node.name] = out
        for src in set(node.inputs):
            if last_use.get(src) == i:
                del values[src]
    count_t = torch.stack(ctx.counts, dim=1) if ctx.counts else torch.zeros(ctx.outputs.shape[1], 0)
    return ctx.outputs, count_t, captured


def is_sequence(graph: Graph, x) -> bool:
    """True when ``x`` is a per-step input sequence [steps, N, *input_shape] rather than [N, *input_shape]."""
    return np.ndim(x) == len(graph.input.input_shape) + 2


def spiking_layer_names(graph: Graph) -> list[str]:
    """The layers whose spikes the executor counts, in the order of ``spike_counts``' columns."""
    return [n.name for n in graph.topo()
            if isinstance(n, (Neuron, MSATNeuron)) or (hasattr(n, "run_float") and getattr(n, "spiking", False))]


def input_batches(graph: Graph, x: np.ndarray | torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``x`` [N, *input_shape] (or a per-step sequence [steps, N, *input_shape]) checked against the graph and
    cut into the batches the executor runs: views [B, ...] (or [steps, B, ...]) of it."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    expected = tuple(graph.input.input_shape)
    sequence = is_sequence(graph, x)
    if sequence and x.shape[0] != graph.steps:
        raise LmhtcError(f"input sequence has {x.shape[0]} steps, the network runs {graph.steps}")
    if tuple(x.shape[1 + sequence:]) != expected:
        raise LmhtcError(f"inputs have per-sample shape {tuple(x.shape[1 + sequence:])}, the network expects {expected}")
    n = x.shape[int(sequence)]
    return [x[:, i:i + batch_size] if sequence else x[i:i + batch_size] for i in range(0, n, batch_size)]


def run_float(graph: Graph, x: np.ndarray | torch.Tensor, batch_size: int = 64, dtype: torch.dtype = torch.float32,
              device: str = "cpu", progress: bool = False, capture: set[str] = frozenset(),
              desc: str = "simulate (float)", observe: Callable | None = None,
              peaks: dict | None = None, windows: bool = False) -> RunResult:
    """Run the graph in floating point on ``x`` [N, *input_shape] (the same input at every step) or on a
    per-step sequence [steps, N, *input_shape]; outputs, logits and spike counts (``observe`` and
    ``peaks``: see ``run_graph_batch``). ``windows``: the synaptic products that a T-GIM with constant
    column blocks allows run once per window on window sums (``float_window_plan``; L times fewer
    products, the same values in real arithmetic, float rounding apart)."""
    batches = input_batches(graph, x, batch_size)
    table = check_lowerable(graph, "float")      # before anything runs: the phase and every node kind
    params = _Params(dtype, device)
    plan = float_window_plan(graph) if windows else None
    outs, cnts, caps = [], [], {name: [] for name in capture}
    with torch.no_grad():
        for xb in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
            o, c, cap = run_graph_batch(graph, xb.to(device), params, capture, table, observe, peaks, plan)
            outs.append(o.cpu())
            cnts.append(c.cpu())
            for name, val in cap.items():
                caps[name].append(val.cpu())
    outputs = torch.cat(outs, dim=1).numpy()
    return RunResult(outputs=outputs, logits=outputs.mean(axis=0), spike_counts=torch.cat(cnts).numpy(),
                     layer_names=spiking_layer_names(graph),
                     captured={k: torch.cat(v, dim=1).numpy() for k, v in caps.items()})
