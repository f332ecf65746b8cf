"""The integer ``qconv1d`` kind (NIR's Conv1d) and the 2-D view every integer target computes it through.

``y = e(Σ w·x, E) + bias`` per step over a (C, L) input, exactly as ``qconv2d`` (docs/integer-semantics.md);
``conv2d_view`` is the same convolution on the input seen as (C, 1, L) with a 1 × k kernel, so the
runtime, integer ONNX and the cost passes reuse their 2-D convolution (and its fan-out maps) unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

from .intir import QConv2d
from .ir import Conv2d, register_node_type
from .nir_ops import Conv1dBase

INTEGER = frozenset({"integer"})


@register_node_type
@dataclass
class QConv1d(Conv1dBase):
    """``y = (Σ w·x) << shift + bias``; weight int32 mantissas [Cout, Cin/groups, k], bias int64."""
    shift: int = 0
    weight_bits: int = 8
    acc_bound: int = 0
    kind = "qconv1d"
    phases = INTEGER


def conv2d_view(node: Conv1dBase) -> Conv2d | QConv2d:
    """``node`` as the 2-D convolution of a (C, 1, L) input with a 1 × k kernel (a QConv2d for a qconv1d)."""
    geo = dict(weight=node.weight[:, :, None, :], bias=node.bias, stride=(1, node.stride), padding=(0, node.padding),
               dilation=(1, node.dilation), groups=node.groups,
               shape=None if node.shape is None else (node.shape[0], 1, node.shape[1]))
    if isinstance(node, QConv1d):
        return QConv2d(node.name, list(node.inputs), shift=node.shift, weight_bits=node.weight_bits,
                       acc_bound=node.acc_bound, **geo)
    return Conv2d(node.name, list(node.inputs), **geo)
