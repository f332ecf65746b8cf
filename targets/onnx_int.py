"""ONNX target, integer: the integer network of docs/integer-semantics.md as an ONNX model, bit-exact with the runtime.

Every value on an edge is an int64 tensor, and every operation of the
contract is an integer ONNX op: exact products and sums (``Mul``, ``Add``,
int64 ``MatMul``), the rounding shift ``rs(a, F) = Div(a + sign(a)·2^(F−1),
2^F)`` (integer ``Div`` truncates toward zero, so this is the contract's
half-away-from-zero rounding), saturation with ``Clip``, and the multi-level
spike ``k = Clip(Div(V, Θ), 0, L)`` (equal to ``Σ_i [V ≥ iΘ]`` for Θ ≥ 1).

onnxruntime has no integer convolution for int64 (``ConvInteger`` takes 8-bit
operands only), so a synapse is computed in one of two exact ways, chosen per
node by the emitter's own range analysis (``value_bounds``):

* float32 ``Conv``/``MatMul`` on integer values when every partial sum is
  bounded below 2^24 — float32 then represents each product and partial sum
  exactly, whatever the summation order (the runtime's dense path relies on
  the same bound);
* otherwise an int64 ``MatMul`` on an im2col ``Gather`` of the padded input —
  exact in int64 because the compiler bounds every sum below 2^62.

Time is unrolled as in the float target; a value that is the same at every
step (the encoded input and what is computed from it before the first
neuron) is computed once. Inputs ``x`` [N, C, H, W] float32 (encoded in
float64 as the contract says); outputs ``logits_int`` [N, classes] int64,
``outputs_int`` [steps, N, classes] int64, their dequantized ``logits`` and
``outputs`` (float64, computed as the runtime computes them), and with
``spikes=True`` one ``spikes/<neuron>`` [steps, N, ...] int8 output per neuron layer.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from lmhtc.compiler.lowering import LoweringError, check_integer_graph, refuse
from lmhtc.semantics import SEMANTICS_VERSION
from lmhtc.compiler.intir import (GlobalSumPool, QConv2d, QGain, QInput, QLinear, QNeuron, QReadout,
                            QTemporalMix, SumPool2d, rs)
from lmhtc.compiler.analysis.ranges import value_bounds
from lmhtc.compiler.ir import Add, Graph

from .onnx_common import Builder, ExportError, finish_model
from .onnx_int_lif import emit_lif, sequence_steps
from lmhtc.compiler.intir_conv1d import QConv1d, conv2d_view

__all__ = ["ExportError", "export_int_onnx", "value_bounds", "EXACT_F32"]

EXACT_F32 = 2 ** 24      # integers below this, and sums of them below it, are exact in float32
INT64_SAFE = 2 ** 62     # the compiler's bound on every synaptic and T-GIM sum
I64 = np.int64


class _IntBuilder(Builder):
    def i64(self, base: str, value) -> str:
        return self.const(base, value, I64)

    def int32_as_i64(self, base: str, value: np.ndarray) -> str:
        """An int64 constant stored as int32 (weight mantissas have at most 24 bits): half the file size."""
        return self.op("Cast", [self.const(base, value, np.int32)], base, to=TensorProto.INT64)

    def rs(self, a: str, frac_bits: int, base: str) -> str:
        """``rs(a, F)``: Div truncates toward zero, so adding sign(a)·2^(F−1) first rounds half away from zero."""
        if frac_bits == 0:
            return a
        half = self.op("Mul", [self.op("Sign", [a], base), self.i64(f"{base}.half", 1 << (frac_bits - 1))], base)
        return self.op("Div", [self.op("Add", [a, half], base), self.i64(f"{base}.one", 1 << frac_bits)], base)

    def exp_shift(self, a: str, e: int, base: str) -> str:
        if e == 0:
            return a
        return self.op("Mul", [a, self.i64(f"{base}.pow2", 1 << e)], base) if e > 0 else self.rs(a, -e, base)


def export_int_onnx(graph: Graph, metadata: dict | None = None, spikes: bool = False,
                    float_limit: int = EXACT_F32) -> onnx.ModelProto:
    """The integer graph as an ONNX model, bit-exact with ``lmhtc.runtime.run_int``.

    ``float_limit``: synaptic sums bounded below it run as float32 Conv/MatMul (must be ≤ 2^24 to be exact;
    0 forces the int64 path everywhere). Raises ExportError naming a node the target cannot express.
    """
    if float_limit > EXACT_F32:
        raise ValueError("float_limit above 2^24 would not be exact in float32")
    try:
        table = check_integer_graph(graph, "onnx-int")
    except LoweringError as exc:
        raise ExportError(str(exc)) from None
    edge, sums = value_bounds(graph)
    b = _IntBuilder()
    steps = graph.steps
    vals: dict[str, list[str]] = {}
    ctx = _Ctx(b, graph, steps, edge, sums, float_limit, spikes)
    for node in graph.topo():
        if node.name in sums and sums[node.name] >= INT64_SAFE:
            raise ExportError(f"node {node.name!r} ({node.kind}): sums up to {sums[node.name]} do not fit int64")
        vals[node.name] = table[node.kind](ctx, node, [vals[i] for i in node.inputs])
    spike_outputs = ctx.spike_outputs
    classes = list(graph.readout.shape)     # [classes], or a NIR Output's several dimensions
    meta = {"integer": "true", "semantics_version": str(SEMANTICS_VERSION),
            "weight_bits": str(graph.meta.get("quantization", {}).get("weight_bits", "")), **(metadata or {})}
    x_dims = ([steps] if _is_sequence(graph) else []) + ["N", *graph.input.input_shape]
    return finish_model(
        b, graph, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims)],
        [helper.make_tensor_value_info("logits_int", TensorProto.INT64, ["N", *classes]),
         helper.make_tensor_value_info("outputs_int", TensorProto.INT64, [steps, "N", *classes]),
         helper.make_tensor_value_info("logits", TensorProto.DOUBLE, ["N", *classes]),
         helper.make_tensor_value_info("outputs", TensorProto.DOUBLE, [steps, "N", *classes]),
         *spike_outputs], meta)


class _Ctx:
    """What a lowering sees besides its node and inputs: the builder, the graph, the range bounds."""

    def __init__(self, b: _IntBuilder, graph: Graph, steps: int, edge: dict, sums: dict, float_limit: int,
                 spikes: bool):
        self.b, self.graph, self.steps, self.edge, self.sums = b, graph, steps, edge, sums
        self.float_limit, self.spikes = float_limit, spikes
        self.spike_outputs: list = []


def _lower_synapse(ctx: _Ctx, node, ins) -> list[str]:
    b = ctx.b
    use_float = ctx.sums[node.name] < ctx.float_limit and ctx.edge[node.inputs[0]] < ctx.float_limit
    acc = _synapse(b, node, ctx.graph, ins[0], use_float)
    bias = None if node.bias is None else b.i64(f"{node.name}.bias", _channel(node.bias, len(node.shape)))
    outs = []
    for a in acc:
        y = b.exp_shift(a, node.shift, node.name)
        outs.append(b.op("Add", [y, bias], node.name) if bias is not None else y)
    return outs


def _lower_gain(ctx: _Ctx, node: QGain, ins) -> list[str]:
    b = ctx.b
    gain = b.i64(f"{node.name}.gain", _channel(node.gain, len(node.shape)))
    return [b.exp_shift(b.op("Mul", [v, gain], node.name), node.shift, node.name) for v in ins[0]]


def _lower_global_sum(ctx: _Ctx, node: GlobalSumPool, ins) -> list[str]:
    axes = ctx.b.i64(f"{node.name}.axes", [2, 3])
    return [ctx.b.op("ReduceSum", [v, axes], node.name, keepdims=1) for v in ins[0]]


def _is_sequence(graph: Graph) -> bool:
    """An input with encoding ``sequence`` (imported NIR graphs) takes x [steps, N, ...], one frame per step."""
    return graph.input.encoding == "sequence"


def _lower_input(ctx: _Ctx, node: QInput, ins) -> list[str]:
    enc = _encode_input(ctx.b, node)
    return sequence_steps(ctx.b, enc, ctx.steps, node.name) if _is_sequence(ctx.graph) else [enc]


def _lower_lif(ctx: _Ctx, node, ins) -> list[str]:
    return _spike_output(ctx, node, emit_lif(ctx.b, node, ins[0], ctx.steps), node.spiking)


def _lower_neuron(ctx: _Ctx, node: QNeuron, ins) -> list[str]:
    return _spike_output(ctx, node, _neuron(ctx.b, node, ins[0], ctx.steps), True)


def _spike_output(ctx: _Ctx, node, out: list[str], spiking: bool) -> list[str]:
    """With ``spikes``, a neuron layer's counts as the output ``spikes/<layer>`` [steps, N, ...]."""
    levels = node.levels if isinstance(node, QNeuron) else node.out_bound()
    if ctx.spikes and spiking:
        name = f"spikes/{node.name}"
        narrow = levels < 128
        _stack(ctx.b, out, name, node.name, to=TensorProto.INT8 if narrow else None)
        ctx.spike_outputs.append(helper.make_tensor_value_info(
            name, TensorProto.INT8 if narrow else TensorProto.INT64, [ctx.steps, "N", *node.shape]))
    return out


def _lower_readout(ctx: _Ctx, node: QReadout, ins) -> list[str]:
    _readout(ctx.b, node, ins[0], ctx.steps)
    return []


def _channel(values: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast over [N, C, H, W] (``ndim`` = 3) or [N, F] (``ndim`` = 1)."""
    v = np.asarray(values, dtype=I64)
    return v.reshape(-1, *([1] * (ndim - 1)))


def _encode_input(b: _IntBuilder, node: QInput) -> str:
    """``clip(round(x/scale), ±q)`` in float64, rounding half away from zero: sign(s)·floor(|s| + 1/2)."""
    q = 2 ** (node.bits - 1) - 1
    s = b.op("Div", [b.op("Cast", ["x"], node.name, to=TensorProto.DOUBLE),
                     b.const(f"{node.name}.scale", node.scale, np.float64)], node.name)
    r = b.op("Mul", [b.op("Sign", [s], node.name),
                     b.op("Floor", [b.op("Add", [b.op("Abs", [s], node.name),
                                                 b.const(f"{node.name}.half", 0.5, np.float64)], node.name)],
                          node.name)], node.name)
    r = b.op("Clip", [r, b.const(f"{node.name}.lo", -q, np.float64), b.const(f"{node.name}.hi", q, np.float64)],
             node.name)
    return b.op("Cast", [r], node.name, to=TensorProto.INT64)


def _synapse(b: _IntBuilder, node, graph: Graph, xs: list[str], use_float: bool) -> list[str]:
    """Σ w·x per step, exact: float32 Conv/MatMul under the 2^24 bound, else int64 MatMul (im2col for convs)."""
    w = node.weight.astype(I64)
    if isinstance(node, QConv1d):      # its 2-D view on (C, 1, L), reshaped back to (Cout, L_out)
        view = conv2d_view(node)
        c, length = graph.node(node.inputs[0]).shape
        shape4 = b.i64(f"{node.name}.as2d", [0, c, 1, length])
        back = b.i64(f"{node.name}.as1d", [0, *node.shape])
        xs4 = [b.op("Reshape", [x, shape4], node.name) for x in xs]
        ys = _conv_sums(b, node.name, xs4, view.weight.astype(I64), (c, 1, length), view.shape, view.stride,
                        view.padding, view.dilation, view.groups, use_float)
        return [b.op("Reshape", [y, back], node.name) for y in ys]
    if isinstance(node, QLinear):
        if use_float:
            wt = b.const(f"{node.name}.weight_t", w.T, np.float32)
            return [b.op("Cast", [b.op("MatMul", [b.op("Cast", [x], node.name, to=TensorProto.FLOAT), wt],
                                       node.name)], node.name, to=TensorProto.INT64) for x in xs]
        wt = b.int32_as_i64(f"{node.name}.weight_t", w.T)
        return [b.op("MatMul", [x, wt], node.name) for x in xs]
    return _conv_sums(b, node.name, xs, w, graph.node(node.inputs[0]).shape, node.shape, node.stride, node.padding,
                      node.dilation, node.groups, use_float)


def _conv_sums(b: _IntBuilder, base: str, xs: list[str], w: np.ndarray, in_shape, out_shape, stride, padding,
               dilation, groups: int, use_float: bool) -> list[str]:
    """Σ w·x of a convolution per step: float32 Conv on integer values (exact under the 2^24 bound the caller
    proved), else int64 MatMul over an im2col gather."""
    if use_float:
        wf = b.const(f"{base}.weight", w, np.float32)
        ph, pw = padding
        return [b.op("Cast", [b.op("Conv", [b.op("Cast", [x], base, to=TensorProto.FLOAT), wf], base,
                                   strides=list(stride), pads=[ph, pw, ph, pw], dilations=list(dilation),
                                   group=groups)],
                     base, to=TensorProto.INT64) for x in xs]
    return [_im2col_conv(b, base, x, w, in_shape, out_shape, stride, padding, dilation, groups) for x in xs]


def _im2col_indices(in_shape, out_shape, kernel, stride, padding, dilation, groups) -> np.ndarray:
    """[groups, Hout·Wout, Cin/groups·kh·kw] flat indices into the zero-padded input [C·Hp·Wp]."""
    c, h, w = in_shape
    kh, kw = kernel
    ho, wo = out_shape[1:]
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    cg = c // groups
    oy, ox = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    ky, kx = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    rows = oy.reshape(-1, 1) * stride[0] + ky.reshape(1, -1) * dilation[0]      # [P, kh·kw]
    cols = ox.reshape(-1, 1) * stride[1] + kx.reshape(1, -1) * dilation[1]
    spatial = rows * wp + cols
    chans = (np.arange(groups)[:, None] * cg + np.arange(cg)[None, :]) * (hp * wp)   # [G, cg]
    idx = chans[:, None, :, None] + spatial[None, :, None, :]                       # [G, P, cg, kh·kw]
    return idx.reshape(groups, ho * wo, cg * kh * kw)


def _im2col_conv(b: _IntBuilder, base: str, x: str, w: np.ndarray, in_shape, out_shape, stride, padding, dilation,
                 groups) -> str:
    """A convolution as int64 MatMul: gather every output's receptive field, multiply by the weight matrix."""
    cout, cg, kh, kw = w.shape
    ph, pw = padding
    if in_shape[0] * (in_shape[1] + 2 * ph) * (in_shape[2] + 2 * pw) >= 2 ** 31:
        raise ExportError(f"node {base!r}: an input of {in_shape} is too large for 32-bit gather indices")
    if ph or pw:
        x = b.op("Pad", [x, b.i64(f"{base}.pads", [0, 0, ph, pw, 0, 0, ph, pw])], base)
    flat = b.op("Flatten", [x], base, axis=1)                                             # [N, C·Hp·Wp]
    idx = _im2col_indices(in_shape, out_shape, (kh, kw), stride, padding, dilation, groups)
    cols = b.op("Gather", [flat, b.const(f"{base}.im2col", idx, np.int32)], base, axis=1)  # [N, G, P, cg·kh·kw]
    wm = w.reshape(groups, cout // groups, cg * kh * kw).transpose(0, 2, 1)              # [G, cg·kh·kw, cout/G]
    y = b.op("MatMul", [cols, b.int32_as_i64(f"{base}.weight_mat", wm)], base)          # [N, G, P, cout/G]
    y = b.op("Transpose", [y], base, perm=[0, 1, 3, 2])                                   # [N, G, cout/G, P]
    return b.op("Reshape", [y, b.i64(f"{base}.shape", [0, cout, *out_shape[1:]])], base)


def _sum_pool(b: _IntBuilder, node: SumPool2d, graph: Graph, xs: list[str], use_float: bool) -> list[str]:
    """Window sums as a depthwise convolution with a kernel of ones (exact by the same rule as synapses)."""
    c = node.shape[0]
    ones = np.ones((c, 1, *node.kernel), dtype=I64)
    return _conv_sums(b, node.name, xs, ones, graph.node(node.inputs[0]).shape, node.shape, node.stride,
                      node.padding, (1, 1), c, use_float)


def _mix(b: _IntBuilder, node: QTemporalMix, xs: list[str], steps: int) -> list[str]:
    """``I(t) = rs(Σ_m omega[t,m]·y(m), F)``; equal rows (every step of a window) are computed once."""
    omega = node.omega.astype(I64)
    if len(xs) == 1:     # a static input: Σ_m omega[t, m]·y = (row sum)·y
        omega = omega.sum(1, keepdims=True)
    done: dict[tuple, str] = {}
    out = []
    for t in range(steps):
        row = tuple(int(v) for v in omega[t])
        if row not in done:
            terms = [b.op("Mul", [xs[m], b.i64(f"{node.name}.w", w)], node.name) for m, w in enumerate(row) if w]
            if not terms:
                terms = [b.op("Mul", [xs[0], b.i64(f"{node.name}.zero", 0)], node.name)]
            acc = terms[0]
            for term in terms[1:]:
                acc = b.op("Add", [acc, term], node.name)
            done[row] = b.rs(acc, node.frac_bits, node.name)
        out.append(done[row])
    return out


def _neuron(b: _IntBuilder, node: QNeuron, currents: list[str], steps: int) -> list[str]:
    """Per step: ``V ← sat(rs(leak·V, D) + I, B)``, ``k = clip(V div Θ, 0, L)``, ``V ← V − kΘ`` (soft reset)."""
    theta = node.threshold.astype(I64)
    if (theta < 1).any():
        raise ExportError(f"node {node.name!r}: thresholds must be ≥ 1 (found {int(theta.min())})")
    one = 1 << node.leak_frac_bits
    lo, hi = -(2 ** (node.membrane_bits - 1)), 2 ** (node.membrane_bits - 1) - 1
    if int(np.abs(node.leak.astype(I64)).max()) * (hi + 1) >= 2 ** 63:
        raise ExportError(f"node {node.name!r}: leak × membrane products do not fit int64")
    nd = len(node.shape)
    th = b.i64(f"{node.name}.theta", _channel(theta, nd))
    lo_c, hi_c = b.i64(f"{node.name}.lo", lo), b.i64(f"{node.name}.hi", hi)
    zero, levels = b.i64(f"{node.name}.k0", 0), b.i64(f"{node.name}.L", node.levels)
    cur = currents * steps if len(currents) == 1 else currents
    v0 = node.v_init.astype(I64)
    if int(node.leak[0]) != one:      # the first step's leak acts on the constant v_init: fold it
        v0 = rs(int(node.leak[0]) * v0, node.leak_frac_bits)
    v = None
    out = []
    for t in range(steps):
        if t == 0:
            v = b.op("Add", [cur[0], b.i64(f"{node.name}.v_init", _channel(v0, nd))], node.name)
        else:
            if int(node.leak[t]) != one:
                v = b.rs(b.op("Mul", [v, b.i64(f"{node.name}.leak", int(node.leak[t]))], node.name),
                         node.leak_frac_bits, node.name)
            v = b.op("Add", [v, cur[t]], node.name)
        v = b.op("Clip", [v, lo_c, hi_c], node.name)
        k = b.op("Clip", [b.op("Div", [v, th], node.name), zero, levels], node.name)
        v = b.op("Sub", [v, b.op("Mul", [k, th], node.name)], node.name)
        out.append(k)
    return out


def _stack(b: _IntBuilder, seq: list[str], out: str, base: str, to=None) -> str:
    axes = b.i64(f"{base}.axis0", [0])
    stacked = [b.op("Unsqueeze", [v, axes], base) for v in seq]
    if to is None:
        return b.op("Concat", stacked, base, out=out, axis=0)
    return b.op("Cast", [b.op("Concat", stacked, base, axis=0)], base, out=out, to=to)


def _readout(b: _IntBuilder, node: QReadout, ys: list[str], steps: int) -> None:
    """``outputs_int`` [steps, N, K], ``logits_int = Σ_t y(t)``, dequantized exactly as the runtime does."""
    _stack(b, ys * steps if len(ys) == 1 else ys, "outputs_int", node.name)
    b.op("ReduceSum", ["outputs_int", b.i64(f"{node.name}.axis0", [0])], node.name, out="logits_int", keepdims=0)
    per_channel = node.scale.astype(np.float64).reshape(-1, *([1] * (len(node.shape) - 1)))
    scale = b.const(f"{node.name}.scale", per_channel, np.float64)
    b.op("Mul", [b.op("Cast", ["outputs_int"], node.name, to=TensorProto.DOUBLE), scale], node.name, out="outputs")
    b.op("Div", [b.op("Mul", [b.op("Cast", ["logits_int"], node.name, to=TensorProto.DOUBLE), scale], node.name),
                 b.const(f"{node.name}.steps", float(steps), np.float64)], node.name, out="logits")


# The integer ONNX target's lowering table: node kind → (context, node, input step tensors) → step tensors.
LOWERING = {
    "qinput": _lower_input,
    "qconv2d": _lower_synapse,
    "qlinear": _lower_synapse,
    "qconv1d": _lower_synapse,
    "qgain": _lower_gain,
    "sumpool2d": lambda ctx, node, ins: _sum_pool(ctx.b, node, ctx.graph, ins[0],
                                                  ctx.sums[node.name] < ctx.float_limit),
    "globalsumpool": _lower_global_sum,
    "add": lambda ctx, node, ins: ctx.b.add_steps(ins[0], ins[1], ctx.steps, node.name),
    "flatten": lambda ctx, node, ins: [ctx.b.op("Flatten", [v], node.name, axis=1) for v in ins[0]],
    "qtemporal_mix": lambda ctx, node, ins: _mix(ctx.b, node, ins[0], ctx.steps),
    "qneuron": _lower_neuron,
    "qlif": _lower_lif,
    "qreadout": _lower_readout,
    "maxpool2d": refuse("integer max-pool is not part of the integer contract"),
}
