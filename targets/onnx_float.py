"""ONNX target, float: the IR's float graph as a standard ONNX model (onnx.helper; run by onnxruntime).

Time is unrolled: every node becomes one ONNX node per step (a value that is
the same at every step — the analog input and what is computed from it before
the first neuron — is computed once). Unrolling lets onnxruntime see a plain
feed-forward graph it can optimise as a whole (fusions, memory planning),
which a Loop/Scan body would hide; the T-GIM mixing is then just weighted
sums of step tensors. Soft reset, per-step leak and multi-level spikes (found
by comparisons, ``v ≥ iθ``) are elementwise ops.

The NIR kinds lower too: ``lif`` (compiler/lif_node.py: decay, scale, bias,
CubaLIF's synaptic current, ``>``/``>=``, subtract / zero / no reset, the
same-step and snnTorch reset timings, sinabs' multi-spike, ``v_min``; the
non-spiking LI emits its membrane) step by step as the float executor runs it,
``scale`` as a product, ``sum_pool2d`` as a depthwise all-ones convolution and
``conv1d`` as a 1-D Conv.

Inputs ``x`` [N, C, H, W] float32 with a dynamic batch dimension (a network
with per-step inputs, NIR's ``sequence`` encoding, takes [steps, N, ...]);
outputs ``logits`` [N, classes] (mean over steps) and ``outputs`` [steps, N,
classes]. This module reads the IR only; it knows nothing of checkpoints.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lmhtc.compiler.ir import BatchNorm, Conv2d, Graph, Linear, Neuron, Readout, TemporalMix
from lmhtc.compiler.lowering import LoweringError, check_lowerable, refuse

from .onnx_common import Builder, ExportError, finish_model

__all__ = ["ExportError", "export_float_onnx"]

def export_float_onnx(graph: Graph, metadata: dict | None = None) -> onnx.ModelProto:
    """The float graph as an ONNX model (opset 17, IR version 10); raises ExportError naming a node it cannot express."""
    if graph.meta.get("integer"):
        raise ExportError("this is an integer network; the float ONNX target exports float graphs")
    try:
        table = check_lowerable(graph, "onnx")
    except LoweringError as exc:
        raise ExportError(str(exc)) from None
    b = Builder()
    steps = graph.steps
    vals: dict[str, list[str]] = {}
    for node in graph.topo():
        vals[node.name] = table[node.kind](b, node, [vals[i] for i in node.inputs], steps)
    shape = list(graph.input.input_shape)
    x_dims = [steps, "N", *shape] if graph.input.encoding == "sequence" else ["N", *shape]
    classes = list(graph.readout.shape)      # (classes,), or a feature map read out whole (NIR graphs)
    return finish_model(b, graph, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims)],
                        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", *classes]),
                         helper.make_tensor_value_info("outputs", TensorProto.FLOAT, [steps, "N", *classes])],
                        metadata or {})


def _per(fn, ins) -> list[str]:
    return [fn(v) for v in ins[0]]


def _conv(b: Builder, node: Conv2d, ins, steps) -> list[str]:
    w = b.const(f"{node.name}.weight", node.weight)
    args = [w] + ([b.const(f"{node.name}.bias", node.bias)] if node.bias is not None else [])
    ph, pw = node.padding
    return _per(lambda v: b.op("Conv", [v] + args, node.name, strides=list(node.stride), pads=[ph, pw, ph, pw],
                               dilations=list(node.dilation), group=node.groups), ins)


def _linear(b: Builder, node: Linear, ins, steps) -> list[str]:
    w = b.const(f"{node.name}.weight", node.weight)
    bias = b.const(f"{node.name}.bias", node.bias if node.bias is not None
                   else np.zeros(node.weight.shape[0], np.float32))
    return _per(lambda v: b.op("Gemm", [v, w, bias], node.name, transB=1), ins)


def _batchnorm(b: Builder, node: BatchNorm, ins, steps) -> list[str]:
    args = [b.const(f"{node.name}.{k}", getattr(node, k)) for k in ("weight", "bias", "running_mean", "running_var")]
    return _per(lambda v: b.op("BatchNormalization", [v] + args, node.name, epsilon=node.eps), ins)


def _pool(op: str, **extra):
    def lower(b: Builder, node, ins, steps) -> list[str]:
        ph, pw = node.padding
        return _per(lambda v: b.op(op, [v], node.name, kernel_shape=list(node.kernel), strides=list(node.stride),
                                   pads=[ph, pw, ph, pw], **extra), ins)
    return lower


def _readout(b: Builder, node: Readout, ins, steps) -> list[str]:
    seq = ins[0] * steps if len(ins[0]) == 1 else ins[0]
    axes = b.name("axes0")
    b.inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), axes))
    stacked = [b.op("Unsqueeze", [v, axes], "step") for v in seq]
    b.nodes.append(helper.make_node("Concat", stacked, ["outputs"], name="outputs", axis=0))
    b.nodes.append(helper.make_node("ReduceMean", ["outputs"], ["logits"], name="logits", axes=[0], keepdims=0))
    return ["outputs"]


def _mix(b: Builder, node: TemporalMix, xs: list[str], steps: int) -> list[str]:
    omega = np.asarray(node.omega, dtype=np.float64)
    if len(xs) == 1:   # static input: step t receives (Σ_j Ω[t, j])·x
        return [b.op("Mul", [xs[0], b.const(f"{node.name}.w", omega[t].sum())], node.name) for t in range(steps)]
    out = []
    for t in range(steps):
        terms = [b.op("Mul", [xs[j], b.const(f"{node.name}.w", omega[t, j])], node.name)
                 for j in range(steps) if omega[t, j] != 0]
        if not terms:
            terms = [b.op("Mul", [xs[0], b.const(f"{node.name}.zero", 0.0)], node.name)]
        out.append(terms[0] if len(terms) == 1 else b.op("Sum", terms, node.name))
    return out


def _neuron(b: Builder, node: Neuron, currents: list[str]) -> list[str]:
    """Soft reset, per-step leak, levels by comparisons ``v ≥ iθ``; emits θ·k per step."""
    steps = len(node.leak)
    cur = currents * steps if len(currents) == 1 else currents
    theta = b.const(f"{node.name}.theta", node.threshold)
    levels = [b.const(f"{node.name}.level{i}", i * node.threshold) for i in range(1, node.levels + 1)]
    scale = b.const(f"{node.name}.scale", node.input_scale)
    v = b.op("Add", [b.op("Mul", [cur[0], b.const(f"{node.name}.zero", 0.0)], node.name),
                     b.const(f"{node.name}.v0", node.v_init * node.threshold)], node.name)
    out = []
    for t in range(steps):
        v = b.op("Add", [b.op("Mul", [v, b.const(f"{node.name}.leak", node.leak[t])], node.name),
                         b.op("Mul", [cur[t], scale], node.name)], node.name)
        fired = [b.op("Cast", [b.op("GreaterOrEqual", [v, lv], node.name)], node.name, to=TensorProto.FLOAT)
                 for lv in levels]
        k = fired[0] if len(fired) == 1 else b.op("Sum", fired, node.name)
        spike = b.op("Mul", [k, theta], node.name)
        v = b.op("Sub", [v, spike], node.name)
        out.append(spike)
    return out


def _input(b: Builder, node, ins, steps) -> list[str]:
    """The static input (one tensor for every step), or step t of a per-step sequence x [steps, N, ...]."""
    if node.encoding != "sequence":
        return ["x"]
    return [b.op("Gather", ["x", b.const(f"{node.name}.t", t, np.int64)], node.name, axis=0) for t in range(steps)]


def _lif(b: Builder, node, currents: list[str], steps: int) -> list[str]:
    """The ``lif`` kind step by step, in the order of ``lif_dynamics`` (compiler/lif_node.py) so float32
    rounding matches the float executor's: drive, u = β·v + scale·drive + bias, spike, reset, floor."""
    n = node.name
    p = {k: (None if getattr(node, k) is None else b.const(f"{n}.{k}", getattr(node, k))) for k in
         ("beta", "scale", "bias", "threshold", "v_reset", "v_min", "alpha", "w_in", "v_init")}
    cur = currents * steps if len(currents) == 1 else currents
    mul, add, sub = (lambda a, c: b.op("Mul", [a, c], n)), (lambda a, c: b.op("Add", [a, c], n)), \
        (lambda a, c: b.op("Sub", [a, c], n))

    def spike(u, compare):
        return b.op("Cast", [b.op("Greater" if compare == ">" else "GreaterOrEqual", [u, p["threshold"]], n)], n,
                    to=TensorProto.FLOAT)

    zeros = mul(cur[0], b.const(f"{n}.zero", 0.0))
    v = zeros if p["v_init"] is None else add(zeros, p["v_init"])
    i = zeros
    snn_torch = node.reset_timing == "snntorch"
    out = []
    for t in range(steps):
        drive = cur[t]
        if p["alpha"] is not None:
            i = add(mul(p["alpha"], i), mul(p["w_in"], drive))
            drive = i
        r = spike(v, ">") if snn_torch else None
        if snn_torch and node.reset == "zero":
            v = mul(sub(b.const(f"{n}.one", 1.0), r), v)
        u = add(add(mul(p["beta"], v), mul(p["scale"], drive)), p["bias"])
        if snn_torch and node.reset == "subtract":
            u = sub(u, mul(r, p["threshold"]))
        if not node.spiking:
            v = u
            out.append(u)
        else:
            if node.multi_spike:     # trunc(u/θ) for u > 0, else 0: floor of a non-negative quotient
                s = b.op("Floor", [b.op("Div", [b.op("Relu", [u], n), p["threshold"]], n)], n)
            else:
                s = spike(u, node.compare)
            out.append(s)
            if snn_torch:
                v = sub(u, mul(sub(s, r), p["threshold"] if node.reset == "subtract" else u))
            elif node.reset == "subtract":
                v = sub(u, mul(s, p["threshold"]))
            elif node.reset == "zero":
                v = b.op("Where", [b.op("Greater", [s, b.const(f"{n}.zero", 0.0)], n), p["v_reset"], u], n)
            else:
                v = u
        if p["v_min"] is not None:
            v = b.op("Max", [v, p["v_min"]], n)
    return out


def _sum_pool(b: Builder, node, ins, steps) -> list[str]:
    """The window sums as a depthwise convolution with an all-ones kernel (exact, like avg_pool2d / 1)."""
    channels = node.shape[0]
    ones = b.const(f"{node.name}.ones", np.ones((channels, 1, *node.kernel)))
    ph, pw = node.padding
    return _per(lambda v: b.op("Conv", [v, ones], node.name, strides=list(node.stride), pads=[ph, pw, ph, pw],
                               group=channels), ins)


def _conv1d(b: Builder, node, ins, steps) -> list[str]:
    w = b.const(f"{node.name}.weight", node.weight)
    args = [w] + ([b.const(f"{node.name}.bias", node.bias)] if node.bias is not None else [])
    return _per(lambda v: b.op("Conv", [v] + args, node.name, strides=[node.stride], pads=[node.padding] * 2,
                               dilations=[node.dilation], group=node.groups), ins)


# The float ONNX target's lowering table: node kind → (builder, node, input step tensors, steps) → step tensors.
LOWERING = {
    "input": _input,
    "conv2d": _conv,
    "linear": _linear,
    "batchnorm": _batchnorm,
    "avgpool2d": _pool("AveragePool", count_include_pad=1),
    "globalavgpool": lambda b, node, ins, steps: _per(lambda v: b.op("GlobalAveragePool", [v], node.name), ins),
    "maxpool2d": _pool("MaxPool"),
    "add": lambda b, node, ins, steps: b.add_steps(ins[0], ins[1], steps, node.name),
    "flatten": lambda b, node, ins, steps: _per(lambda v: b.op("Flatten", [v], node.name, axis=1), ins),
    "temporal_mix": lambda b, node, ins, steps: _mix(b, node, ins[0], steps),
    "neuron": lambda b, node, ins, steps: _neuron(b, node, ins[0]),
    "readout": _readout,
    "msat_neuron": refuse("the MSAT neuron's adaptive threshold has no float ONNX lowering; "
                          "run it with the float executor (simulate --mode float)"),
    "lif": lambda b, node, ins, steps: _lif(b, node, ins[0], steps),
    "scale": lambda b, node, ins, steps: _per(lambda v: b.op("Mul", [v, b.const(f"{node.name}.scale", node.scale)],
                                                             node.name), ins),
    "sum_pool2d": _sum_pool,
    "conv1d": _conv1d,
}
