"""Exact int8 synaptic products: NHWC im2col + ``torch._int_mm`` (int8 × int8 → int32).

Invariant: used only where it is exact by construction — every weight mantissa
and every input value fits int8 (|·| ≤ 127), and a bound on every partial sum
(max over outputs of Σ|w| × max |x|, from the weights themselves) stays below
2^31, so no int32 partial sum can wrap. The integers are then those of the
int64 sum.

Not every CPU's int8 kernels are exact on the whole int8 range: without VNNI or AMX (AVX2, AVX-512
without VNNI), oneDNN multiplies uint8 × int8 with ``vpmaddubsw``, which adds adjacent products into a
*saturating int16*. ``int16_pairs()`` tells such a machine (CPU flags, then a probe on operands that
saturate), and there every oneDNN convolution needs ``max uint8 input × (two largest |w| of a row) ≤ 2^15 − 1``;
``_int_mm`` is used only where a probe on full-range operands returns the exact sums.

Layout: a conv's int32 output is returned as a ``[S, B, C, H, W]`` view of an
``[S, B, H, W, C]`` (channels-last) buffer; elementwise ops keep that layout,
so the next conv reads its input as contiguous NHWC without a transpose.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

INT32_MAX = 2 ** 31 - 1
INT8_MAX = 127
INT16_MAX = 2 ** 15 - 1


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

    def exact(self, in_bound: int, acc_bound: int) -> bool:
        """Inputs bounded by ``in_bound`` fit int8, ``acc_bound`` (≥ every |partial sum|) is below 2^31, and this
        device's ``_int_mm`` returned exact sums on full-range operands (``int_mm_exact``)."""
        return in_bound <= INT8_MAX and acc_bound <= INT32_MAX and int_mm_exact(self.wt.device.type)

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


EXACT_F32 = 2 ** 24


def onednn_available(device: str) -> bool:
    """oneDNN's int8 convolution (the x86 quantization backend) exists in this torch build, for CPU runs."""
    return torch.device(device).type == "cpu" and hasattr(torch.ops, "onednn") and \
        hasattr(torch.ops.onednn, "qconv2d_pointwise") and hasattr(torch.ops.onednn, "qconv_prepack")


class OneDnnConv:
    """A ``qconv2d`` as oneDNN's direct int8 convolution: uint8 activations × int8 weights, int32 accumulation.

    Exact by construction under ``exact``: every scale is 1.0, signed inputs (|x| ≤ 127) enter as x + 128 with
    zero point 128 (the compensation is integer), non-negative inputs (spike counts ≤ 255) with zero point 0,
    and the float32 output holds the int32 sum exactly because every |Σ w·x| < 2^24.
    """

    def __init__(self, node, device: str):
        self.node = node
        w = torch.as_tensor(node.weight).to(torch.int8)
        self.ones = torch.ones(w.shape[0], dtype=torch.float32)
        self.zeros = torch.zeros(w.shape[0], dtype=torch.int64)
        self.geom = [list(node.stride), list(node.padding), list(node.dilation)]
        self.packed = {zp: _prepack(w, self.ones, zp, self.geom) for zp in (0, 128)}
        rows = torch.as_tensor(node.weight).abs().reshape(w.shape[0], -1)
        self.wsum = int(rows.sum(1).max()) if w.numel() else 0
        # the largest |w_i| + |w_j| within one output's fan-in: bounds any int16 pair sum of u8 × s8 products
        self.pair_w = int(rows.topk(min(2, rows.shape[1]), dim=1).values.sum(1).max()) if w.numel() else 0
        # oneDNN's int8 conv returns wrong sums where the padding is wider than the dilated kernel extent
        # (found by hypothesis: cin 1, cout 2, k 2, padding 2, hw 4); such geometries take the im2col path
        k = w.shape[2:]
        self.geometry_ok = all(p <= d * (kk - 1) for p, d, kk in zip(node.padding, node.dilation, k))

    def exact(self, in_bound: int, signed: bool) -> bool:
        """Inputs fit the uint8 encoding, |Σ w·x| < 2^24 (exact float32 output), the uint8 sums fit int32, and,
        on a CPU that adds products in int16 pairs, no pair of the uint8 operands (signed x enter as x + 128 ≤ 255)
        can leave int16."""
        u8 = 255 if signed else in_bound
        return self.geometry_ok and (in_bound <= INT8_MAX if signed else in_bound <= 255) \
            and self.wsum * in_bound < EXACT_F32 and self.wsum * 255 <= INT32_MAX \
            and (u8 * self.pair_w <= INT16_MAX or not int16_pairs())

    def __call__(self, v: torch.Tensor, signed: bool, raw: bool = False) -> torch.Tensor:
        """v [S, B, C, H, W] (int8 for signed inputs, else any integer dtype ≥ 0) → int32 [S, B, Cout, Ho, Wo]
        (``raw``: the float32 sums as oneDNN returns them, every one an exact integer below 2^24)."""
        s, b = v.shape[:2]
        x = v.reshape(s * b, *v.shape[2:])
        if signed:
            x = x.to(torch.int8).view(torch.uint8) ^ 128        # two's complement x + 128, in [1, 255]
        else:
            x = x.view(torch.uint8) if x.dtype == torch.int8 else x.to(torch.uint8)   # 0 ≤ x ≤ 127: same bits
        zp = 128 if signed else 0
        y = _qconv_sums(x, zp, self.packed[zp], self.ones, self.zeros, self.geom)
        return (y if raw else y.to(torch.int32)).reshape(s, b, *y.shape[1:])


def _prepack(w: torch.Tensor, ones: torch.Tensor, zp: int, geom: list) -> torch.Tensor:
    """oneDNN's packed int8 weights ``w`` for inputs of zero point ``zp``: every scale 1.0, one group."""
    return torch.ops.onednn.qconv_prepack(w, ones, 1.0, zp, *geom, 1, None)


def _qconv_sums(x: torch.Tensor, zp: int, packed: torch.Tensor, ones: torch.Tensor, zeros: torch.Tensor,
                geom: list) -> torch.Tensor:
    """oneDNN's int8 convolution of uint8 ``x`` (zero point ``zp``) by ``packed`` weights, every scale 1.0:
    the sums in float32."""
    return torch.ops.onednn.qconv2d_pointwise(x, 1.0, zp, packed, ones, zeros, None, *geom, 1, 1.0, 0,
                                              torch.float32, "none", [], "")


def _qconv(x: torch.Tensor, w: torch.Tensor, zp: int) -> torch.Tensor:
    """A 3×3 convolution (stride 1, padding 1) of uint8 ``x`` by int8 ``w`` as the runtime runs it."""
    ones, zeros, geom = torch.ones(w.shape[0]), torch.zeros(w.shape[0], dtype=torch.int64), [[1, 1], [1, 1], [1, 1]]
    return _qconv_sums(x, zp, _prepack(w, ones, zp, geom), ones, zeros, geom)


def int8_dot_product() -> bool:
    """Whether this CPU has an int8 dot-product instruction that sums into int32 (VNNI or AMX), by its flags."""
    cpu = torch.cpu
    return any(getattr(cpu, f, lambda: False)() for f in ("_is_vnni_supported", "_is_amx_tile_supported"))


@functools.cache
def int16_pairs() -> bool:
    """Whether this CPU's oneDNN int8 convolution may add u8 × s8 products in saturating int16 pairs.

    False only where the CPU has VNNI or AMX (products summed into int32 directly) *and* a 3×3 convolution of
    uint8 255 by int8 ±127 (every pair 64,770: it saturates int16) returns the exact sums (where this torch
    build has the convolution to probe); True otherwise."""
    if not int8_dot_product():
        return True
    if not onednn_available("cpu"):
        return False         # no oneDNN convolution to probe: the flags decide
    x = torch.full((1, 16, 4, 4), 255, dtype=torch.uint8)
    for sign in (1, -1):
        w = torch.full((8, 16, 3, 3), 127 * sign, dtype=torch.int8)
        exact = F.conv2d(x.double(), w.double(), padding=1)
        if not torch.equal(_qconv(x, w, 0).double(), exact):
            return True
    return False


@functools.cache
def int_mm_exact(device: str = "cpu") -> bool:
    """Whether ``torch._int_mm`` on ``device`` returns exact int32 sums on full-range int8 operands: constant
    ±127 and −128 factors (where an int16 pair sum would saturate) and random weights, over GEMM shapes whose
    kernels differ (a narrow M, a K that is not a multiple of 4, a wide K)."""
    if torch.device(device).type != "cpu":
        return True          # CUDA's int8 GEMM accumulates in int32
    for m, k, n in ((17, 9, 8), (64, 64, 64), (32, 1152, 64)):
        rand = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=torch.Generator().manual_seed(k))
        for a_val, b_val in ((127, 127), (-128, 127), (127, -128), (-128, -128)):
            a = torch.full((m, k), a_val, dtype=torch.int8)
            for b in (torch.full((k, n), b_val, dtype=torch.int8), rand):
                if not torch.equal(torch._int_mm(a, b).double(), a.double() @ b.double()):   # < 2^53: exact
                    return False
    return True
