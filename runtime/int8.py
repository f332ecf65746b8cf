"""Exact int8 synaptic products: NHWC im2col + ``torch._int_mm`` (int8 × int8 → int32).

Invariant: used only where it is exact by construction — every weight mantissa
and every input value fits int8 (|·| ≤ 127), and a bound on every partial sum
(max over outputs of Σ|w| × max |x|, from the weights themselves) stays below
2^31, so no int32 partial sum can wrap. The integers are then those of the
int64 sum.

Layout: a conv's int32 output is returned as a ``[S, B, C, H, W]`` view of an
``[S, B, H, W, C]`` (channels-last) buffer; elementwise ops keep that layout,
so the next conv reads its input as contiguous NHWC without a transpose.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

INT32_MAX = 2 ** 31 - 1
INT8_MAX = 127


def _round8(n: int) -> int:
    return -(-n // 8) * 8


class Int8Product:
    """The int8 weight matrix of one ``qconv2d``/``qlinear`` node, K ordered (kh, kw, cin) for NHWC im2col."""

    def __init__(self, node, device: str):
        self.node = node
        w = torch.as_tensor(node.weight)
        self.conv = w.dim() == 4
        # CUDA's int8 GEMM wants K and N multiples of 8 (zero padding: adds exact zeros)
        self.pad = torch.device(device).type == "cuda"
        mat = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1) if self.conv else w
        self.k, self.n = mat.shape[1], mat.shape[0]
        kp, np_ = (_round8(self.k), _round8(self.n)) if self.pad else (self.k, self.n)
        full = torch.zeros(kp, np_, dtype=torch.int8)
        full[:self.k, :self.n] = mat.T.to(torch.int8)
        self.wt = full.to(device)

    @staticmethod
    def eligible(node) -> bool:
        """Weights fit int8 and the geometry is one this kernel covers (groups = 1)."""
        w = node.weight
        return (int(abs(w).max()) <= INT8_MAX if w.size else True) and getattr(node, "groups", 1) == 1

    @staticmethod
    def exact(in_bound: int, acc_bound: int) -> bool:
        """Inputs bounded by ``in_bound`` fit int8 and ``acc_bound`` (≥ every |partial sum|) is below 2^31."""
        return in_bound <= INT8_MAX and acc_bound <= INT32_MAX

    def _mm(self, a: torch.Tensor) -> torch.Tensor:
        if a.stride() != (a.shape[1], 1):     # oneDNN misreads odd strides of size-1 dims: plain row-major only
            a = a.clone(memory_format=torch.contiguous_format)
        if self.pad:
            m = a.shape[0]
            a = F.pad(a, (0, self.wt.shape[0] - a.shape[1], 0, max(0, 17 - m)))
            return torch._int_mm(a, self.wt)[:m, :self.n]
        return torch._int_mm(a, self.wt)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``Σ w·x`` as int32: v [S, B, C, H, W] (any strides) → [S, B, Cout, Ho, Wo]; v [S, B, F] → [S, B, out]."""
        s, b = v.shape[:2]
        if not self.conv:
            return self._mm(v.reshape(s * b, self.k).to(torch.int8)).reshape(s, b, self.n)
        node = self.node
        ho, wo = node.shape[1:]
        cols = im2col_nhwc(v.reshape(s * b, *v.shape[2:]).to(torch.int8), node.weight.shape[2:], node.stride,
                           node.padding, node.dilation, (ho, wo))
        y = self._mm(cols)
        return y.reshape(s, b, ho, wo, self.n).permute(0, 1, 4, 2, 3)


def im2col_nhwc(x: torch.Tensor, kernel, stride, padding, dilation, out_hw) -> torch.Tensor:
    """[N, C, H, W] int8 → [N·Ho·Wo, kh·kw·C] int8, columns ordered (kh, kw, c): one strided copy."""
    n, c = x.shape[:2]
    kh, kw = (int(k) for k in kernel)
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho, wo = out_hw
    x = x.permute(0, 2, 3, 1)                      # NHWC view (free when x is channels-last)
    if ph or pw:
        x = F.pad(x, (0, 0, pw, pw, ph, ph))
    x = x.contiguous()
    sn, sy, sx, sc = x.stride()
    view = x.as_strided((n, ho, wo, kh, kw, c), (sn, sy * sh, sx * sw, sy * dh, sx * dw, sc))
    return view.reshape(n * ho * wo, kh * kw * c)
