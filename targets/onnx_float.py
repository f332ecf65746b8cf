"""ONNX target, float: the IR's float graph as a standard ONNX model (onnx.helper; run by onnxruntime).

Time is unrolled: every node becomes one ONNX node per step (a value that is
the same at every step — the analog input and what is computed from it before
the first neuron — is computed once). Unrolling lets onnxruntime see a plain
feed-forward graph it can optimise as a whole (fusions, memory planning),
which a Loop/Scan body would hide; the T-GIM mixing is then just weighted
sums of step tensors. Soft reset, per-step leak and multi-level spikes (found
by comparisons, ``v ≥ iθ``) are elementwise ops.

Inputs ``x`` [N, C, H, W] float32 with a dynamic batch dimension; outputs
``logits`` [N, classes] (mean over steps) and ``outputs`` [steps, N, classes].
This module reads the IR only; it knows nothing of checkpoints.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lmhtc.compiler.ir import (Add, AvgPool2d, BatchNorm, Conv2d, Flatten, GlobalAvgPool, Graph, Linear, MaxPool2d,
                         Neuron, Readout, TemporalMix)

from .onnx_common import Builder, ExportError, finish_model

__all__ = ["ExportError", "export_float_onnx"]

def export_float_onnx(graph: Graph, metadata: dict | None = None) -> onnx.ModelProto:
    """The float graph as an ONNX model (opset 17, IR version 10); raises ExportError naming a node it cannot express."""
    if graph.meta.get("integer"):
        raise ExportError("this is an integer network; the float ONNX target exports float graphs")
    b = Builder()
    steps = graph.steps
    vals: dict[str, list[str]] = {}
    for node in graph.topo():
        ins = [vals[i] for i in node.inputs]
        per = (lambda fn: [fn(v) for v in ins[0]])
        if node.kind == "input":
            vals[node.name] = ["x"]
        elif isinstance(node, Conv2d):
            w = b.const(f"{node.name}.weight", node.weight)
            args = [w] + ([b.const(f"{node.name}.bias", node.bias)] if node.bias is not None else [])
            ph, pw = node.padding
            vals[node.name] = per(lambda v: b.op("Conv", [v] + args, node.name, strides=list(node.stride),
                                                 pads=[ph, pw, ph, pw], dilations=list(node.dilation),
                                                 group=node.groups))
        elif isinstance(node, Linear):
            w = b.const(f"{node.name}.weight", node.weight)
            bias = b.const(f"{node.name}.bias", node.bias if node.bias is not None
                           else np.zeros(node.weight.shape[0], np.float32))
            vals[node.name] = per(lambda v: b.op("Gemm", [v, w, bias], node.name, transB=1))
        elif isinstance(node, BatchNorm):
            args = [b.const(f"{node.name}.{k}", getattr(node, k)) for k in ("weight", "bias", "running_mean",
                                                                            "running_var")]
            vals[node.name] = per(lambda v: b.op("BatchNormalization", [v] + args, node.name, epsilon=node.eps))
        elif isinstance(node, AvgPool2d):
            ph, pw = node.padding
            vals[node.name] = per(lambda v: b.op("AveragePool", [v], node.name, kernel_shape=list(node.kernel),
                                                 strides=list(node.stride), pads=[ph, pw, ph, pw],
                                                 count_include_pad=1))
        elif isinstance(node, GlobalAvgPool):
            vals[node.name] = per(lambda v: b.op("GlobalAveragePool", [v], node.name))
        elif isinstance(node, MaxPool2d):
            ph, pw = node.padding
            vals[node.name] = per(lambda v: b.op("MaxPool", [v], node.name, kernel_shape=list(node.kernel),
                                                 strides=list(node.stride), pads=[ph, pw, ph, pw]))
        elif isinstance(node, Add):
            vals[node.name] = b.add_steps(ins[0], ins[1], steps, node.name)
        elif isinstance(node, Flatten):
            vals[node.name] = per(lambda v: b.op("Flatten", [v], node.name, axis=1))
        elif isinstance(node, TemporalMix):
            vals[node.name] = _mix(b, node, ins[0], steps)
        elif isinstance(node, Neuron):
            vals[node.name] = _neuron(b, node, ins[0])
        elif isinstance(node, Readout):
            seq = ins[0] * steps if len(ins[0]) == 1 else ins[0]
            axes = b.name("axes0")
            b.inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), axes))
            stacked = [b.op("Unsqueeze", [v, axes], "step") for v in seq]
            b.nodes.append(helper.make_node("Concat", stacked, ["outputs"], name="outputs", axis=0))
            b.nodes.append(helper.make_node("ReduceMean", ["outputs"], ["logits"], name="logits", axes=[0],
                                            keepdims=0))
        else:
            raise ExportError(f"node {node.name!r} ({node.kind}) has no float ONNX lowering")
    shape = list(graph.input.input_shape)
    classes = graph.readout.shape[0]
    return finish_model(b, graph, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
                         helper.make_tensor_value_info("outputs", TensorProto.FLOAT, [steps, "N", classes])],
                        metadata or {})


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
