"""The bit-accurate integer event-driven simulator of lmhtc's integer networks.

Implements docs/integer-semantics.md (version 1). By definition, what it
computes is what the chip computes.

Schedule: layer by layer. Each node computes its whole sequence of steps
before the next node runs, which is what T-GIM's non-causal mixing needs (a
layer's step t depends on the previous layer's spikes at every step); a value
is freed after its last consumer, so memory holds a few layers' sequences of
one batch. ``batch_size=1`` is the single-sample mode. Everything is integer
and deterministic.

Synaptic work: spikes are events. For every synaptic node the simulator
chooses, per call, between

* the event path — each input event (position, count) adds its count times the
  weight column(s) it reaches into the outputs; work ∝ events × fan-out (on CPU
  with the C++ kernels, convolutions run it as ``runtime/event_conv.py``); and
* the dense path — one convolution/matrix product over the whole input, run in
  float32 when the compiler's range analysis bounds every partial sum below
  2^24 (float32 then represents every partial sum exactly) and in float64
  otherwise (exact below 2^53), converted back to integers explicitly, or as an
  exact int8 product (``runtime/int8.py``);

by input density (``event_density``; ``kernel="event"|"dense"|"int8"`` forces
one). On CPUs whose int8 products add in int16 pairs (no VNNI/AMX), multi-tap
convolutions try the C++ event path first, up to ``EVENT_CROSSOVER``.
Both paths return identical integers (tests compare them). The SOP count of
every synaptic node is computed from the events themselves: Σ over input
positions of (integer input × that position's fan-out).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import time
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.executor import input_batches
from lmhtc.compiler.lowering import LoweringError
from lmhtc.compiler.analysis.cover import conv_cover
from lmhtc.compiler.analysis.groups import group_root
from lmhtc.compiler.analysis.windows import planned_windows, row_window, window_plan  # noqa: F401  (window_plan: re-exported)
from lmhtc.compiler.lowering import check_integer_graph as check_integer_graph_for
from lmhtc.compiler.intir import (GlobalSumPool, QConv2d, QGain, QInput, QLinear, QNeuron, QReadout, QTemporalMix,
                            SumPool2d)
from lmhtc.compiler.ir import Add, Graph, receives_spikes, spike_train_layers
from lmhtc.runtime import fused as fused_mod
from lmhtc.runtime.device import resolve_device
from lmhtc.runtime.event_conv import EventConv
from lmhtc.runtime.int8 import INT32_MAX, Int8Product, OneDnnConv, int16_pairs, onednn_available
from lmhtc.compiler.intir_conv1d import QConv1d, conv2d_view
from lmhtc.runtime.lif_kernel import run_lif
from lmhtc.runtime.neuron import empty_steps, rs, run_neuron

EXACT_F32 = 2 ** 24
EXACT_F64 = 2 ** 53
# On CPUs whose int8 convolution adds products in int16 pairs (no VNNI), the event-driven convolution beats
# oneDNN's below this input density (bit-plane events per input element). Measured on ResNet-18's 3×3 layers
# (AMD EPYC, AVX2, 2 threads, 128 frames): 1.3–2.3× faster at 22–34 %, the time falling with the density.
EVENT_CROSSOVER = 0.4


@dataclass
class IntRunResult:
    outputs_int: np.ndarray            # [steps, N, classes] int64, per-step integer logits
    logits_int: np.ndarray             # [N, classes] int64, sum over steps
    outputs: np.ndarray                # [steps, N, classes] float64, dequantized
    logits: np.ndarray                 # [N, classes] float64, mean over steps, dequantized
    spike_counts: np.ndarray           # [N, layers] spike events per sample (levels summed)
    saturation: np.ndarray             # [N, layers] membrane saturation events per sample
    layer_names: list[str]
    sops: np.ndarray                   # [N] synaptic operations per sample
    sops_by_layer_step: np.ndarray     # [N, synaptic layers, steps]
    synaptic_layer_names: list[str]
    macs: np.ndarray                   # [N] MACs of the analog-input layers (once per image)
    kernels: dict[str, dict[str, int]] = field(default_factory=dict)   # node → {"event": n, "dense": n} calls
    captured: dict[str, np.ndarray] = field(default_factory=dict)


class IntegerGraphError(LmhtcError):
    pass


def _encode_input(x: torch.Tensor, node: QInput) -> torch.Tensor:
    q = 2 ** (node.bits - 1) - 1
    scaled = x.to(torch.float64) / float(node.scale)
    r = torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)
    return r.clamp(-q, q).to(torch.int64)


class _Synapse:
    """Precomputed per-node data: weights as tensors, fan-out map, exactness of float kernels."""

    def __init__(self, node, in_shape, device: str):
        self.node = node
        if isinstance(node, QGain):
            self.gain = torch.as_tensor(node.gain.astype(np.int64), device=device)
            self.gain_max = int(np.abs(node.gain).max()) if node.gain.size else 0
            self.fanout_map, self.fanout_const = None, 1
            return
        w = node.weight.astype(np.int64)
        self.w64 = torch.as_tensor(w, device=device)
        if node.acc_bound >= EXACT_F64:
            raise IntegerGraphError(f"node {node.name!r}: sums up to {node.acc_bound} exceed exact float64 range")
        self.w_by_dtype = {dt: torch.as_tensor(w, dtype=dt, device=device) for dt in (torch.float32, torch.float64)}
        self.bias = None if node.bias is None else torch.as_tensor(node.bias.astype(np.int64), device=device)
        self.bias_max = 0 if node.bias is None or not node.bias.size else int(np.abs(node.bias).max())
        # max over outputs of Σ|w| over the fan-in: |Σ w·x| ≤ wsum_max · max|x|, from the weights alone
        self.wsum_max = int(np.abs(w).reshape(w.shape[0], -1).sum(1).max()) if w.size else 0
        self.int8 = Int8Product(node, device) if Int8Product.eligible(node) else None
        # without VNNI/AMX, _int_mm has no int8 dot-product instruction and runs 10–35× slower than the
        # float32 product (AMD EPYC, AVX2, ResNet-18 shapes): there it is the last resort, after the float one
        self.slow_gemm = torch.device(device).type == "cpu" and int16_pairs()
        # a 1×1 conv without padding is a plain GEMM on (strided) positions: _int_mm beats oneDNN's direct
        # convolution there where it is fast (measured 1.1–2× on ResNet-18's downsample shapes at 2 and 32 frames)
        pointwise = isinstance(node, QConv2d) and tuple(w.shape[2:]) == (1, 1) and not any(node.padding)
        self.onednn = OneDnnConv(node, device) if self.int8 is not None and isinstance(node, QConv2d) and \
            (not pointwise or self.slow_gemm) and onednn_available(device) else None
        # the C++ event-driven convolution (CPU, with the fused kernels): the event path wherever it applies, and
        # on int16-pair CPUs the first choice for convolutions with more than one tap below EVENT_CROSSOVER
        self.event_conv = EventConv(node) if torch.device(device).type == "cpu" and EventConv.eligible(node) \
            else None
        self.event_first = self.event_conv is not None and self.slow_gemm and self.event_conv.taps > 1
        if isinstance(node, QConv2d):
            cout = w.shape[0]
            cover = conv_cover(node.shape[1:], in_shape[1:], w.shape[2:], node.stride, node.padding, node.dilation)
            self.fanout_map = torch.as_tensor(cover, dtype=torch.int32, device=device)
            self.fanout_max = int(np.max(cover, initial=0))
            self.fanout_const = cout // node.groups
            self.fanout_scaled: dict[bool, torch.Tensor] = {}    # (int32 products?) → fan-out map × constant
        else:
            self.fanout_map, self.fanout_max, self.fanout_const = None, 0, w.shape[0]

    def sops(self, v: torch.Tensor, bound: int, channel_sums: dict) -> torch.Tensor:
        """[B, S] synaptic operations: Σ over input positions of (integer input × its fan-out), in integers.

        ``channel_sums`` caches Σ over channels of ``v`` (keyed by id), shared by all consumers of one value."""
        if v.dim() != 5:
            return (v.flatten(2).sum(-1, dtype=torch.int64) * self.fanout_const).T
        # a conv's fan-out depends on the position only: sum the channels first (int32 when it fits)
        key = id(v)
        if key not in channel_sums:
            wide = bound * v.shape[2] > INT32_MAX // 2
            channel_sums[key] = (v, v.sum(2, dtype=torch.int64 if wide else torch.int32))
        csum = channel_sums[key][1]
        if self.fanout_map is None:
            return (csum.flatten(2).sum(-1, dtype=torch.int64) * self.fanout_const).T
        # Σ csum·(fan-out map × per-position constant): int32 products where bound·C·max fan-out fits
        narrow = csum.dtype == torch.int32 and max(bound * v.shape[2], 1) * self.fanout_max * self.fanout_const \
            <= INT32_MAX
        fan = self.fanout_scaled.get(narrow)
        if fan is None:
            fan = self.fanout_scaled[narrow] = self.fanout_map.to(torch.int32 if narrow else torch.int64) * \
                self.fanout_const
        return (csum * fan).sum((2, 3), dtype=torch.int64).T

    def exact_dtype(self, max_scale: int = 1) -> torch.dtype:
        """float32 when every partial sum stays below 2^24 (inputs up to ``max_scale`` × the analysed range)."""
        return torch.float32 if self.node.acc_bound * max_scale < EXACT_F32 else torch.float64

    def out_bound(self, in_bound: int, lw: int) -> int:
        """A bound on |output| of the node over window sums of ``lw`` steps of inputs bounded by ``in_bound``."""
        acc = (self.gain_max if isinstance(self.node, QGain) else self.wsum_max) * in_bound * lw
        e = self.node.shift
        shifted = acc << e if e >= 0 else (acc >> -e) + 1
        return shifted + (getattr(self, "bias_max", 0) * lw)

    # -- the kernels ------------------------------------------------------------------
    def dense(self, v: torch.Tensor, max_scale: int = 1, raw: bool = False) -> torch.Tensor:
        """Σ w·x for every output, via float convolution/matmul (exact by range analysis), as int64 (``raw``:
        the float32 sums as they are where float32 is exact, every one an integer below 2^24)."""
        node = self.node
        dtype = self.exact_dtype(max_scale)
        wf = self.w_by_dtype[dtype]
        flat = v.reshape(-1, *v.shape[2:]).to(dtype)
        if isinstance(node, QConv2d):
            if flat.is_cuda:
                with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
                    y = F.conv2d(flat, wf, None, node.stride, node.padding, node.dilation, node.groups)
            else:
                y = F.conv2d(flat, wf, None, node.stride, node.padding, node.dilation, node.groups)
        else:
            y = flat @ wf.T
        if not (raw and dtype == torch.float32):
            y = torch.round(y).to(torch.int64)
        return y.reshape(*v.shape[:2], *y.shape[1:])

    def event(self, v: torch.Tensor) -> torch.Tensor:
        """Σ w·x as a scatter of each input event's weight column(s); work ∝ events × fan-out."""
        node = self.node
        s, b = v.shape[:2]
        flat = v.reshape(s * b, *v.shape[2:])
        idx = flat.nonzero(as_tuple=False)
        vals = flat[tuple(idx.T)].to(torch.int64)
        if isinstance(node, QLinear):
            out = torch.zeros(s * b, self.w64.shape[0], dtype=torch.int64, device=v.device)
            if len(vals):
                out.index_add_(0, idx[:, 0], vals[:, None] * self.w64[:, idx[:, 1]].T)
            return out.reshape(s, b, -1)
        cout, cin_g, kh, kw = self.w64.shape
        ho, wo = node.shape[1:]
        out = torch.zeros(s * b * ho * wo, cout, dtype=torch.int64, device=v.device)
        if len(vals):
            n_i, c_i, h_i, w_i = idx.T
            group = c_i // cin_g
            cg = c_i % cin_g
            per_group = cout // node.groups
            (sh, sw), (ph, pw), (dh, dw) = node.stride, node.padding, node.dilation
            for i in range(kh):
                for j in range(kw):
                    ny, nx = h_i + ph - i * dh, w_i + pw - j * dw
                    ok = (ny % sh == 0) & (nx % sw == 0)
                    oy, ox = torch.div(ny, sh, rounding_mode="floor"), torch.div(nx, sw, rounding_mode="floor")
                    ok &= (oy >= 0) & (oy < ho) & (ox >= 0) & (ox < wo)
                    if not ok.any():
                        continue
                    sel = ok.nonzero(as_tuple=True)[0]
                    rows = (n_i[sel] * ho + oy[sel]) * wo + ox[sel]
                    # each event reaches the output channels of its group: weight column w[:, cg, i, j]
                    wcol = self.w64[:, :, i, j].T[cg[sel]]                  # [E, cout]
                    if node.groups > 1:
                        mask = (torch.arange(cout, device=v.device)[None, :] // per_group) == group[sel][:, None]
                        wcol = wcol * mask
                    out.index_add_(0, rows, vals[sel][:, None] * wcol)
        return out.reshape(s, b, ho, wo, cout).permute(0, 1, 4, 2, 3)


def capture_plan(graph: Graph, plan: dict[str, int], capture) -> dict[str, int]:
    """``plan`` with every synaptic group that holds a node of ``capture`` run per step (window 1).

    The synaptic nodes and the adds between them that feed one T-GIM form a group with one window size
    (``compiler.analysis.windows``); a captured value must be per step, so its group runs per step and
    every other group keeps its windows (identical integers either way)."""
    if not capture:
        return plan
    hot = {group_root(graph, graph.node(name)).name for name in capture
           if name in plan or (name in graph and isinstance(graph.node(name), Add))}
    return {name: 1 if group_root(graph, graph.node(name)).name in hot else lw for name, lw in plan.items()}


def fusable_pairs(graph: Graph) -> dict[str, str]:
    """T-GIM mix → the qneuron that is its only consumer: the pairs the fused kernel may run in one pass."""
    pairs = {}
    for node in graph.topo():
        if isinstance(node, QTemporalMix):
            cons = graph.consumers(node.name)
            if len(cons) == 1 and isinstance(cons[0], QNeuron):
                pairs[node.name] = cons[0].name
    return pairs


class _Program:
    """What a run needs from an integer graph, prepared once: node order, last uses, synapse tensors, plans."""

    def __init__(self, graph: Graph, device: str):
        self.graph = graph
        self.device = device
        self.order = list(graph.topo())
        self.layer_names = tuple(spike_train_layers(graph))
        self.last_use: dict[str, int] = {}
        for i, node in enumerate(self.order):
            for src in node.inputs:
                self.last_use[src] = i
        # per node (by position): the values whose last consumer it is
        self.frees = [tuple(src for src in dict.fromkeys(node.inputs) if self.last_use[src] == i)
                      for i, node in enumerate(self.order)]
        self.syn = {n.name: _synapse_of(n, graph, device)
                    for n in self.order if isinstance(n, (QConv2d, QConv1d, QLinear, QGain))}
        self.analog = {name for name in self.syn if not receives_spikes(graph, name)}
        self.windows = planned_windows(graph)
        self.window_sizes = tuple(sorted({lw for lw in self.windows.values() if lw > 1}))
        self._capture_plans: dict[frozenset, dict[str, int]] = {}
        self.fusable = fusable_pairs(graph)
        self.fused_neurons: dict[str, object] = {}        # qneuron → fused.FusedNeuron (prepared at first use)
        self.mix_matrices: dict[tuple, tuple] = {}         # (mix, rows, input window, static) → (ω, max row Σ|ω|)
        self.row_blocks = {n.name: row_window(graph, n.omega) for n in self.order if isinstance(n, QTemporalMix)}
        self.input_shape = tuple(next(n for n in self.order if isinstance(n, QInput)).input_shape)
        readout = next(n for n in self.order if isinstance(n, QReadout))
        # per channel (dimension 0 of the output; a NIR Output may have several dimensions)
        self.readout_scale = np.asarray(readout.scale, np.float64).reshape(-1, *([1] * (len(readout.shape) - 1)))
        self.neuron_params = {n.name: (torch.as_tensor(n.threshold, dtype=torch.int64, device=device),
                                       torch.as_tensor(n.v_init, dtype=torch.int64, device=device))
                              for n in self.order if isinstance(n, QNeuron)}

    def window_plan(self, capture) -> dict[str, int]:
        """The window plan of a run capturing ``capture`` (cached per capture set)."""
        key = frozenset(capture)
        if not key:
            return self.windows
        if key not in self._capture_plans:
            self._capture_plans[key] = capture_plan(self.graph, self.windows, key)
        return self._capture_plans[key]


def _synapse_of(node, graph: Graph, device: str) -> _Synapse:
    """The prepared synapse of ``node``; a conv1d runs as its 2-D view on a (C, 1, L) input."""
    in_shape = graph.node(node.inputs[0]).shape
    if isinstance(node, QConv1d):
        return _Synapse(conv2d_view(node), (in_shape[0], 1, in_shape[1]), device)
    return _Synapse(node, in_shape, device)


_PROGRAMS: "weakref.WeakKeyDictionary[Graph, dict[str, _Program]]" = weakref.WeakKeyDictionary()


def _program(graph: Graph, device: str) -> _Program:
    """The prepared program of ``graph`` (cached while the graph lives; graphs are not mutated after lowering).

    The graph is checked (``check_integer_graph``) when its first program is prepared."""
    per_graph = _PROGRAMS.get(graph)
    if per_graph is None:
        check_integer_graph(graph)
        per_graph = _PROGRAMS.setdefault(graph, {})
    if device not in per_graph:
        per_graph[device] = _Program(graph, device)
    return per_graph[device]


def _fit_dtype(bound: int) -> torch.dtype:
    """int32 when ``bound`` (a proven bound on a value's magnitude) fits 32 bits, else int64."""
    return torch.int32 if bound <= INT32_MAX else torch.int64


def _fit(t: torch.Tensor, bound: int) -> torch.Tensor:
    """``t`` as ``_fit_dtype(bound)``."""
    dt = _fit_dtype(bound)
    return t if t.dtype == dt else t.to(dt)


class _Batch:
    """One batch's run state: what the lowerings read (program, kernel policy, window plan) and record.
    Every value carries a proven bound on its magnitude (``bounds``), which decides the narrowest exact
    dtype (int8 spikes and inputs, int32 where the bound fits, else int64)."""

    def __init__(self, prog: _Program, x: torch.Tensor, kernel: str, event_density: float, windows: dict,
                 row_windows: bool, capture=frozenset(), fused: bool = False):
        self.prog, self.x, self.kernel, self.event_density = prog, x, kernel, event_density
        self.capture = capture
        self.fused = fused         # T-GIM mix + neuron pairs may run as the fused kernel (CPU)
        self.steps = prog.graph.steps
        self.windows = windows
        self.bounds: dict[str, int] = {}
        self.windowed: dict[str, int] = {}                      # value name → window size (window sums)
        self.windowed_rows: dict[str, tuple[int, bool]] = {}    # mix outputs once per window: (L, front-loaded)
        self.row_blocks = prog.row_blocks if row_windows else {}
        self.spikes, self.sats, self.sops = [], [], []
        self.sequence = x.dim() == len(prog.input_shape) + 2     # a per-step input [steps, B, ...]
        self.macs = torch.zeros(x.shape[int(self.sequence)], dtype=torch.int64)
        self.kernels: dict[str, dict[str, int]] = {}
        self.channel_sums: dict[int, tuple] = {}    # id(spike tensor) → (tensor, Σ over channels), for SOPs
        self.spike_totals: dict[int, list] = {}     # id(spike tensor) → [tensor, events per sample, their Σ or None]
        self._window_sums: dict[tuple, tuple] = {}  # (id(value), lw) → (value, its window sums), for its consumers
        self.outputs = None

    def window_sums(self, v: torch.Tensor, lw: int, bound: int) -> torch.Tensor:
        """``_window_sums(v, lw, bound)``, computed once per value and window size (a value's consumers share it)."""
        if lw == 1:
            return v
        key = (id(v), lw)
        hit = self._window_sums.get(key)
        if hit is None or hit[0] is not v:
            hit = self._window_sums[key] = (v, _window_sums(v, lw, bound))
        return hit[1]

    def forget(self, v: torch.Tensor) -> None:
        """Drop what is cached for ``v`` (its last consumer ran): the memory returns to the allocator."""
        key = id(v)
        self.channel_sums.pop(key, None)
        self.spike_totals.pop(key, None)
        for lw in self.prog.window_sizes:
            self._window_sums.pop((key, lw), None)


# Each lowering: (batch state, node, inputs, window size, input bound) → (output, its bound, window size).

def _lower_input(st: _Batch, node: QInput, ins, lw, in_b):
    out = _encode_input(st.x, node) if st.sequence else _encode_input(st.x, node).unsqueeze(0)
    bound = 2 ** (node.bits - 1) - 1
    return (out.to(torch.int8) if bound <= 127 else out), bound, lw


def _lower_synapse(st: _Batch, node, ins, lw, in_b):
    v, sy, analog = ins[0], st.prog.syn[node.name], node.name in st.prog.analog
    if analog:
        cout, cin_g, *k = node.weight.shape
        st.macs += int(np.prod(node.shape)) * cin_g * int(np.prod(k)) * v.shape[0]   # per distinct input frame
    else:
        st.sops.append(_per_step(sy.sops(v, in_b, st.channel_sums), st.steps))
    vin = st.window_sums(v, lw, in_b)
    kernel, acc, bound = st.kernel, None, sy.out_bound(in_b, lw)
    native = sy.event_conv is not None and st.fused and not analog and sy.event_conv.exact(in_b * lw)
    # the event kernel applies the exponent and bias itself where the output fits int32
    epilogue = (node.shift, sy.bias, lw) if native and bound <= INT32_MAX else None
    if native and kernel == "auto" and sy.event_first:     # sparse or not: no density count first
        acc = sy.event_conv(vin, in_b * lw, int(EVENT_CROSSOVER * vin.numel()), epilogue)  # None above the crossover
    use_event = acc is None and (kernel == "event" or (kernel in ("auto", "int8") and _sparse(st, v, vin, lw, in_b)))
    if use_event and native:
        acc = sy.event_conv(vin, in_b * lw, None, epilogue)
    if acc is not None:
        used = "event"
    elif use_event:
        acc, used, epilogue = sy.event(vin), "event", None
    elif kernel != "dense" and sy.onednn is not None and sy.onednn.exact(in_b * lw, analog):
        acc, used, epilogue = sy.onednn(vin, analog, raw=st.fused), "int8", None
    elif (kernel == "int8" or kernel == "auto" and not sy.slow_gemm) and sy.int8 is not None and \
            sy.int8.exact(in_b * lw, sy.wsum_max * in_b * lw):
        acc, used, epilogue = sy.int8(vin), "int8", None
    else:
        acc, used, epilogue = sy.dense(vin, lw, raw=st.fused), "dense", None
    stats = st.kernels.get(node.name)
    if stats is None:
        stats = st.kernels[node.name] = {"event": 0, "dense": 0, "int8": 0}
    stats[used] += 1
    if epilogue is not None:       # the event kernel's output is the synapse's already
        return acc, bound, lw
    if st.fused:     # raw oneDNN, float32 or int8 GEMM sums: exponent and bias in one pass (None for other inputs)
        out = fused_mod.affine_shift(acc, None, sy.bias, lw, node.shift, _fit_dtype(bound))
        if out is not None:
            return out, bound, lw
    if acc.is_floating_point():
        acc = acc.to(torch.int32)
    # acc is a fresh tensor, shifted in place: its dtype must hold the sums before a right shift as well
    out = _exp_shift(_fit(acc, max(bound, sy.wsum_max * in_b * lw)), node.shift)
    if sy.bias is not None:
        out += (sy.bias.to(out.dtype) * lw).reshape(-1, *([1] * (out.dim() - 3)))
    return _fit(out, bound), bound, lw


def _sparse(st: _Batch, v: torch.Tensor, vin: torch.Tensor, lw: int, in_b: int) -> bool:
    """Fewer than ``event_density`` of the synapse's inputs ``vin`` (window sums of ``lw`` steps of ``v``) are
    non-zero. For spike counts v ≥ 0 with a known total Σv, nnz(vin) ≥ Σv / (in_b·lw): a total at or above
    density × size × in_b × lw decides "dense" without counting (the same decision as counting)."""
    limit = st.event_density * vin.numel()
    total = st.spike_totals.get(id(v))
    if total is not None and total[0] is v and v.device.type == "cpu":
        if total[2] is None:        # Σ of the events, once per spike tensor (shared by its consumers)
            total[2] = int(total[1].sum())
        if total[2] >= limit * max(in_b, 1) * lw:
            return False
    return float((vin != 0).sum()) < limit


def _lower_conv1d(st: _Batch, node, ins, lw, in_b):
    out, bound, lw = _lower_synapse(st, st.prog.syn[node.name].node, [ins[0].unsqueeze(3)], lw, in_b)
    return out.squeeze(3), bound, lw


def _lower_gain(st: _Batch, node: QGain, ins, lw, in_b):
    v, sy = ins[0], st.prog.syn[node.name]
    st.sops.append(_per_step(sy.sops(v, in_b, st.channel_sums), st.steps))
    vin = st.window_sums(v, lw, in_b)
    bound = sy.out_bound(in_b, lw)
    dt = _fit_dtype(bound)
    if st.fused and dt in (torch.int32, torch.int64):
        out = fused_mod.affine_shift(vin, sy.gain, None, lw, node.shift, dt)
        if out is not None:
            return out, bound, lw
    pre = _fit_dtype(max(bound, sy.gain_max * in_b * lw))     # the products before a right shift
    out = _exp_shift(vin.to(pre) * sy.gain.to(pre).reshape(-1, *([1] * (v.dim() - 3))), node.shift)
    return _fit(out, bound), bound, lw


def _lower_sum_pool(st: _Batch, node: SumPool2d, ins, lw, in_b):
    v = ins[0]
    y = F.avg_pool2d(v.reshape(-1, *v.shape[2:]).to(torch.float64), node.kernel, node.stride, node.padding,
                     divisor_override=1)
    bound = in_b * int(np.prod(node.kernel))
    return _fit(torch.round(y), bound).reshape(*v.shape[:2], *y.shape[1:]), bound, lw


def _lower_global_sum(st: _Batch, node: GlobalSumPool, ins, lw, in_b):
    v = ins[0]
    out = v.sum(dim=(-2, -1), keepdim=True, dtype=torch.int64)
    bound = in_b * v.shape[-1] * v.shape[-2]
    return (out.to(torch.int8) if bound <= 127 else out), bound, lw


def _lower_add(st: _Batch, node: Add, ins, lw, in_b):
    wa, wb = (st.windowed.get(n, 1) for n in node.inputs)
    if wa != wb:
        raise IntegerGraphError(f"runtime: node {node.name!r} adds a window sum to a per-step value")
    bound = st.bounds[node.inputs[0]] + st.bounds[node.inputs[1]]
    return _fit(ins[0], bound) + _fit(ins[1], bound), bound, wa


class _Current:
    """A T-GIM mix's output not yet computed: ``rs(omega @ v, frac_bits)`` (``acc_bound`` bounds |omega @ v|).
    The consuming neuron runs it fused with its own steps, or ``materialize``s it (the torch kernels)."""

    def __init__(self, v: torch.Tensor, omega: np.ndarray, frac_bits: int, acc_bound: int, bound: int):
        self.v, self.omega, self.frac_bits, self.acc_bound, self.bound = v, omega, frac_bits, acc_bound, bound

    def materialize(self) -> torch.Tensor:
        half = (1 << self.frac_bits) >> 1
        out = rs(_mix(self.omega, _fit(self.v, self.acc_bound + half)), self.frac_bits)
        return _fit(out, self.bound)


def _mix_matrix(node: QTemporalMix, rows: int, w_in: int, static: bool) -> tuple[np.ndarray, int]:
    """The effective T-GIM matrix (one row per current, one column per input window or static frame) and
    its max row Σ|ω| (|current accumulator| ≤ that × the input bound)."""
    omega = node.omega[::rows]
    if w_in > 1:
        omega = omega[:, ::w_in]
    elif static:
        omega = omega.sum(1, keepdims=True)
    return omega, int(np.abs(omega).sum(1).max()) if omega.size else 0


def _lower_mix(st: _Batch, node: QTemporalMix, ins, lw, in_b):
    v = ins[0]
    w_in = st.windowed.get(node.inputs[0], 1)
    rows, front = st.row_blocks.get(node.name, (1, False))   # one current per window: compute it once
    key = (node.name, rows, w_in, w_in == 1 and v.shape[0] == 1)
    if key not in st.prog.mix_matrices:
        st.prog.mix_matrices[key] = _mix_matrix(node, *key[1:])
    omega, wsum = st.prog.mix_matrices[key]
    acc_b = wsum * in_b
    half = (1 << node.frac_bits) >> 1
    bound = (acc_b + half) >> node.frac_bits
    if rows > 1:
        st.windowed_rows[node.name] = (rows, front)
    cur = _Current(v, omega, node.frac_bits, acc_b, bound)
    if st.fused and node.name in st.prog.fusable and node.name not in st.capture:
        return cur, bound, lw          # computed by the neuron's fused kernel
    return cur.materialize(), bound, lw


def _lower_neuron(st: _Batch, node: QNeuron, ins, lw, in_b):
    v = ins[0]
    rows, front = st.windowed_rows.get(node.inputs[0], (1, False))
    done = None
    if isinstance(v, _Current):
        prep = st.prog.fused_neurons.get(node.name)
        if prep is None:
            prep = st.prog.fused_neurons[node.name] = fused_mod.FusedNeuron(
                node, *st.prog.neuron_params[node.name], channels=v.v.shape[2])
        done = fused_mod.mix_neuron(v.v, v.omega, v.frac_bits, v.acc_bound, rows, front, prep, cur_bound=in_b)
        if done is None:
            v = v.materialize()
    csum = None
    if done is not None:
        out, sat, csum = done
    else:
        cur = v.expand(st.steps, *v.shape[1:]) if v.shape[0] == 1 else v
        out, sat = run_neuron(cur, node, rows, front, *st.prog.neuron_params[node.name], cur_bound=in_b)
    bound = node.levels
    if out.dim() == 5:      # Σ over channels once: the spike count here, the consumers' SOPs later
        if csum is None:
            csum = out.sum(2, dtype=torch.int32 if bound * out.shape[2] <= INT32_MAX // 2 else torch.int64)
        st.channel_sums[id(out)] = (out, csum)
        st.spikes.append(csum.sum(dim=(0, 2, 3), dtype=torch.int64))
    else:
        st.spikes.append(out.sum(dim=tuple(d for d in range(out.dim()) if d != 1), dtype=torch.int64))
    st.spike_totals[id(out)] = [out, st.spikes[-1], None]
    st.sats.append(sat)
    return out, bound, lw


def _lower_lif(st: _Batch, node, ins, lw, in_b):
    out, sat = run_lif(ins[0], node, st.steps)
    bound = node.out_bound()
    if node.spiking:
        st.spikes.append(out.sum(dim=tuple(d for d in range(out.dim()) if d != 1), dtype=torch.int64))
    st.sats.append(sat)
    return _fit(out, bound) if bound > 127 else out.to(torch.int8), bound, lw


def _lower_readout(st: _Batch, node: QReadout, ins, lw, in_b):
    v = ins[0]
    st.outputs = v.expand(st.steps, *v.shape[1:]) if v.shape[0] == 1 else v
    return st.outputs, in_b, lw


# The runtime's lowering table: node kind → lowering (see above).
LOWERING = {
    "qinput": _lower_input,
    "qconv2d": _lower_synapse,
    "qlinear": _lower_synapse,
    "qconv1d": _lower_conv1d,
    "qgain": _lower_gain,
    "sumpool2d": _lower_sum_pool,
    "globalsumpool": _lower_global_sum,
    "add": _lower_add,
    "flatten": lambda st, node, ins, lw, in_b: (ins[0].flatten(2), in_b, lw),
    "qtemporal_mix": _lower_mix,
    "qneuron": _lower_neuron,
    "qlif": _lower_lif,
    "qreadout": _lower_readout,
}
_WINDOWED_KINDS = frozenset({"qconv2d", "qlinear", "qgain", "add"})   # may hold window sums


def run_graph_batch_int(prog: _Program, x: torch.Tensor, kernel: str, event_density: float,
                        capture=frozenset(), windows: dict[str, int] | None = None, row_windows: bool = True,
                        layer_times: dict[str, float] | None = None, fused: bool = False):
    """One batch through the graph, each node by its entry of ``LOWERING``."""
    st = _Batch(prog, x, kernel, event_density, windows or {}, row_windows, frozenset(capture), fused)
    steps = st.steps
    order, frees = prog.order, prog.frees
    values: dict[str, torch.Tensor] = {}
    captured = {}
    for i, node in enumerate(order):
        started = time.perf_counter() if layer_times is not None else 0.0
        ins = [values[s] for s in node.inputs]
        v = ins[0] if ins else None
        in_b = st.bounds[node.inputs[0]] if ins else 0
        lw = st.windows[node.name] if node.name in st.windows and v.shape[0] == steps else 1
        out, bound, lw = LOWERING[node.kind](st, node, ins, lw, in_b)
        if node.kind in _WINDOWED_KINDS and lw > 1:
            st.windowed[node.name] = lw
        if node.name in capture:
            if node.name in st.windowed:
                raise IntegerGraphError(f"runtime: {node.name!r} is computed as window sums; "
                                        f"run with windows=False to capture it per step")
            if node.name in st.windowed_rows:
                rows, front = st.windowed_rows[node.name]
                if front:     # the window's current at its first step, zero at the others
                    out_c = torch.zeros((out.shape[0] * rows, *out.shape[1:]), dtype=out.dtype, device=out.device)
                    out_c[::rows] = out
                else:
                    out_c = out.repeat_interleave(rows, dim=0)
            else:
                out_c = out.expand(steps, *out.shape[1:]) if out.shape[0] == 1 else out
            captured[node.name] = out_c
        values[node.name] = out
        st.bounds[node.name] = bound
        if layer_times is not None:
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            layer_times[node.name] = layer_times.get(node.name, 0.0) + time.perf_counter() - started
        for src in frees[i]:      # freed with its channel sums: the next layers reuse the memory
            st.forget(values.pop(src))
    b = x.shape[int(st.sequence)]
    stack = (lambda xs: torch.stack(xs, dim=1) if xs else torch.zeros(b, 0, dtype=torch.int64, device=x.device))
    sop_t = torch.stack(st.sops, dim=1) if st.sops else torch.zeros(b, 0, steps, dtype=torch.int64, device=x.device)
    return st.outputs.to(torch.int64), stack(st.spikes), stack(st.sats), sop_t, st.macs, st.kernels, captured


_WIDER = {torch.int8: (127, torch.int16), torch.int16: (32767, torch.int32), torch.int32: (INT32_MAX, torch.int64)}


def _window_sums(v: torch.Tensor, lw: int, bound: int) -> torch.Tensor:
    """Σ over each window of ``lw`` steps in the narrowest dtype that holds ``lw × bound`` (no overflow)."""
    if lw == 1:
        return v
    while v.dtype in _WIDER and bound * lw > _WIDER[v.dtype][0]:
        v = v.to(_WIDER[v.dtype][1])
    out = torch.add(v[0::lw], v[1::lw])
    for i in range(2, lw):
        out += v[i::lw]
    return out


def _exp_shift(a: torch.Tensor, e: int) -> torch.Tensor:
    """The synapse exponent: ``a << e`` for e >= 0, the rounding right shift ``rs(a, −e)`` for e < 0."""
    if e >= 0:
        a <<= e
        return a
    return rs(a, -e)


def _mix(omega: np.ndarray, v: torch.Tensor) -> torch.Tensor:
    """Σ_j omega[t, j]·v[j] in v's dtype (the caller proved it holds every sum), as scalar multiply-adds
    (omega is tiny: steps × steps), into one buffer with v's memory layout."""
    out = empty_steps(len(omega), v[0], v.dtype)
    for t, row in enumerate(omega.tolist()):
        acc = out[t]
        terms = [(j, w) for j, w in enumerate(row) if w != 0]
        if not terms:
            acc.zero_()
        for n, (j, w) in enumerate(terms):
            if n == 0:
                torch.mul(v[j], w, out=acc)
            else:
                acc.add_(v[j], alpha=w)
    return out


def _per_step(per: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, S] → [B, steps] (a static value counts at every step)."""
    return per.expand(-1, steps) if per.shape[1] == 1 else per


def check_integer_graph(graph: Graph) -> None:
    """The graph is an integer network of this semantics version, and every node kind has a lowering here."""
    try:
        check_integer_graph_for(graph, "int")
    except LoweringError as exc:
        raise IntegerGraphError(str(exc)) from None


def run_int(graph: Graph, x: np.ndarray | torch.Tensor, batch_size: int = 64, device: str = "cpu",
            progress: bool = False, capture=frozenset(), kernel: str = "auto", event_density: float = 0.02,
            windows: bool = True, micro_batch: int = 16, desc: str = "simulate (int)",
            layer_times: dict[str, float] | None = None, fused: bool = True) -> IntRunResult:
    """Run the integer network on ``x`` [N, *input_shape] or a per-step sequence [steps, N, *input_shape];
    bit-exact integer outputs, events and SOPs.

    Samples are independent, so a batch runs as micro-batches of at most ``micro_batch`` samples:
    the same integers, with each layer's sequence small enough to stay in cache (measured on
    ResNet-18: 64 images take 3.3 s in micro-batches of 16 and 7.0 s in one batch of 64).
    ``layer_times``, when given, accumulates each node's wall time in seconds (for benchmarks).
    Capturing runs the window schedule too: only the window groups holding a captured node run per step.
    ``fused`` (and ``LMHTC_FUSED`` not 0) lets each T-GIM mix + neuron pair run as the fused C++ kernel on CPU
    when it builds here (``runtime/fused.py``); the torch kernels give the same integers.
    """
    if kernel not in ("auto", "event", "dense", "int8"):
        raise ValueError(f"kernel must be auto, event, dense or int8, got {kernel!r}")
    device = resolve_device(device)
    prog = _program(graph, device)          # checks the graph once (check_integer_graph)
    step = max(1, min(batch_size, micro_batch))
    micro_batches = input_batches(graph, x, step)      # checks the input's shape (the executor's one rule)
    syn, analog = prog.syn, prog.analog
    plan = prog.window_plan(capture) if windows else {}
    fuse = fused and device == "cpu" and bool(prog.fusable) and fused_mod.available()   # available(): LMHTC_FUSED too
    parts: dict[str, list] = {k: [] for k in ("out", "spk", "sat", "sop", "mac")}
    caps: dict[str, list] = {name: [] for name in capture}
    kernels: dict[str, dict[str, int]] = {}
    with torch.no_grad():
        for xb in tqdm(micro_batches, desc=desc, disable=not progress, unit="micro-batch"):
            o, spk, sat, sop, mac, kern, cap = run_graph_batch_int(prog, xb.to(device), kernel,
                                                                   event_density, capture, plan, windows,
                                                                   layer_times, fuse)
            for key, val in zip(("out", "spk", "sat", "sop", "mac"), (o, spk, sat, sop, mac)):
                parts[key].append(val.cpu())
            for name, val in cap.items():
                caps[name].append(val.cpu())
            for name, st in kern.items():
                agg = kernels.setdefault(name, {"event": 0, "dense": 0, "int8": 0})
                for k2, n in st.items():
                    agg[k2] += n
    outputs_int = torch.cat(parts["out"], dim=1).numpy()
    scale = prog.readout_scale
    logits_int = outputs_int.sum(axis=0)
    sop = torch.cat(parts["sop"]).numpy()
    outputs_int = outputs_int.astype(np.int64)
    return IntRunResult(
        outputs_int=outputs_int, logits_int=logits_int, outputs=outputs_int * scale,
        logits=logits_int * scale / graph.steps, spike_counts=torch.cat(parts["spk"]).numpy(),
        saturation=torch.cat(parts["sat"]).numpy(),
        layer_names=list(prog.layer_names),
        sops=sop.sum(axis=(1, 2)), sops_by_layer_step=sop,
        synaptic_layer_names=[n for n in syn if n not in analog], macs=torch.cat(parts["mac"]).numpy(),
        kernels=kernels, captured={k: torch.cat(v, dim=1).numpy().astype(np.int64) for k, v in caps.items()})
