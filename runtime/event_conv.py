"""A ``qconv2d`` as an event-driven convolution on the CPU: work ∝ the input's spike events, not its size.

``csrc/event_conv.cpp`` (built with the fused kernels, ``runtime/fused.py``) lists each input position's events
per bit plane of the counts and adds, for every output position and block of 64 output channels, the int8 weight
row of each event it reaches into int16 registers, widened into int32 before they could wrap.

Invariant: ``EventConv.__call__`` returns the exact ``Σ w·x`` of the node as int32 (the integer semantics'
synaptic sums), or None — more events than the caller's limit, or no extension. ``exact(in_bound)`` is the
proof it needs: inputs in [0, in_bound] with in_bound ≤ 127 (int8, at most 7 bit planes), every int32 partial
sum below 2^31 (max over outputs of Σ|w|, times in_bound), and weights that fit int8 (``eligible``); the int16
partial sums are widened after at most ``nmax = 32767 // max|w|`` (≥ 258) rows, so they never wrap either.
"""
from __future__ import annotations

import numpy as np
import torch

from lmhtc.compiler.intir import QConv2d
from lmhtc.runtime import fused
from lmhtc.runtime.neuron import INT32_MAX

BLOCK = 64             # kCh of the C++ source: output channels per register block
INT16_MAX = 2 ** 15 - 1
INT8_MAX = 127


class EventConv:
    """One qconv2d's packed weights ``[⌈Cout/64⌉, kh·kw, Cin, 64]`` int8 and its geometry, prepared once."""

    def __init__(self, node: QConv2d):
        w = np.asarray(node.weight).astype(np.int64)
        cout, cin, kh, kw = w.shape
        self.node, self.cout, self.taps = node, cout, kh * kw
        max_w = int(np.abs(w).max(initial=0))
        self.nmax = INT16_MAX // max(max_w, 1)
        self.wsum = int(np.abs(w).reshape(cout, -1).sum(1).max(initial=0))
        blocks = -(-cout // BLOCK)
        padded = np.zeros((blocks * BLOCK, cin, kh, kw), dtype=np.int8)
        padded[:cout] = w
        packed = padded.transpose(2, 3, 1, 0).reshape(kh * kw, cin, blocks, BLOCK).transpose(2, 0, 1, 3)
        self.packed = torch.from_numpy(np.ascontiguousarray(packed))
        (sh, sw), (ph, pw), (dh, dw) = node.stride, node.padding, node.dilation
        self.geometry = (kh, kw, sh, sw, ph, pw, dh, dw)

    @staticmethod
    def eligible(node) -> bool:
        """A 2-D convolution without groups whose weight mantissas fit int8 (up to 8-bit weights)."""
        return isinstance(node, QConv2d) and node.groups == 1 and node.weight.size > 0 and \
            int(np.abs(node.weight).max()) <= INT8_MAX

    def exact(self, in_bound: int) -> bool:
        """Inputs in [0, in_bound] give exact sums: int8 counts and int32 partial sums."""
        return 0 < in_bound <= INT8_MAX and self.wsum * in_bound <= INT32_MAX

    def __call__(self, v: torch.Tensor, in_bound: int, max_events: int | None = None,
                 epilogue: tuple[int, torch.Tensor | None, int] | None = None) -> torch.Tensor | None:
        """v [S, B, C, H, W] (integers in [0, in_bound], ``exact(in_bound)`` holds) → int32 [S, B, Cout, Ho, Wo]
        (channels-last strides) of ``Σ w·x`` — with ``epilogue = (E, bias, lw)``, of ``e(Σ w·x, E) + bias·lw``,
        which the caller has proven to fit int32 —, or None when v holds more than ``max_events`` bit-plane
        events (a count with k bits set is k events) or the extension is unavailable."""
        ext = fused._built()
        if ext is None or v.device.type != "cpu":
            return None
        s, b, c, h, w = v.shape
        x = v.reshape(s * b, c, h, w).permute(0, 2, 3, 1)
        x = x.contiguous() if x.dtype == torch.int8 else x.to(torch.int8).contiguous()
        ho, wo = self.node.shape[1:]
        out = torch.empty((s * b, ho, wo, self.cout), dtype=torch.int32)
        limit = int(max_events) if max_events is not None else x.numel() * 7
        e, bias, lw = epilogue if epilogue is not None else (0, None, 1)
        bias = _NONE if bias is None else bias.reshape(-1)
        if not ext.event_conv(x, self.packed, out, *self.geometry, int(in_bound).bit_length(), self.nmax, limit,
                              epilogue is not None, int(e), bias, int(lw)):
            return None
        return out.reshape(s, b, ho, wo, self.cout).permute(0, 1, 4, 2, 3)


_NONE = torch.empty(0, dtype=torch.int64)       # "no bias" for the kernel (read only)
