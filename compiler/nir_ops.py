"""Stateless per-step operations that NIR has and the core IR lacks: ``scale``, ``sum_pool2d``, ``conv1d``.

Both act on every step independently and carry their float semantics for the
executor (``run_float``) and their shape rule (``out_shape``).
``scale``: ``y = scale ⊙ x`` (NIR ``Scale``, ``scale`` broadcasts to the shape).
``sum_pool2d``: the sum over each window, zero padding (NIR ``SumPool2d``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .executor import _per_step
from .ir import AvgPool2d, IRError, Node, _conv_out, _node_shape, register_node_type


@register_node_type
@dataclass
class Scale(Node):
    scale: np.ndarray = None
    kind = "scale"
    elementwise = True

    def check(self) -> None:
        """Raise IRError naming the node when ``scale`` does not broadcast to the layer shape."""
        if self.shape is not None and np.broadcast_shapes(self.scale.shape, self.shape) != tuple(self.shape):
            raise IRError(f"node {self.name!r} (scale): scale of shape {self.scale.shape} does not fit the "
                          f"layer shape {tuple(self.shape)}")

    def run_float(self, v: torch.Tensor, steps: int, params):
        return v * params(self, "scale"), None


@register_node_type
@dataclass
class SumPool2d(Node):
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    kind = "sum_pool2d"

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        """The shape rule of average pooling (same windows)."""
        return _node_shape(AvgPool2d(self.name, kernel=self.kernel, stride=self.stride, padding=self.padding), ins)

    def run_float(self, v: torch.Tensor, steps: int, params):
        return _per_step(v, lambda t: F.avg_pool2d(t, self.kernel, self.stride, self.padding,
                                                   divisor_override=1)), None


@dataclass
class Conv1dBase(Node):
    """1-D convolution geometry, semantics-free: the float ``conv1d`` and the integer ``qconv1d``
    (compiler/intir_conv1d.py) derive from it side by side."""
    weight: np.ndarray = None           # [Cout, Cin/groups, k]
    bias: np.ndarray | None = None      # [Cout]
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    synaptic = True

    def out_shape(self, ins: list[tuple[int, ...]]) -> tuple[int, ...]:
        x = ins[0]
        cout, cin_g, k = self.weight.shape
        if len(x) != 2 or x[0] != cin_g * self.groups:
            raise ValueError(f"expects a ({cin_g * self.groups}, L) input, got {x}")
        length = _conv_out(x[1], k, self.stride, self.padding, self.dilation)
        if length < 1:
            raise ValueError(f"input {x} is too short for kernel {k}")
        return (cout, length)


@register_node_type
@dataclass
class Conv1d(Conv1dBase):
    kind = "conv1d"

    def run_float(self, v: torch.Tensor, steps: int, params):
        w, b = params(self, "weight"), params(self, "bias")
        return _per_step(v, lambda t: F.conv1d(t, w, b, self.stride, self.padding, self.dilation, self.groups)), None
