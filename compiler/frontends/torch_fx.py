"""torch.fx frontend: any ``nn.Module`` built from lmhtc's LM-HT modules → IR graph.

The module is traced with ``TimeDistributed``, ``LMHTNeuron``, ``IFNeuron`` and
``QCFS`` as leaves. Supported: Conv2d, Linear, BatchNorm2d/1d, AvgPool2d,
AdaptiveAvgPool2d(1), MaxPool2d, Dropout and Identity (removed), Flatten,
``+`` (residual add), ``torch.flatten``, and ``repeat_steps`` (direct
encoding; where the time dimension begins). Anything else is reported by its
module name. The model's output ``[T, B, classes]`` becomes the Readout.

Each LM-HT neuron becomes a ``TemporalMix`` (its T-GIM Ω = 2·sigmoid(M)/T,
from ``mask`` for feature-map inputs and ``mask_linear`` for vector inputs,
whichever layout) followed by a ``Neuron`` (θ, L, λ at every step, v_init,
input scale). An IF neuron gets Ω = identity and λ = 1.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from ..errors import LmhtcError
from ..ir import (Add, AvgPool2d, BatchNorm, Conv2d, Flatten, GlobalAvgPool, Graph, Input, IRError, Linear,
                  MaxPool2d, Neuron, Readout, TemporalMix, _node_shape, _pair)
from ..neurons import QCFS, IFNeuron, LMHTNeuron, TimeDistributed, repeat_steps
from ..type_rules import rule_for


class FrontendError(LmhtcError):
    """The module cannot be lowered to the IR; the message names the module or operation."""


class _Tracer(fx.Tracer):
    def __init__(self):
        super().__init__(autowrap_functions=(repeat_steps,))

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (TimeDistributed, LMHTNeuron, IFNeuron, QCFS)):
            return True
        return super().is_leaf_module(m, qualname)


@dataclass
class _Value:
    name: str        # IR node producing it
    timed: bool      # True once the value is a [T, B, ...] sequence


def _f32(t: torch.Tensor | None) -> np.ndarray | None:
    """A float32 copy of ``t`` (one copy: the IR never shares memory with the module's tensors)."""
    return None if t is None else np.array(t.detach().cpu().numpy(), dtype=np.float32)


class _Builder:
    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int], steps: int):
        self.model = model
        self.graph = Graph(steps=steps)
        self.steps = steps
        self.input_shape = tuple(input_shape)

    def add(self, node) -> str:
        node.name = self.graph.unique_name(node.name)
        try:
            node.shape = _node_shape(node, [self.graph.node(i).shape for i in node.inputs])
        except ValueError as exc:
            raise FrontendError(f"{node.name} ({node.kind}): {exc}") from None
        self.graph.add(node)
        return node.name

    # -- layers --------------------------------------------------------------
    def layer(self, m: nn.Module, name: str, src: str) -> str:
        """The IR node of module ``m`` applied to ``src`` (one rule per module type in ``LAYERS``, looked up
        through ``m``'s type and bases); dropout and identity pass ``src`` through."""
        rule = rule_for(LAYERS, m)
        if rule is None:
            raise FrontendError(f"{name}: unsupported module {type(m).__name__}")
        node = rule(m, name, src)
        return src if node is None else self.add(node)

    def neuron(self, m: nn.Module, name: str, src: str) -> str:
        if m.T != self.steps:
            raise FrontendError(f"{name}: neuron runs {m.T} time-steps, the model runs {self.steps}")
        feature_map = len(self.graph.node(src).shape) == 3
        if isinstance(m, LMHTNeuron):
            omega = m.omega(feature_map).detach().double().numpy()
            leak = np.full(self.steps, float(m.leak().item()))
            levels = m.levels
        else:
            omega = np.eye(self.steps)
            leak = np.ones(self.steps)
            levels = 1
        mix = self.add(TemporalMix(f"{name}.tgim", [src], omega=omega))
        return self.add(Neuron(name, [mix], threshold=float(m.v_threshold.item()), levels=int(levels), leak=leak,
                               v_init=float(m.v_init), input_scale=float(m.scale)))

    def module(self, m: nn.Module, name: str, src: _Value) -> _Value:
        if isinstance(m, TimeDistributed):
            if not src.timed:
                raise FrontendError(f"{name}: TimeDistributed applied before the time dimension exists "
                                    f"(call repeat_steps first)")
            out = src.name
            for i, inner in enumerate(m):
                out = self.layer(inner, f"{name}.{i}", out)
            return _Value(out, True)
        if isinstance(m, (LMHTNeuron, IFNeuron)):
            if not src.timed:
                raise FrontendError(f"{name}: spiking neuron applied before the time dimension exists")
            return _Value(self.neuron(m, name, src.name), True)
        return _Value(self.layer(m, name, src.name), src.timed)


def _conv2d(m: nn.Conv2d, name: str, src: str) -> Conv2d:
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise FrontendError(f"{name}: Conv2d with padding {m.padding!r}/{m.padding_mode!r} is not supported")
    return Conv2d(name, [src], weight=_f32(m.weight), bias=_f32(m.bias), stride=_pair(m.stride),
                  padding=_pair(m.padding), dilation=_pair(m.dilation), groups=int(m.groups))


def _batchnorm(m, name: str, src: str) -> BatchNorm:
    if m.running_mean is None or not m.affine:
        raise FrontendError(f"{name}: BatchNorm without running statistics or affine parameters")
    return BatchNorm(name, [src], weight=_f32(m.weight), bias=_f32(m.bias), running_mean=_f32(m.running_mean),
                     running_var=_f32(m.running_var), eps=float(m.eps))


def _avgpool(m: nn.AvgPool2d, name: str, src: str) -> AvgPool2d:
    if m.ceil_mode or (not m.count_include_pad and _pair(m.padding) != (0, 0)) or m.divisor_override:
        raise FrontendError(f"{name}: AvgPool2d with ceil_mode/count_include_pad=False/divisor_override "
                            f"is not supported")
    stride = m.stride if m.stride is not None else m.kernel_size
    return AvgPool2d(name, [src], kernel=_pair(m.kernel_size), stride=_pair(stride), padding=_pair(m.padding))


def _global_pool(m: nn.AdaptiveAvgPool2d, name: str, src: str) -> GlobalAvgPool:
    if _pair(m.output_size) != (1, 1):
        raise FrontendError(f"{name}: AdaptiveAvgPool2d to {m.output_size} (only 1x1 is supported)")
    return GlobalAvgPool(name, [src])


def _maxpool(m: nn.MaxPool2d, name: str, src: str) -> MaxPool2d:
    if m.ceil_mode or _pair(m.dilation) != (1, 1) or m.return_indices:
        raise FrontendError(f"{name}: MaxPool2d with ceil_mode/dilation/indices is not supported")
    stride = m.stride if m.stride is not None else m.kernel_size
    return MaxPool2d(name, [src], kernel=_pair(m.kernel_size), stride=_pair(stride), padding=_pair(m.padding))


def _flatten(m: nn.Flatten, name: str, src: str) -> Flatten:
    if m.start_dim != 1 or m.end_dim != -1:
        raise FrontendError(f"{name}: Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) is not supported")
    return Flatten(name, [src])


def _qcfs(m, name: str, src: str):
    raise FrontendError(f"{name}: QCFS activation in an SNN; convert the QCFS ANN to LM-HT first "
                        f"(`lmhtc convert --from qcfs`, hybrid recipe)")


# module type → (module, name, input) → its IR node (None: the module passes its input through)
LAYERS = {
    nn.Dropout: lambda m, name, src: None, nn.Identity: lambda m, name, src: None,
    nn.Conv2d: _conv2d,
    nn.Linear: lambda m, name, src: Linear(name, [src], weight=_f32(m.weight), bias=_f32(m.bias)),
    nn.BatchNorm2d: _batchnorm, nn.BatchNorm1d: _batchnorm,
    nn.AvgPool2d: _avgpool, nn.AdaptiveAvgPool2d: _global_pool, nn.MaxPool2d: _maxpool,
    nn.Flatten: _flatten,
    QCFS: _qcfs,
}


def trace_to_ir(model: nn.Module, input_shape: tuple[int, int, int], steps: int | None = None,
                meta: dict | None = None) -> Graph:
    """Lower ``model`` (eval mode; input ``[B, *input_shape]``, output ``[T, B, classes]``) to an IR graph."""
    model = model.eval()
    if steps is None:
        steps = getattr(model, "T", None)
        if steps is None:
            raise FrontendError(f"{type(model).__name__}: no time-step count (set model.T or pass steps)")
    try:
        fx_graph = _Tracer().trace(model)
    except Exception as exc:   # tracing failures come in many types
        raise FrontendError(f"{type(model).__name__}: torch.fx cannot trace the model "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    b = _Builder(model, input_shape, int(steps))
    values: dict[str, _Value] = {}
    modules = dict(model.named_modules())
    with torch.no_grad():
        for n in fx_graph.nodes:
            if n.op == "placeholder":
                if values:
                    raise FrontendError(f"{type(model).__name__}: forward takes more than one input ({n.name})")
                values[n.name] = _Value(b.add(Input("input", [], input_shape=b.input_shape)), False)
            elif n.op == "call_module":
                src = _single_input(n, values)
                values[n.name] = b.module(modules[n.target], n.target, src)
            elif n.op == "call_function" and n.target is repeat_steps:
                src = _single_input(n, values)
                count = n.args[1] if len(n.args) > 1 else n.kwargs.get("steps")
                if count != b.steps:
                    raise FrontendError(f"{n.name}: repeat_steps({count}) but the model runs {b.steps} steps")
                if src.timed:
                    raise FrontendError(f"{n.name}: repeat_steps applied to a sequence that is already timed")
                values[n.name] = _Value(src.name, True)
            elif n.op == "call_function" and n.target in (operator.add, torch.add):
                a, c = (values.get(getattr(arg, "name", None)) for arg in n.args[:2])
                if a is None or c is None or n.kwargs:
                    raise FrontendError(f"{n.name}: only the sum of two tensors is supported")
                if a.timed != c.timed:
                    raise FrontendError(f"{n.name}: adds a static tensor to a time sequence")
                values[n.name] = _Value(b.add(Add("add", [a.name, c.name])), a.timed)
            elif (n.op == "call_function" and n.target is torch.flatten) or \
                    (n.op == "call_method" and n.target == "flatten"):
                src = _single_input(n, values)
                start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
                end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
                if start != (2 if src.timed else 1) or end != -1:
                    raise FrontendError(f"{n.name}: flatten(start_dim={start}) would merge batch or time "
                                        f"dimensions; only per-sample flattening is supported")
                values[n.name] = _Value(b.add(Flatten("flatten", [src.name])), src.timed)
            elif n.op == "output":
                src = values.get(getattr(n.args[0], "name", None))
                if src is None:
                    raise FrontendError("the model must return a single tensor")
                if not src.timed:
                    raise FrontendError("the model's output has no time dimension (an ANN?); "
                                        "an SNN returns [T, B, classes]")
                b.add(Readout("readout", [src.name]))
            elif n.op == "get_attr":
                raise FrontendError(f"{n.target}: direct use of a parameter/buffer in forward is not supported")
            else:
                what = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
                raise FrontendError(f"{n.name}: unsupported operation {n.op} {what}")
    graph = b.graph
    graph.meta.update(meta or {})
    graph.meta.setdefault("steps_original", graph.steps)
    try:
        from ..ir import finalize

        finalize(graph)
    except IRError as exc:
        raise FrontendError(str(exc)) from None
    return graph


def _single_input(n: fx.Node, values: dict[str, _Value]) -> _Value:
    args = [a for a in n.args if isinstance(a, fx.Node)]
    if len(args) != 1 or args[0].name not in values:
        raise FrontendError(f"{n.name}: expected exactly one tensor input")
    return values[args[0].name]
