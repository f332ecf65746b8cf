"""The fused CPU kernel of a ``qtemporal_mix`` → ``qneuron`` pair: one pass over memory per layer.

``csrc/fused_neuron.cpp`` computes, per element, the T-GIM currents ``rs(Σ_j ω[r, j]·y[j], F)``, then the
neuron's steps (leak, current, B-bit clip and its count, multi-level compare, soft reset), writing int8
spike counts. It is built at first use with ``torch.utils.cpp_extension.load`` (needs a C++ compiler and
ninja); if that fails, or ``LMHTC_FUSED=0`` is set, ``available()`` is false and the runtime keeps its
pure-torch kernels, whose integers are the same.

Invariant: ``mix_neuron`` returns the definition's spike counts and saturation events, bit for bit, or
None (not eligible: the caller then runs the torch kernels). The narrow types are chosen from proven
bounds only: an int32 mix accumulator where ``acc_bound`` + 2^(F−1) fits 31 bits, an int32 membrane
without clip where ``neuron.membrane_bound`` proves |V| within the B-bit range and every intermediate
below 2^31 (and L·max Θ fits), else an int64 membrane with the clip, which is exact for any input.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from lmhtc.compiler.intir import QNeuron
from lmhtc.runtime.neuron import INT32_MAX, empty_steps, membrane_bound

CSRC = Path(__file__).with_name("csrc")
# the kernels (fused_neuron.cpp; event_conv.cpp, the event-driven convolution of runtime/event_conv.py) and the
# bindings of all of them (module.cpp): one extension module
SOURCES = tuple(CSRC / f for f in ("fused_neuron.cpp", "event_conv.cpp", "module.cpp"))
HEADERS = (CSRC / "rounding.h",)
CFLAGS = ["-O3", "-march=native", "-fopenmp"]
STALE_LOCK_S = 600       # a build lock older than this was left by a killed build
CHUNK = 1024             # kChunk of the C++ source: elements per work item
AFFINE_INPUTS = (torch.float32, torch.int8, torch.int16, torch.int32)

_state: dict = {}


def enabled() -> bool:
    """False when the environment asks for the torch kernels (``LMHTC_FUSED=0``)."""
    return os.environ.get("LMHTC_FUSED", "1").strip() not in ("0", "false", "no", "off")


def build_name() -> str:
    """The extension's name: a hash of its sources, flags, compiler-relevant CPU features and torch version,
    so a changed source, another CPU (``-march=native``) or another torch never loads a stale build; and of
    where the sources lie, since torch rebuilds a module whose recorded source paths differ (two checkouts of
    one source would otherwise rebuild each other's)."""
    h = hashlib.sha256(str(CSRC.resolve()).encode())
    for src in (*SOURCES, *HEADERS):
        h.update(src.read_bytes())
    h.update(" ".join(CFLAGS).encode())
    h.update(torch.__version__.encode())
    h.update(platform.machine().encode())
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    h.update(flags.encode())
    return f"lmhtc_fused_{h.hexdigest()[:16]}"


def _clear_stale_lock(name: str) -> None:
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory(name, verbose=False)) / "lock"
    try:
        if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink()
    except OSError:
        pass


def _ninja_on_path() -> None:
    """torch's extension builder runs ``ninja`` from PATH; the pinned ninja package installs it next to the
    environment's python, which is not on PATH when lmhtc runs as ``.venv/bin/lmhtc`` without activation."""
    import shutil

    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])


def extension():
    """The built extension module, or None (disabled, or it cannot be built here); built once per process."""
    if not enabled():
        return None
    if "module" not in _state:
        _ninja_on_path()
        log = logging.getLogger("torch.utils.cpp_extension")
        level = log.level
        log.setLevel(logging.ERROR)     # its import warns about CUDA, which a CPU kernel does not use
        try:
            from torch.utils.cpp_extension import load

            name = build_name()
            _clear_stale_lock(name)
            _state["module"] = load(name=name, sources=[str(s) for s in SOURCES], extra_cflags=CFLAGS,
                                    extra_ldflags=["-fopenmp"], verbose=False)
        except Exception as exc:      # no compiler, no ninja, a failed build: the torch kernels remain
            _state["module"], _state["error"] = None, f"{type(exc).__name__}: {exc}"
        finally:
            log.setLevel(level)
    return _state["module"]


def available() -> bool:
    return extension() is not None


def _built():
    """The extension for a run that ``available()`` admitted (the module, once built), without re-reading the
    environment on every kernel call."""
    module = _state.get("module")
    return module if module is not None else extension()


def build_error() -> str | None:
    """Why the extension is unavailable (after a failed build), for diagnostics."""
    return _state.get("error")


def _layout(y: torch.Tensor) -> tuple[int, int, int] | None:
    """(channels C, inner, per-sample elements) of y [Win, B, C, ...]: each step's block dense, batch outermost,
    so an element at offset o of a block has channel (o // inner) % C; None for any other layout."""
    return _layout_of(tuple(y.shape), y.stride())


_NONE = torch.empty(0, dtype=torch.int64)     # "no scale" / "no bias" for the kernels (read only)


@functools.lru_cache(maxsize=4096)
def _same_strides(shape: tuple[int, ...], a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Two tensors of ``shape`` with strides ``a`` and ``b`` lay out every non-trivial dimension alike."""
    return all(x == y for x, y, n in zip(a, b, shape) if n > 1)


@functools.lru_cache(maxsize=4096)
def _layout_of(shape: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, int, int] | None:
    """``_layout`` of a tensor with this shape and stride (a function of the two alone)."""
    win, b, c = shape[:3]
    numel = math.prod(shape[1:])
    if stride[0] != numel and win > 1:
        return None
    dims = sorted((st, n) for st, n in zip(stride[1:], shape[1:]) if n > 1)
    expect = 1
    for st, n in dims:
        if st != expect:
            return None
        expect *= n
    per_sample = numel // b
    if b > 1 and stride[1] != per_sample:
        return None
    inner = stride[2] if c > 1 else 1
    return c, inner, per_sample


class FusedNeuron:
    """One qneuron's constants for the kernel, prepared once per program: Θ, v_init, leak as int64 tensors,
    their maxima, and the int32 proof of ``membrane_bound`` per (rows, front, current bound)."""

    def __init__(self, node: QNeuron, theta: torch.Tensor, v_init: torch.Tensor, channels: int):
        self.node = node
        self.channels = channels
        self.theta = theta.to(torch.int64).reshape(-1).expand(channels).contiguous() if theta.numel() == 1 else \
            theta.to(torch.int64).reshape(-1).contiguous()
        self.v_init = v_init.to(torch.int64).reshape(-1).expand(channels).contiguous() if v_init.numel() == 1 else \
            v_init.to(torch.int64).reshape(-1).contiguous()
        self.leak = torch.as_tensor(node.leak, dtype=torch.int64).contiguous()
        self.steps = int(len(node.leak))
        self.v0_max = int(self.v_init.abs().max()) if self.v_init.numel() else 0
        self.theta_max = int(self.theta.abs().max()) if self.theta.numel() else 0
        self._v32: dict[tuple, bool] = {}
        self._omega: dict[bytes, torch.Tensor] = {}
        self._last_omega: tuple = (None, None)     # (the array last asked for, its tensor): a run asks for one
        self._last_call: tuple | None = None       # (key, omega, call_of's answer) of the last call

    def v32(self, rows: int, front: bool, cur_bound: int) -> bool:
        """An int32 membrane without clip is exact: |V| stays in the B-bit range, intermediates below 2^31."""
        key = (rows, front, cur_bound)
        if key not in self._v32:
            node = self.node
            peak, fits = membrane_bound(node, self.steps, rows, front, cur_bound, self.v0_max)
            self._v32[key] = peak <= 2 ** (node.membrane_bits - 1) - 1 and fits and \
                node.levels * self.theta_max <= INT32_MAX
        return self._v32[key]

    def call_of(self, shape: tuple, stride: tuple, omega, frac_bits: int, acc_bound: int, rows: int, front: bool,
                cur_bound: int):
        """The kernel's arguments for a y of this shape/stride (output layouts, the constants after y), or None
        (not eligible); the last call's are kept: a run's micro-batches repeat it."""
        key = (shape, stride, id(omega), frac_bits, acc_bound, rows, front, cur_bound)
        last = self._last_call
        if last is not None and last[0] == key and last[1] is omega:
            return last[2]
        call = self._call(shape, stride, omega, frac_bits, acc_bound, rows, front, cur_bound)
        self._last_call = (key, omega, call)
        return call

    def _call(self, shape, stride, omega, frac_bits, acc_bound, rows, front, cur_bound):
        node = self.node
        layout = _layout_of(shape, stride)
        if layout is None:
            return None
        c, inner, per_sample = layout
        om = self.omega(omega)
        if om.shape[0] * rows < self.steps or om.shape[1] != shape[0]:
            return None
        v32 = self.v32(rows, front, cur_bound)
        acc32 = acc_bound + ((1 << frac_bits) >> 1) <= INT32_MAX
        k = empty_steps(self.steps, torch.empty_strided(shape[1:], stride[1:], dtype=torch.int8), torch.int8)
        k_shape, k_stride = tuple(k.shape), k.stride()
        if not _same_strides(tuple(shape[1:]), k_stride[1:], tuple(stride[1:])):
            return None
        with_csum = len(shape) == 5 and inner == 1 and c <= CHUNK
        csum_shape = (self.steps, *shape[1:2], *shape[3:]) if with_csum else (0,)
        args = (om, int(frac_bits), int(rows), bool(front), self.leak, int(node.leak_frac_bits), self.theta,
                self.v_init, int(node.levels), int(node.membrane_bits), int(c), int(inner), int(per_sample),
                bool(acc32), bool(v32))
        return (k_shape, k_stride, csum_shape, with_csum), args

    def omega(self, omega) -> torch.Tensor:
        """The int64 tensor of ``omega``, one per distinct matrix; the array asked for last is answered
        without reading its bytes again."""
        if self._last_omega[0] is omega:
            return self._last_omega[1]
        om = np.ascontiguousarray(omega, dtype=np.int64)
        key = om.tobytes() + bytes(str(om.shape), "ascii")
        if key not in self._omega:
            self._omega[key] = torch.from_numpy(om.copy())
        self._last_omega = (omega, self._omega[key])
        return self._omega[key]


def mix_neuron(y: torch.Tensor, omega, frac_bits: int, acc_bound: int, rows: int, front: bool, prep: FusedNeuron,
               cur_bound: int):
    """Spike counts k [steps, B, ...] (int8, y's per-step layout), saturation events [B] and (channels-last
    5-D layers, else None) Σ over channels of k [steps, B, H, W] int32 of ``prep.node`` on the currents
    ``rs(omega @ y, frac_bits)`` (one per window of ``rows`` steps, or per step); or None if not eligible.

    ``acc_bound`` bounds |Σ_j ω[r, j]·y[j]|, ``cur_bound`` the currents' magnitude (both proven by the caller)."""
    ext = _built()
    node = prep.node
    if ext is None or y.device.type != "cpu" or node.levels >= 128 or y.dim() < 3 or y.dtype.is_floating_point \
            or y.shape[2] != prep.channels:
        return None
    layout = _layout(y)
    if layout is None:
        y = y.contiguous()
    call = prep.call_of(tuple(y.shape), y.stride(), omega, frac_bits, acc_bound, rows, front, cur_bound)
    if call is None:
        return None
    (k_shape, k_stride, csum_shape, with_csum), args = call
    k = torch.empty_strided(k_shape, k_stride, dtype=torch.int8)
    sat = torch.zeros(y.shape[1], dtype=torch.int64)
    csum = torch.empty(csum_shape, dtype=torch.int32)
    ext.mix_neuron(y, *args, k, sat, csum)
    return k, sat, (csum if with_csum else None)


def affine_shift(x: torch.Tensor, scale: torch.Tensor | None, bias: torch.Tensor | None, lw: int, e: int,
                 dtype: torch.dtype) -> torch.Tensor | None:
    """``e(x·scale[c], E) + bias[c]·lw`` as ``dtype`` (int32 or int64) in one pass, x's layout, or None.

    x [S, B, C, ...] holds exact integers (float32 oneDNN sums below 2^24, or an integer type); the caller's
    bound on the result decides ``dtype``, the arithmetic inside is int64; ``scale``/``bias`` hold one value
    per channel (any shape)."""
    ext = _built()
    if ext is None or x.device.type != "cpu" or x.dim() < 3 or x.dtype not in AFFINE_INPUTS:
        return None
    plan = _affine_plan(tuple(x.shape), x.stride())
    if plan is None:
        return None
    c, inner, out_stride = plan
    out = torch.empty_strided(x.shape, out_stride, dtype=dtype)
    ext.affine_shift(x, _NONE if scale is None else scale.reshape(-1), _NONE if bias is None else bias.reshape(-1),
                     int(lw), int(e), int(c), int(inner), out)
    return out


@functools.lru_cache(maxsize=4096)
def _affine_plan(shape: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, int, tuple] | None:
    """(C, inner, the output's strides: ``empty_like``'s) for an x of this shape and stride, or None when x's
    layout is not one the kernel reads or the output would not share it."""
    layout = _layout_of(shape, stride)
    if layout is None:
        return None
    out = torch.empty_like(torch.empty_strided(shape, stride, dtype=torch.int8))
    if not _same_strides(shape, out.stride(), stride):
        return None
    return layout[0], layout[1], out.stride()
