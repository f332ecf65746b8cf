"""ONNX target, integer: the integer network of docs/integer-semantics.md as an ONNX model, bit-exact with the runtime.

Every value on an edge is an integer tensor of the narrowest exact type: int32 where the emitter's own
range analysis (``value_bounds``) bounds the edge below 2^31, else int64; and every operation of the contract
is an integer ONNX op: exact products and sums, the rounding shift ``rs(a, F) = Div(a + sign(a)·2^(F−1),
2^F)`` (integer ``Div`` truncates toward zero, so this is the contract's half-away-from-zero rounding),
saturation as a clamp, and the multi-level spike ``k = clamp(Div(V, Θ), 0, L)`` (``[V ≥ Θ]`` for L = 1).
On int64 edges no ``Sign``/``Clip``/``Min``/``Max`` is emitted (``_IntBuilder.clamp``: onnxruntime 1.23
computes them wrongly for |x| in [2^31, 2^32)); comparisons and ``Where`` take their place.

A synapse is computed in one of three exact ways, chosen per node by the range analysis:

* onnxruntime's integer kernels, ``ConvInteger``/``MatMulInteger`` (uint8 × uint8 → int32), when the
  inputs are proven in [0, 255] (spike counts and their sums) or in [−127, 127] (stored as x + 128 with
  zero point 128) and the weight mantissas have 8 bits (stored as w + 128 with zero point 128), with the
  ``uint8`` products (``products``: the default on CPUs with VNNI/AMX, ``default_products``);
* float32 ``Conv``/``MatMul`` on integer values when every partial sum is bounded below 2^24 — float32
  then represents each product and partial sum exactly, whatever the summation order;
* otherwise an int64 ``MatMul`` on an im2col ``Gather`` of the padded input — exact in int64 because the
  compiler bounds every sum below 2^62.

Where the graph's window plan (``compiler.analysis.windows``, the runtime's too) takes a layer's synaptic products
once per window on window spike sums, so does the emitter (the same integers by linearity). T-GIM sums
that need more than 31 bits run in int32: on synaptic values kept as 2^e·P + c (``onnx_int_affine``), else
in a split form (``_split_mix_row``); leak steps of an int32
neuron loop likewise (``_leak``); both are proven equal to the semantics' ``rs``. The ``qlif`` kind's
emitter (onnx_int_lif.py) works on int64: its currents are cast at the kind boundary.

Time is unrolled as in the float target; a value that is the same at every step (the encoded input and
what is computed from it before the first neuron) is computed once. Inputs ``x`` [N, C, H, W] float32
(encoded in float64 as the contract says); outputs ``logits_int`` [N, classes] int64, ``outputs_int``
[steps, N, classes] int64, their dequantized ``logits`` and ``outputs`` (float64, computed as the runtime
computes them), and with ``spikes=True`` one ``spikes/<neuron>`` [steps, N, ...] int8 output per neuron layer.
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
from lmhtc.compiler.analysis.windows import planned_windows
from lmhtc.compiler.ir import Add, Graph

from .onnx_common import Builder, ExportError, finish_model
from .onnx_int_affine import affine_mix, affine_nodes
from .onnx_int_tgim import mix_columns, per_row
from .onnx_int_lif import emit_lif, sequence_steps
from lmhtc.compiler.intir_conv1d import QConv1d, conv2d_view

__all__ = ["ExportError", "export_int_onnx", "value_bounds", "EXACT_F32"]

EXACT_F32 = 2 ** 24      # integers below this, and sums of them below it, are exact in float32
INT64_SAFE = 2 ** 62     # the compiler's bound on every synaptic and T-GIM sum
I64 = np.int64


INT32_MAX = 2 ** 31 - 1
_ELEM = {np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int64): TensorProto.INT64,
         np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
         np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
         np.dtype(np.bool_): TensorProto.BOOL}
_NP = {v: k for k, v in _ELEM.items()}
_OUT_TYPE = {"ConvInteger": TensorProto.INT32, "MatMulInteger": TensorProto.INT32, "Greater": TensorProto.BOOL,
             "GreaterOrEqual": TensorProto.BOOL, "Less": TensorProto.BOOL, "Equal": TensorProto.BOOL}


def int_type(bound: int) -> int:
    """The narrowest ONNX integer type of an edge whose values are proven to satisfy |v| ≤ ``bound``."""
    return TensorProto.INT32 if bound <= INT32_MAX else TensorProto.INT64


class _IntBuilder(Builder):
    """The builder with each tensor's element type: ops infer it (Cast: ``to``; ConvInteger/MatMulInteger: int32;
    comparisons: bool; Where: its values; else the first input's), names it does not know are int64."""

    def __init__(self):
        super().__init__()
        self.dt: dict[str, int] = {"x": TensorProto.FLOAT}
        self._casts: dict[tuple[str, int], str] = {}

    def type_of(self, name: str) -> int:
        return self.dt.get(name, TensorProto.INT64)

    def const(self, base: str, value, dtype=np.float32) -> str:
        n = super().const(base, value, dtype)
        self.dt[n] = _ELEM[np.dtype(dtype)]
        return n

    def op(self, op_type: str, inputs: list[str], base: str, out: str | None = None, **attrs) -> str:
        out = super().op(op_type, inputs, base, out, **attrs)
        if op_type == "Cast":
            self.dt[out] = attrs["to"]
        elif op_type == "Where":
            self.dt[out] = self.type_of(inputs[1])
        else:
            self.dt[out] = _OUT_TYPE.get(op_type) or self.type_of(inputs[0])
        return out

    def cast(self, a: str, to: int) -> str:
        """``a`` as element type ``to`` (one Cast per tensor and type, shared by every consumer)."""
        if self.type_of(a) == to:
            return a
        if (a, to) not in self._casts:
            self._casts[(a, to)] = self.op("Cast", [a], a.rsplit("__", 1)[0], to=to)
        return self._casts[(a, to)]

    def int_const(self, base: str, value, like: str) -> str:
        """An integer constant of the element type of tensor ``like``."""
        return self.const(base, value, _NP[self.type_of(like)])

    def i64(self, base: str, value) -> str:
        return self.const(base, value, I64)

    def int32_as_i64(self, base: str, value: np.ndarray) -> str:
        """An int64 constant stored as int32 (weight mantissas have at most 24 bits): half the file size."""
        return self.op("Cast", [self.const(base, value, np.int32)], base, to=TensorProto.INT64)

    def clamp(self, a: str, lo: str | None, hi: str | None, base: str) -> str:
        """``min(max(a, lo), hi)`` (``lo``/``hi``: constants of a's type, either may be None), exact in
        onnxruntime: ``Clip``/``Max``/``Min`` on int32, but on int64 ``Less``/``Greater`` + ``Where``, because
        onnxruntime 1.23's int64 ``Clip``, ``Min``, ``Max`` and ``Sign`` return wrong values for
        |x| in [2^31, 2^32) (docs/integer-semantics.md, "onnxruntime's int64 kernels")."""
        if self.type_of(a) != TensorProto.INT64:
            if lo is not None and hi is not None:
                return self.op("Clip", [a, lo, hi], base)
            return self.op("Max", [a, lo], base) if lo is not None else self.op("Min", [a, hi], base)
        if lo is not None:
            a = self.op("Where", [self.op("Less", [a, lo], base), lo, a], base)
        if hi is not None:
            a = self.op("Where", [self.op("Greater", [a, hi], base), hi, a], base)
        return a

    def rs(self, a: str, frac_bits: int, base: str) -> str:
        """``rs(a, F)`` in a's type: Div truncates toward zero, so adding sign(a)·2^(F−1) first rounds half away
        from zero (the caller proves |a| + 2^(F−1) fits the type). With h = 2^(F−1) the offset is
        ``Clip(a, −h, h)`` on int32 (it equals sign(a)·h where |a| ≥ h, and where |a| < h both sums are below
        2^F in magnitude, so the quotient is 0 either way: one op fewer), ``Where(a < 0, −h, h)`` on int64
        (onnxruntime's int64 Sign and Clip are wrong for |a| in [2^31, 2^32): ``clamp``)."""
        if frac_bits == 0:
            return a
        h = 1 << (frac_bits - 1)
        lo, hi = self.int_const(f"{base}.neg_half", -h, a), self.int_const(f"{base}.half", h, a)
        if self.type_of(a) == TensorProto.INT64:
            off = self.op("Where", [self.op("Less", [a, self.int_const(f"{base}.zero", 0, a)], base), lo, hi], base)
        else:
            off = self.op("Clip", [a, lo, hi], base)
        return self.op("Div", [self.op("Add", [a, off], base), self.int_const(f"{base}.one", 1 << frac_bits, a)],
                       base)

    def exp_shift(self, a: str, e: int, base: str) -> str:
        if e == 0:
            return a
        if e > 0:
            return self.op("Mul", [a, self.int_const(f"{base}.pow2", 1 << e, a)], base)
        return self.rs(a, -e, base)


PRODUCTS = ("auto", "uint8", "float")


def default_products() -> str:
    """The faster exact synaptic products on this CPU: ``uint8`` (onnxruntime's ``ConvInteger``/``MatMulInteger``)
    where it has VNNI or AMX, else ``float`` (float32 ``Conv``/``MatMul`` on the same integers, exact below 2^24).
    Measured on an AVX2 EPYC without VNNI (ResNet-18, batch 64, 2 threads): ``ConvInteger`` 1.3–1.6× slower than
    float32 ``Conv`` per layer shape, the whole model 1.16–1.20× faster with float32 products."""
    from lmhtc.runtime.int8 import int8_dot_product

    return "uint8" if int8_dot_product() else "float"


def export_int_onnx(graph: Graph, metadata: dict | None = None, spikes: bool = False,
                    float_limit: int = EXACT_F32, int8: bool | None = None, products: str = "auto") -> onnx.ModelProto:
    """The integer graph as an ONNX model, bit-exact with ``lmhtc.runtime.run_int``.

    ``float_limit``: synaptic sums bounded below it run as float32 Conv/MatMul (must be ≤ 2^24 to be exact;
    0 forces the int64 path wherever uint8 products do not apply). ``products``: ``uint8`` — synapses whose inputs
    are proven to lie in [0, 255] run as onnxruntime's uint8 ``ConvInteger``/``MatMulInteger``; ``float`` —
    never (float32 or int64 as above); ``auto`` — ``default_products()``, this CPU's faster one. ``int8``, when
    given, overrides it (True: ``uint8``). Every choice computes the same integers; the model's metadata
    ``synaptic_products`` records which was taken. Raises ExportError naming a node the target cannot express.
    """
    if float_limit > EXACT_F32:
        raise ValueError("float_limit above 2^24 would not be exact in float32")
    if products not in PRODUCTS:
        raise ExportError(f"--products must be one of {', '.join(PRODUCTS)}, got {products!r}")
    if int8 is None:
        int8 = (default_products() if products == "auto" else products) == "uint8"
    try:
        table = check_integer_graph(graph, "onnx-int")
    except LoweringError as exc:
        raise ExportError(str(exc)) from None
    edge, sums = value_bounds(graph)
    b = _IntBuilder()
    steps = graph.steps
    vals: dict[str, list[str]] = {}
    ctx = _Ctx(b, graph, steps, edge, sums, float_limit, spikes, int8)
    for node in graph.topo():
        if node.name in sums and sums[node.name] >= INT64_SAFE:
            raise ExportError(f"node {node.name!r} ({node.kind}): sums up to {sums[node.name]} do not fit int64")
        vals[node.name] = table[node.kind](ctx, node, [vals[i] for i in node.inputs])
        if ctx.win.get(node.name, 1) > 1 and node.kind not in _WINDOWED_KINDS:
            raise ExportError(f"node {node.name!r} ({node.kind}) cannot take window sums")
    spike_outputs = ctx.spike_outputs
    classes = list(graph.readout.shape)     # [classes], or a NIR Output's several dimensions
    meta = {"integer": "true", "semantics_version": str(SEMANTICS_VERSION),
            "weight_bits": str(graph.meta.get("quantization", {}).get("weight_bits", "")),
            "synaptic_products": "uint8" if int8 else "float", **(metadata or {})}
    x_dims = ([steps] if _is_sequence(graph) else []) + ["N", *graph.input.input_shape]
    return finish_model(
        b, graph, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims)],
        [helper.make_tensor_value_info("logits_int", TensorProto.INT64, ["N", *classes]),
         helper.make_tensor_value_info("outputs_int", TensorProto.INT64, [steps, "N", *classes]),
         helper.make_tensor_value_info("logits", TensorProto.DOUBLE, ["N", *classes]),
         helper.make_tensor_value_info("outputs", TensorProto.DOUBLE, [steps, "N", *classes]),
         *spike_outputs], meta)


_WINDOWED_KINDS = frozenset({"qconv2d", "qlinear", "qconv1d", "qgain", "add", "qtemporal_mix"})
_SYNAPTIC_KINDS = frozenset({"qconv2d", "qlinear", "qconv1d", "qgain"})      # read inputs via windowed_input


class _Ctx:
    """What a lowering sees besides its node and inputs: the builder, the graph, the range bounds, the window
    plan (``win[node]``: the node's tensors are sums over windows of that many steps, as the runtime's)."""

    def __init__(self, b: _IntBuilder, graph: Graph, steps: int, edge: dict, sums: dict, float_limit: int,
                 spikes: bool, int8: bool = True):
        self.b, self.graph, self.steps, self.edge, self.sums = b, graph, steps, edge, sums
        self.float_limit, self.spikes, self.int8 = float_limit, spikes, int8
        self.spike_outputs: list = []
        self.plan = planned_windows(graph)
        self.nonneg = _nonnegative(graph)
        self.win: dict[str, int] = {}
        self._wsums: dict[tuple, list[str]] = {}
        # values reaching only T-GIM as 2^e·P + c (onnx_int_affine): name → (e, |P| bound, |c| bound), and c
        self.affine = affine_nodes(graph, sums, self.plan)
        self.affine_c: dict[str, np.ndarray | None] = {}

    def window_sums(self, src: str, xs: list[str], lw: int) -> list[str]:
        """Σ of ``xs`` over each window of ``lw`` steps (in their type: the bound ``edge·lw`` fits it), shared
        by every consumer of ``src``."""
        if lw == 1:
            return xs
        key = (src, lw)
        if key not in self._wsums:
            if int_type(self.edge[src] * lw) != self.b.type_of(xs[0]):
                xs = [self.b.cast(x, TensorProto.INT64) for x in xs]
            out = []
            for j in range(0, len(xs), lw):
                acc = xs[j]
                for x in xs[j + 1:j + lw]:
                    acc = self.b.op("Add", [acc, x], src)
                out.append(acc)
            self._wsums[key] = out
        return self._wsums[key]

    def preset_window_sums(self, src: str, lw: int, sums: list[str]) -> None:
        """``src``'s window sums, computed by its own lowering (``_window_neuron``): its consumers read these."""
        self._wsums[(src, lw)] = sums

    def windowed_input(self, node, xs: list[str]) -> tuple[list[str], int, int]:
        """(the input tensors of a synaptic ``node`` — window sums where the runtime's plan takes them —, the
        window size, a bound on |input|)."""
        src = node.inputs[0]
        lw = self.plan.get(node.name, 1) if len(xs) == self.steps else 1
        if self.win.get(src, 1) != 1:
            raise ExportError(f"node {node.name!r}: its input {src!r} is a window sum")
        return self.window_sums(src, xs, lw), lw, self.edge[src] * lw

    def kernel(self, node, in_bound: int, acc_bound: int, fan_in: int) -> str:
        """``int8`` (uint8 operands: inputs proven in [0, 255], weight mantissas of 8 bits stored with zero point
        128, every int32 partial sum of the zero-point expansion below 2^31; ``int8s``: inputs in [−127, 127]
        stored as x + 128 with zero point 128), ``float`` (every partial sum below
        ``float_limit`` ≤ 2^24: exact in float32) or ``int64`` (im2col + int64 MatMul)."""
        w = getattr(node, "weight", None)
        narrow_w = w is None or int(np.abs(w).max(initial=0)) <= 127
        if self.int8 and narrow_w:
            if node.inputs[0] in self.nonneg and in_bound <= 255 and in_bound * 255 * fan_in <= INT32_MAX:
                return "int8"
            if in_bound <= 127 and 255 * 255 * fan_in <= INT32_MAX:
                return "int8s"       # signed inputs as x + 128 with input zero point 128
        if acc_bound < self.float_limit and in_bound < self.float_limit:
            return "float"
        return "int64"


def _nonnegative(graph: Graph) -> set[str]:
    """Nodes whose values are ≥ 0 by construction: spike counts (qneuron) and sums/reshapes of them."""
    out: set[str] = set()
    for node in graph.topo():
        if node.kind == "qneuron" or (node.kind in ("sumpool2d", "globalsumpool", "flatten")
                                      and node.inputs[0] in out):
            out.add(node.name)
    return out


def _fan_in(node) -> int:
    return int(np.prod(node.weight.shape[1:])) if getattr(node, "weight", None) is not None else 1


def _lower_synapse(ctx: _Ctx, node, ins) -> list[str]:
    """Σ w·x (of window sums where planned) ``<< shift + lw·bias`` per step or window, in the edge's type."""
    b = ctx.b
    xs, lw, in_b = ctx.windowed_input(node, ins[0])
    acc_b = ctx.sums[node.name] * lw
    kind = ctx.kernel(node, in_b, acc_b, _fan_in(node))
    out_b = ctx.edge[node.name] * lw
    dt = int_type(max(acc_b + (1 << max(-node.shift - 1, 0)), out_b))
    if node.name in ctx.affine:        # P = Σ w·x and c = lw·bias, kept apart for the mix (onnx_int_affine)
        ctx.win[node.name] = lw
        ctx.affine_c[node.name] = None if node.bias is None else _channel(node.bias, len(node.shape)) * lw
        return [b.cast(a, TensorProto.INT32) for a in _synapse(b, node, ctx.graph, xs, kind, TensorProto.INT32)]
    acc = _synapse(b, node, ctx.graph, xs, kind, dt)
    bias = None
    if node.bias is not None:
        bias = b.const(f"{node.name}.bias", _channel(node.bias, len(node.shape)) * lw, _NP[dt])
    outs = []
    for a in acc:
        y = b.exp_shift(b.cast(a, dt), node.shift, node.name)
        outs.append(b.op("Add", [y, bias], node.name) if bias is not None else y)
    ctx.win[node.name] = lw
    return [b.cast(y, int_type(out_b)) for y in outs]


def _lower_gain(ctx: _Ctx, node: QGain, ins) -> list[str]:
    b = ctx.b
    xs, lw, in_b = ctx.windowed_input(node, ins[0])
    acc_b = ctx.sums[node.name] * lw
    dt = int_type(max(acc_b + (1 << max(-node.shift - 1, 0)), ctx.edge[node.name] * lw))
    ctx.win[node.name] = lw
    if node.name in ctx.affine:        # P = gain·x, no constant (onnx_int_affine)
        gain = b.const(f"{node.name}.gain", _channel(node.gain, len(node.shape)), np.int32)
        ctx.affine_c[node.name] = None
        return [b.op("Mul", [b.cast(v, TensorProto.INT32), gain], node.name) for v in xs]
    gain = b.const(f"{node.name}.gain", _channel(node.gain, len(node.shape)), _NP[dt])
    return [b.exp_shift(b.op("Mul", [b.cast(v, dt), gain], node.name), node.shift, node.name) for v in xs]


def _lower_add(ctx: _Ctx, node, ins) -> list[str]:
    wa, wb = (ctx.win.get(n, 1) for n in node.inputs)
    if wa != wb:
        raise ExportError(f"node {node.name!r} adds a window sum to a per-step value")
    ctx.win[node.name] = wa
    if node.name in ctx.affine:        # 2^e·(P_a·2^(e_a − e) + P_b·2^(e_b − e)) + (c_a + c_b)
        e = ctx.affine[node.name][0]
        scaled = []
        for src, vs in zip(node.inputs, ins):
            up = ctx.affine[src][0] - e
            pow2 = ctx.b.const(f"{node.name}.pow2", 1 << up, np.int32) if up else None
            scaled.append([ctx.b.op("Mul", [v, pow2], node.name) for v in vs] if up else vs)
        cs = [ctx.affine_c[src] for src in node.inputs if ctx.affine_c[src] is not None]
        ctx.affine_c[node.name] = None if not cs else cs[0] if len(cs) == 1 else cs[0] + cs[1]
        return ctx.b.add_steps(scaled[0], scaled[1], ctx.steps, node.name)
    dt = int_type(ctx.edge[node.name] * wa)
    return ctx.b.add_steps([ctx.b.cast(v, dt) for v in ins[0]], [ctx.b.cast(v, dt) for v in ins[1]], ctx.steps,
                           node.name)


def _lower_global_sum(ctx: _Ctx, node: GlobalSumPool, ins) -> list[str]:
    axes = ctx.b.i64(f"{node.name}.axes", [2, 3])
    dt = int_type(ctx.edge[node.name])
    return [ctx.b.op("ReduceSum", [ctx.b.cast(v, dt), axes], node.name, keepdims=1) for v in ins[0]]


def _is_sequence(graph: Graph) -> bool:
    """An input with encoding ``sequence`` (imported NIR graphs) takes x [steps, N, ...], one frame per step."""
    return graph.input.encoding == "sequence"


def _lower_input(ctx: _Ctx, node: QInput, ins) -> list[str]:
    enc = _encode_input(ctx.b, node, to=int_type(ctx.edge[node.name]))
    return sequence_steps(ctx.b, enc, ctx.steps, node.name) if _is_sequence(ctx.graph) else [enc]


def _lower_lif(ctx: _Ctx, node, ins) -> list[str]:
    """The qlif emitter works on int64 (onnx_int_lif.py): its currents are cast at this kind boundary."""
    currents = [ctx.b.cast(v, TensorProto.INT64) for v in ins[0]]
    return _spike_output(ctx, node, emit_lif(ctx.b, node, currents, ctx.steps), node.spiking)


def _lower_neuron(ctx: _Ctx, node: QNeuron, ins) -> list[str | None]:
    cur_b = ctx.edge[node.inputs[0]]
    lw = _window_neuron(ctx, node, ins[0])
    if lw > 1:       # only window sums are read: one multi-level step per window (``_neuron``'s ``window``)
        sums = _neuron(ctx.b, node, ins[0], ctx.steps, cur_bound=cur_b, window=lw)
        ctx.preset_window_sums(node.name, lw, [ctx.b.cast(k, int_type(node.levels * lw)) for k in sums])
        return [None] * ctx.steps
    return _spike_output(ctx, node, _neuron(ctx.b, node, ins[0], ctx.steps, cur_bound=cur_b), True)


def _window_neuron(ctx: _Ctx, node: QNeuron, currents: list[str | None]) -> int:
    """The window L of ``node``'s spike counts when every consumer reads them only as sums over windows of L
    steps (synapses the plan runs per window, no spike output) and, within each window, the steps after the
    first have no current and leak 1 (the exact schedule); else 1 (per-step spike counts).

    Then the L steps of a window are one step with L·levels levels: after the window's first step V only falls,
    by k·Θ per step with k = clamp(V div Θ, 0, levels), so the window fires clamp(V div Θ, 0, L·levels) in all
    and ends at V minus that many Θ; no step after the first can saturate (V neither grows nor falls below
    min(V, 0))."""
    lw = int(ctx.graph.meta.get("reparam_levels", 1))
    if lw <= 1 or ctx.spikes or ctx.steps % lw or len(currents) != ctx.steps:
        return 1
    consumers = ctx.graph.consumers(node.name)
    if not consumers or any(c.kind not in _SYNAPTIC_KINDS or ctx.plan.get(c.name, 1) != lw for c in consumers):
        return 1
    one = 1 << node.leak_frac_bits
    inner = [t for t in range(ctx.steps) if t % lw]
    if any(currents[t] is not None or int(node.leak[t]) != one for t in inner):
        return 1
    return lw


def _spike_output(ctx: _Ctx, node, out: list[str], spiking: bool) -> list[str]:
    """With ``spikes``, a neuron layer's counts as the output ``spikes/<layer>`` [steps, N, ...]."""
    levels = node.levels if isinstance(node, QNeuron) else node.out_bound()
    if ctx.spikes and spiking:
        name = f"spikes/{node.name}"
        to = TensorProto.INT8 if levels < 128 else TensorProto.INT64
        _stack(ctx.b, out, name, node.name, to=to)
        ctx.spike_outputs.append(helper.make_tensor_value_info(name, to, [ctx.steps, "N", *node.shape]))
    return out


def _lower_readout(ctx: _Ctx, node: QReadout, ins) -> list[str]:
    _readout(ctx.b, node, [ctx.b.cast(v, TensorProto.INT64) for v in ins[0]], ctx.steps)
    return []


def _channel(values: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast over [N, C, H, W] (``ndim`` = 3) or [N, F] (``ndim`` = 1)."""
    v = np.asarray(values, dtype=I64)
    return v.reshape(-1, *([1] * (ndim - 1)))


def _encode_input(b: _IntBuilder, node: QInput, to: int = TensorProto.INT64) -> str:
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
    return b.op("Cast", [r], node.name, to=to)


def _synapse(b: _IntBuilder, node, graph: Graph, xs: list[str], kind: str, dt: int) -> list[str]:
    """Σ w·x per tensor of ``xs``, exact: uint8 ConvInteger/MatMulInteger (``int8``), float32 Conv/MatMul under
    the 2^24 bound (``float``; cast to ``dt``), else int64 MatMul (im2col for convs)."""
    w = node.weight.astype(I64)
    if isinstance(node, QConv1d):      # its 2-D view on (C, 1, L), reshaped back to (Cout, L_out)
        view = conv2d_view(node)
        c, length = graph.node(node.inputs[0]).shape
        shape4 = b.i64(f"{node.name}.as2d", [0, c, 1, length])
        back = b.i64(f"{node.name}.as1d", [0, *node.shape])
        xs4 = [b.op("Reshape", [x, shape4], node.name) for x in xs]
        ys = _conv_sums(b, node.name, xs4, view.weight.astype(I64), (c, 1, length), view.shape, view.stride,
                        view.padding, view.dilation, view.groups, kind, dt)
        return [b.op("Reshape", [y, back], node.name) for y in ys]
    if isinstance(node, QLinear):
        if kind.startswith("int8"):
            return [b.op("MatMulInteger", o, node.name) for o in _u8_operands(b, node.name, xs, w.T, kind)]
        if kind == "float":
            wt = b.const(f"{node.name}.weight_t", w.T, np.float32)
            return [b.op("Cast", [b.op("MatMul", [b.cast(x, TensorProto.FLOAT), wt], node.name)], node.name, to=dt)
                    for x in xs]
        wt = b.int32_as_i64(f"{node.name}.weight_t", w.T)
        return [b.op("MatMul", [b.cast(x, TensorProto.INT64), wt], node.name) for x in xs]
    return _conv_sums(b, node.name, xs, w, graph.node(node.inputs[0]).shape, node.shape, node.stride, node.padding,
                      node.dilation, node.groups, kind, dt)


def _u8_operands(b: _IntBuilder, base: str, xs: list[str], w: np.ndarray, kind: str) -> list[list[str]]:
    """The operands of ConvInteger/MatMulInteger for Σ w·x, per input of ``xs``: 8-bit weight mantissas as
    uint8 ``w + 128`` with weight zero point 128 (onnxruntime's integer kernels take uint8 × uint8), the input
    as uint8 with zero point 0 (``int8``: x in [0, 255]) or as x + 128 with zero point 128 (``int8s``: x in
    [−127, 127]); the kernel computes Σ ((x + z) − z)·((w + 128) − 128) = Σ x·w."""
    z = 128 if kind == "int8s" else 0
    shared = [b.const(f"{base}.weight_u8", w + 128, np.uint8), b.const(f"{base}.x_zero", z, np.uint8),
              b.const(f"{base}.w_zero", 128, np.uint8)]
    ops = []
    for x in xs:
        xu = b.cast(b.op("Add", [x, b.int_const(f"{base}.x_offset", z, x)], base) if z else x, TensorProto.UINT8)
        ops.append([xu, *shared])
    return ops


def _conv_sums(b: _IntBuilder, base: str, xs: list[str], w: np.ndarray, in_shape, out_shape, stride, padding,
               dilation, groups: int, kind: str, dt: int = TensorProto.INT64) -> list[str]:
    """Σ w·x of a convolution per tensor: uint8 ConvInteger (``int8``), float32 Conv on integer values (``float``,
    exact under the 2^24 bound the caller proved), else int64 MatMul over an im2col gather."""
    ph, pw = padding
    geometry = dict(strides=list(stride), pads=[ph, pw, ph, pw], dilations=list(dilation), group=groups)
    if kind.startswith("int8"):
        return [b.op("ConvInteger", o, base, **geometry) for o in _u8_operands(b, base, xs, w, kind)]
    if kind == "float":
        wf = b.const(f"{base}.weight", w, np.float32)
        return [b.op("Cast", [b.op("Conv", [b.cast(x, TensorProto.FLOAT), wf], base, **geometry)], base, to=dt)
                for x in xs]
    return [_im2col_conv(b, base, b.cast(x, TensorProto.INT64), w, in_shape, out_shape, stride, padding, dilation,
                         groups) for x in xs]


def _lower_sum_pool(ctx: _Ctx, node: SumPool2d, ins) -> list[str]:
    """Window sums as a depthwise convolution with a kernel of ones (exact by the same rules as synapses)."""
    c, src = node.shape[0], node.inputs[0]
    ones = np.ones((c, 1, *node.kernel), dtype=I64)
    kind = ctx.kernel(node, ctx.edge[src], ctx.sums[node.name], int(np.prod(node.kernel)))
    dt = int_type(ctx.sums[node.name])
    ys = _conv_sums(ctx.b, node.name, ins[0], ones, ctx.graph.node(src).shape, node.shape, node.stride,
                    node.padding, (1, 1), c, kind, dt)
    return [ctx.b.cast(y, dt) for y in ys]


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


def _lower_mix(ctx: _Ctx, node: QTemporalMix, ins) -> list[str]:
    src = node.inputs[0]
    w_in = ctx.win.get(src, 1)
    if src in ctx.affine:
        e, p_bound, _ = ctx.affine[src]
        return affine_mix(ctx.b, node, ins[0], e, ctx.affine_c[src], ctx.steps, w_in, int_type(ctx.edge[node.name]),
                          p_bound)
    return _mix(ctx.b, node, ins[0], ctx.steps, w_in, ctx.edge[src] * w_in, ctx.edge[node.name], zero_rows=True)


def _mix(b: _IntBuilder, node: QTemporalMix, xs: list[str], steps: int, w_in: int = 1, in_bound: int | None = None,
         out_bound: int | None = None, zero_rows: bool = False) -> list[str | None]:
    """``I(t) = rs(Σ_m omega[t,m]·y(m), F)``; equal rows (every step of a window) are computed once.

    ``xs``: per step, one static tensor, or (``w_in`` > 1) window sums — omega is constant on each window's
    columns (the runtime's window plan), so the window sum times that weight is the window's part of the sum.
    With ``in_bound`` (on |x|) the sums run in int32 where Σ|omega[t]|·in_bound + 2^(F−1) fits, and the output
    has the type of ``out_bound``; else int64. ``zero_rows``: a step t > 0 whose row is zero gets None (a zero
    current) instead of a tensor of zeros.
    """
    omega = mix_columns(node, w_in, len(xs))
    half = (1 << node.frac_bits) >> 1
    if in_bound is None:
        acc_dt = out_dt = TensorProto.INT64
    else:
        acc_dt = int_type(int(np.abs(omega).sum(1).max(initial=0)) * in_bound + half)
        out_dt = int_type(out_bound)
    split = acc_dt == TensorProto.INT64 and in_bound is not None and _split_mix_fits(omega, in_bound, node.frac_bits)
    parts: dict[int, tuple[str, str]] = {}

    def emit(row: tuple) -> str:
        if split and any(row):
            return b.cast(_split_mix_row(b, node, xs, row, in_bound, parts), out_dt)
        terms = [b.op("Mul", [b.cast(xs[m], acc_dt), b.const(f"{node.name}.w", w, _NP[acc_dt])], node.name)
                 for m, w in enumerate(row) if w]
        if not terms:
            terms = [b.op("Mul", [b.cast(xs[0], acc_dt), b.const(f"{node.name}.zero", 0, _NP[acc_dt])], node.name)]
        acc = terms[0]
        for term in terms[1:]:
            acc = b.op("Add", [acc, term], node.name)
        return b.cast(b.rs(acc, node.frac_bits, node.name), out_dt)

    return per_row(omega, steps, zero_rows, emit)


def _split_terms(omega_abs_sum: int, in_bound: int, f: int) -> tuple[int, int, int]:
    """Bounds of ``_split_mix_row`` for a row with Σ|omega| = ``omega_abs_sum``: (|M|, |r|, K)."""
    m_b = omega_abs_sum * ((in_bound >> f) + 1)
    r_b = omega_abs_sum * ((1 << f) - 1)
    return m_b, r_b, -(-(r_b + 1) // (1 << f))


def _split_mix_fits(omega: np.ndarray, in_bound: int, f: int) -> bool:
    """Whether every row's split form (``_split_mix_row``) stays within int32 for inputs |y| ≤ ``in_bound``."""
    if in_bound > INT32_MAX:
        return False
    m_b, r_b, k = _split_terms(int(np.abs(omega).sum(1).max(initial=0)), in_bound, f)
    return max(m_b + k + (r_b >> f) + 4, r_b + 2 + (1 << f) + k * (1 << f)) <= INT32_MAX


def _split_mix_row(b: _IntBuilder, node: QTemporalMix, xs: list[str], row: tuple, in_bound: int,
                   parts: dict[int, tuple[str, str]]) -> str:
    """``rs(Σ_m ω_m·y_m, F)`` in int32 although the sum needs more bits (``_split_mix_fits`` proved the bounds).

    Each y = Q·2^F + R (Q = y div 2^F, truncated; |R| < 2^F), so the sum a = 2^F·M + r with M = Σ ω·Q and
    r = Σ ω·R. The semantics' rs(a, F) = ⌊(a − [a<0] + 2^(F−1)) / 2^F⌋ = M + ⌊(r − [a<0] + 2^(F−1)) / 2^F⌋, and
    a < 0 ⟺ M + ⌊r / 2^F⌋ < 0 (M is an integer). Both floors are truncating Divs after adding K·2^F ≥ |r| + 1.
    """
    f, n = node.frac_bits, node.name
    one, half = 1 << f, (1 << f) >> 1
    _, _, k = _split_terms(sum(abs(w) for w in row), in_bound, f)
    c = lambda key, value: b.const(f"{n}.{key}", value, np.int32)     # noqa: E731
    for m, w in enumerate(row):
        if w and m not in parts:
            y = b.cast(xs[m], TensorProto.INT32)
            q = b.op("Div", [y, c("one", one)], n)
            parts[m] = (q, b.op("Sub", [y, b.op("Mul", [q, c("one", one)], n)], n))

    def dot(i: int) -> str:
        terms = [b.op("Mul", [parts[m][i], c("w", w)], n) for m, w in enumerate(row) if w]
        acc = terms[0]
        for term in terms[1:]:
            acc = b.op("Add", [acc, term], n)
        return acc

    mk = b.op("Sub", [dot(0), c("k", k)], n)                                        # M − K
    r = dot(1)
    floor_r = b.op("Div", [b.op("Add", [r, c("k_one", k * one)], n), c("one", one)], n)   # ⌊r/2^F⌋ + K
    neg = b.op("Cast", [b.op("Less", [b.op("Add", [mk, floor_r], n), c("zero", 0)], n)], n, to=TensorProto.INT32)
    g = b.op("Div", [b.op("Add", [b.op("Sub", [r, neg], n), c("off", half + k * one)], n), c("one", one)], n)
    return b.op("Add", [mk, g], n)


def _neuron_type(node: QNeuron, cur_bound: int | None) -> int:
    """int32 when bounds prove every membrane value, leak step and current sum of the loop fits it (``_leak``'s
    int32 form included), else int64; int64 without a bound on the currents."""
    if cur_bound is None:
        return TensorProto.INT64
    f, one, hi = node.leak_frac_bits, 1 << node.leak_frac_bits, 1 << (node.membrane_bits - 1)
    v0 = int(np.abs(node.v_init.astype(I64)).max(initial=0)) * max(1, -(-abs(int(node.leak[0])) // one)) + 1
    need = [v0 + cur_bound, hi + cur_bound, node.levels * int(node.threshold.max(initial=0))]
    for leak in node.leak[1:]:
        d = int(leak) - one
        if d:
            if abs(d) >= one:
                return TensorProto.INT64
            span = _leak_span(d, hi, f)
            need += [2 * span + 2 * one, hi + 2 * (span // one) + 4, ((abs(int(leak)) * hi) >> f) + 2 + cur_bound]
    return TensorProto.INT32 if max(need) <= INT32_MAX else TensorProto.INT64


def _leak(b: _IntBuilder, v: str, leak: int, f: int, hi: int, base: str) -> str:
    """``rs(leak·V, F)`` with |V| ≤ ``hi``. int64: as written. int32 (``_neuron_type`` proved the bounds): with
    d = leak − 2^F and |d| < 2^F, leak·V has the sign of V, so rs(leak·V, F) = V + ⌊(d·V − [V<0] + 2^(F−1)) / 2^F⌋
    (the semantics' rs as a floor, with 2^F·V split off); the floor is a truncating Div after adding K·2^F.
    For d > 0, d·V also has the sign of V, so that is V + rs(d·V, F): the int32 rs, three ops fewer."""
    if b.type_of(v) == TensorProto.INT64:
        return b.rs(b.op("Mul", [v, b.i64(f"{base}.leak", leak)], base), f, base)
    one = 1 << f
    d = leak - one
    if d > 0:
        return b.op("Add", [v, b.rs(b.op("Mul", [v, b.int_const(f"{base}.leak_d", d, v)], base), f, base)], base)
    k = -(-_leak_span(d, hi, f) // one)                       # K·2^F ≥ |d·V − [V<0] + 2^(F−1)|
    neg = b.op("Cast", [b.op("Less", [v, b.int_const(f"{base}.zero", 0, v)], base)], base, to=b.type_of(v))
    n = b.op("Sub", [b.op("Mul", [v, b.int_const(f"{base}.leak_d", d, v)], base), neg], base)
    n = b.op("Add", [n, b.int_const(f"{base}.leak_off", (one >> 1) + k * one, v)], base)
    q = b.op("Div", [n, b.int_const(f"{base}.leak_one", one, v)], base)
    return b.op("Sub", [b.op("Add", [v, q], base), b.int_const(f"{base}.leak_k", k, v)], base)


def _leak_span(d: int, hi: int, f: int) -> int:
    """A bound on |d·V − [V<0] + 2^(F−1)| for |V| ≤ ``hi``."""
    return abs(d) * hi + 1 + ((1 << f) >> 1)


def _neuron(b: _IntBuilder, node: QNeuron, currents: list[str | None], steps: int,
            cur_bound: int | None = None, window: int = 1) -> list[str]:
    """Per step: ``V ← sat(rs(leak·V, D) + I, B)``, ``k = clip(V div Θ, 0, L)``, ``V ← V − kΘ`` (soft reset).

    int32 where ``cur_bound`` (on |I|) and the widths prove it exact (``_neuron_type``), else int64. A None
    current is zero (its Add is skipped). The Clip is emitted only where a bound on |V| (from ``cur_bound``,
    the leaks and v_init; after a soft reset V − kΘ lies in [min(V, 0), V]) exceeds the saturation bound.
    For L = 1, k = [V ≥ Θ] (the same value, one comparison). With ``window`` W > 1 (``_window_neuron`` proved
    the steps after each window's first silent: no current, leak 1) only each window's first step is emitted,
    with W·L levels, and the result is the window's spike sums, one tensor per window.
    """
    theta = node.threshold.astype(I64)
    if (theta < 1).any():
        raise ExportError(f"node {node.name!r}: thresholds must be ≥ 1 (found {int(theta.min())})")
    one = 1 << node.leak_frac_bits
    lo, hi = -(2 ** (node.membrane_bits - 1)), 2 ** (node.membrane_bits - 1) - 1
    if int(np.abs(node.leak.astype(I64)).max()) * (hi + 1) >= 2 ** 63:
        raise ExportError(f"node {node.name!r}: leak × membrane products do not fit int64")
    dt = _neuron_type(node, cur_bound)
    npt = _NP[dt]
    nd = len(node.shape)
    th = b.const(f"{node.name}.theta", _channel(theta, nd), npt)
    made: dict[str, str] = {}

    def c(key: str, value) -> str:
        if key not in made:
            made[key] = b.const(f"{node.name}.{key}", value, npt)
        return made[key]

    def th_times(j: int) -> str:      # j·Θ per channel
        return th if j == 1 else c(f"theta{j}", _channel(j * theta, nd))

    cur = currents * steps if len(currents) == 1 else list(currents)
    if cur[0] is None:
        raise ExportError(f"node {node.name!r}: no current at the first step")
    v0 = node.v_init.astype(I64)
    if int(node.leak[0]) != one:      # the first step's leak acts on the constant v_init: fold it
        v0 = rs(int(node.leak[0]) * v0, node.leak_frac_bits)
    v = None
    vb = int(np.abs(v0).max(initial=0))     # a bound on |V| (saturation can only clip above hi)
    levels = node.levels * window           # the levels one emitted step fires
    out = []
    for t in range(steps):
        if t % window:       # a silent step of a window: folded into the window's first (``_window_neuron``)
            continue
        i = None if cur[t] is None else b.cast(cur[t], dt)
        if t == 0:
            v = b.op("Add", [i, b.const(f"{node.name}.v_init", _channel(v0, nd), npt)], node.name) if v0.any() else i
        elif int(node.leak[t]) != one:
            v = _leak(b, v, int(node.leak[t]), node.leak_frac_bits, hi + 1, node.name)
            vb = ((abs(int(node.leak[t])) * vb) >> node.leak_frac_bits) + 1
        if t and i is not None:
            v = b.op("Add", [v, i], node.name)
        if i is not None:
            vb = vb + cur_bound if cur_bound is not None else hi + 1
        changed = t == 0 or i is not None or int(node.leak[t]) != one   # else V is the last step's, in [lo, hi]
        if changed and vb > hi:     # else no value can saturate: sat() is the identity
            v = b.clamp(v, c("lo", lo), c("hi", hi), node.name)
            vb = hi + 1
        if levels == 1:
            k = b.op("Cast", [b.op("GreaterOrEqual", [v, th], node.name)], node.name, to=dt)
        elif dt == TensorProto.INT64 and levels <= 4:     # onnxruntime's int64 Div costs ~5 comparisons:
            ks = [b.op("Cast", [b.op("GreaterOrEqual", [v, th_times(j)], node.name)], node.name, to=dt)
                  for j in range(1, levels + 1)]           # k = #{j ≤ levels : V ≥ j·Θ}, the same count
            k = ks[0]
            for kj in ks[1:]:
                k = b.op("Add", [k, kj], node.name)
        else:
            k = b.clamp(b.op("Div", [v, th], node.name), c("k0", 0), c(f"L{levels}", levels), node.name)
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
    "sumpool2d": _lower_sum_pool,
    "globalsumpool": _lower_global_sum,
    "add": _lower_add,
    "flatten": lambda ctx, node, ins: [ctx.b.op("Flatten", [v], node.name, axis=1) for v in ins[0]],
    "qtemporal_mix": _lower_mix,
    "qneuron": _lower_neuron,
    "qlif": _lower_lif,
    "qreadout": _lower_readout,
    "maxpool2d": refuse("integer max-pool is not part of the integer contract"),
}
