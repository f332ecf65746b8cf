"""Attribute checks of IR graphs, float and integer: types, ranges and bounds of every attribute.

Invariant: a graph whose nodes pass ``check_node`` (before shape inference) and ``check_integer_ranges``
(after it) runs on every executor without division by zero, type errors, hangs, silent overflow or a
kernel choice that trusts a wrong bound: integer weights fit ``weight_bits``, every stored ``acc_bound``
covers the sums that an independent range analysis allows, shifts and bit widths keep int64 exact.
Every failure is an ``IRError`` naming the node and the attribute.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .analysis.ranges import synapse_sum_bounds
from .ir import IRError

MAX_STEPS = 4096            # T' = L·T of any sane network (L ≤ 16, T ≤ 256)
MAX_LEVELS = 256
MAX_ELEMENTS = 2 ** 24      # per-sample values of one node (ResNet-18 at 224×224 has 3.2 M)
MAX_ABS_FLOAT = 1e12        # float parameters beyond this overflow float32 activations
EXACT_BITS = 62             # integer sums stay below 2^62 (int64 with headroom)


def _where(node) -> str:
    return f"node {node.name!r} ({node.kind})"


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _int(node, key: str, lo: int, hi: int) -> int:
    v = getattr(node, key)
    if not _is_int(v) or not lo <= v <= hi:
        raise IRError(f"{_where(node)}: {key} must be an integer in [{lo}, {hi}], got {v!r}")
    return int(v)


def _real(node, key: str, positive: bool = False) -> float:
    v = getattr(node, key)
    ok = isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v) \
        and abs(v) <= MAX_ABS_FLOAT and (v > 0 if positive else True)
    if not ok:
        raise IRError(f"{_where(node)}: {key} must be {'> 0 and ' if positive else ''}finite, got {v!r}")
    return float(v)


def _pair(node, key: str, lo: int) -> None:
    v = getattr(node, key)
    if not isinstance(v, (tuple, list)) or len(v) != 2 or not all(_is_int(e) and lo <= e <= 2 ** 16 for e in v):
        raise IRError(f"{_where(node)}: {key} must be two integers >= {lo}, got {v!r}")


def _array(node, key: str, ndim: int | None = None, integer: bool | None = None, required: bool = True):
    a = getattr(node, key)
    if a is None and not required:
        return None
    if not isinstance(a, np.ndarray):
        raise IRError(f"{_where(node)}: {key} must be an array, got {type(a).__name__}")
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise IRError(f"{_where(node)}: {key} has dtype {a.dtype}; expected numbers")
    if integer is True and not np.issubdtype(a.dtype, np.integer):
        raise IRError(f"{_where(node)}: {key} must be integer, is {a.dtype}")
    if integer is False and not np.issubdtype(a.dtype, np.floating):
        raise IRError(f"{_where(node)}: {key} must be floating point, is {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise IRError(f"{_where(node)}: {key} must have {ndim} dimension(s), has shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating) and a.size and _peak(a) > MAX_ABS_FLOAT:
        raise IRError(f"{_where(node)}: {key} has values beyond ±{MAX_ABS_FLOAT:g}")
    return a


def _peak(a: np.ndarray) -> float:
    """max |a| of a float array without a copy (NaN when it holds one, as ``np.abs(a).max()``)."""
    return float(max(a.max(), -a.min()))


def _max_abs(a) -> int:
    """max |a| of an integer-valued array as a Python integer (no int64 copy: max and min in place)."""
    if a is None or not a.size:
        return 0
    if a.dtype.kind in "iu":
        return max(int(a.max()), -int(a.min()))
    return int(np.abs(a.astype(np.int64)).max())


def check_steps(graph) -> None:
    if not _is_int(graph.steps) or not 1 <= graph.steps <= MAX_STEPS:
        raise IRError(f"graph runs {graph.steps!r} time-steps; needs an integer in [1, {MAX_STEPS}]")


def check_node(node, graph) -> None:
    """Types and ranges of one node's attributes (no shapes needed)."""
    steps, kind = graph.steps, node.kind
    if kind in ("input", "qinput"):
        shape = node.input_shape
        if not isinstance(shape, (tuple, list)) or len(shape) not in (1, 2, 3) or \
                not all(_is_int(s) and s >= 1 for s in shape) or math.prod(shape) > MAX_ELEMENTS:
            raise IRError(f"{_where(node)}: input_shape must be (C,H,W), (C,L) or (N,) of positive sizes with at "
                          f"most {MAX_ELEMENTS} values, got {shape!r}")
        if node.encoding not in ("direct", "sequence"):
            raise IRError(f"{_where(node)}: encoding must be direct (the same input at every step) or sequence "
                          f"(one input per step), got {node.encoding!r}")
        if kind == "qinput":
            _real(node, "scale", positive=True)
            _int(node, "bits", 2, 32)
    elif kind in ("conv2d", "qconv2d", "linear", "qlinear"):
        q = kind.startswith("q")
        conv = kind.endswith("conv2d")
        w = _array(node, "weight", ndim=4 if conv else 2, integer=True if q else False)
        b = _array(node, "bias", ndim=1, integer=True if q else False, required=False)
        if b is not None and b.shape != (w.shape[0],):
            raise IRError(f"{_where(node)}: bias has shape {b.shape}, expected ({w.shape[0]},)")
        if conv:
            _pair(node, "stride", 1)
            _pair(node, "dilation", 1)
            _pair(node, "padding", 0)
            groups = _int(node, "groups", 1, 2 ** 16)
            if w.shape[0] % groups:
                raise IRError(f"{_where(node)}: {w.shape[0]} output channels do not split into {groups} groups")
        if q:
            _check_synapse(node, w, b)
    elif kind == "qgain":
        _check_synapse(node, _array(node, "gain", ndim=1, integer=True), None)
    elif kind == "batchnorm":
        arrays = [_array(node, k, ndim=1, integer=False) for k in ("weight", "bias", "running_mean", "running_var")]
        if len({a.shape for a in arrays}) != 1:
            raise IRError(f"{_where(node)}: weight, bias, running_mean and running_var differ in length")
        if np.any(node.running_var < 0):
            raise IRError(f"{_where(node)}: running_var has negative values")
        _real(node, "eps", positive=True)
    elif kind in ("avgpool2d", "maxpool2d", "sumpool2d"):
        _pair(node, "kernel", 1)
        _pair(node, "stride", 1)
        _pair(node, "padding", 0)
        if any(2 * p > k for p, k in zip(node.padding, node.kernel)):
            raise IRError(f"{_where(node)}: padding {tuple(node.padding)} exceeds half the kernel {tuple(node.kernel)}")
    elif kind in ("temporal_mix", "qtemporal_mix"):
        omega = _array(node, "omega", ndim=2, integer=True if kind == "qtemporal_mix" else None)
        if omega.shape != (steps, steps):
            raise IRError(f"{_where(node)}: omega is {omega.shape}, graph runs {steps} steps")
        if kind == "qtemporal_mix":
            _int(node, "frac_bits", 0, EXACT_BITS)
    elif kind in ("neuron", "qneuron"):
        _check_neuron(node, steps)
    elif kind == "qreadout":
        s = _array(node, "scale", ndim=1, integer=False)
        if not np.all(np.isfinite(s)):
            raise IRError(f"{_where(node)}: scale has non-finite values")


def _check_synapse(node, w: np.ndarray, b) -> None:
    """Integer synapse: mantissas within weight_bits, exponent and bound keeping the sums in int64."""
    wb = _int(node, "weight_bits", 2, 24)
    qmax = 2 ** (wb - 1) - 1
    if _max_abs(w) > qmax:
        raise IRError(f"{_where(node)}: integer weights reach {_max_abs(w)}, beyond {wb}-bit mantissas (±{qmax})")
    shift = _int(node, "shift", -EXACT_BITS, EXACT_BITS)
    bound = _int(node, "acc_bound", 0, 2 ** EXACT_BITS - 1)
    if (bound << max(shift, 0)) + _max_abs(b) >= 2 ** EXACT_BITS:
        raise IRError(f"{_where(node)}: acc_bound {bound} << shift {shift} plus the bias exceeds 2^{EXACT_BITS}")


def _check_neuron(node, steps: int) -> None:
    _int(node, "levels", 1, MAX_LEVELS)
    if node.reset != "soft":
        raise IRError(f"{_where(node)}: only soft reset is supported, got {node.reset!r}")
    leak = _array(node, "leak", ndim=1, integer=True if node.kind == "qneuron" else None)
    if leak.shape != (steps,):
        raise IRError(f"{_where(node)}: leak schedule must have {steps} entries, has {leak.shape}")
    _real(node, "input_scale")
    if node.kind == "neuron":
        _real(node, "v_init")
        th = node.threshold
        th = _array(node, "threshold") if isinstance(th, np.ndarray) else _real(node, "threshold", positive=True)
        if not np.all(np.asarray(th) > 0):
            raise IRError(f"{_where(node)}: threshold must be > 0")
        return
    frac = _int(node, "leak_frac_bits", 0, EXACT_BITS)
    bits = _int(node, "membrane_bits", 2, EXACT_BITS)
    vmax = 2 ** (bits - 1) - 1
    theta = _array(node, "threshold", ndim=1, integer=True)
    v_init = _array(node, "v_init", ndim=1, integer=True)
    if theta.shape != v_init.shape:
        raise IRError(f"{_where(node)}: threshold {theta.shape} and v_init {v_init.shape} differ in length")
    if theta.size and (int(theta.min()) < 1 or int(theta.max()) >= 2 ** EXACT_BITS):
        raise IRError(f"{_where(node)}: threshold must lie in [1, 2^{EXACT_BITS}), got {theta.min()}..{theta.max()}")
    if _max_abs(v_init) > vmax:
        raise IRError(f"{_where(node)}: v_init exceeds the {bits}-bit membrane")
    if _max_abs(leak).bit_length() + bits > 63:
        raise IRError(f"{_where(node)}: leak up to {_max_abs(leak)} times a {bits}-bit membrane overflows int64")
    del frac


# -- after shape inference: an independent range analysis of the integer sums ---------------------

def check_integer_ranges(graph) -> None:
    """Every synapse's ``acc_bound`` covers max |Σ w·x| given its input's range, and every T-GIM sum
    stays below 2^62. Ranges are per channel: the input encoding's ±(2^(bits−1) − 1), a neuron's
    levels, a pool's window times its input's."""
    if not graph.meta.get("integer"):
        return
    hi: dict[str, np.ndarray] = {}      # per-channel max |value| on each edge (int, Python objects)
    setter: dict[str, list] = {}        # the nodes whose attributes set that range (named by errors)
    for node in graph.topo():
        k = node.kind
        src = [hi.get(i) for i in node.inputs]
        setter[node.name] = [node.name] if k in ("qinput", "qneuron", "qlif") else \
            sorted({s for i in node.inputs for s in setter.get(i, [])})
        if k == "qinput":
            hi[node.name] = np.full(node.shape[0], 2 ** (node.bits - 1) - 1, dtype=object)
        elif k == "qneuron":
            hi[node.name] = np.full(node.shape[0], node.levels, dtype=object)
        elif k == "qlif":
            hi[node.name] = np.full(node.shape[0], node.out_bound(), dtype=object)
        elif k in ("sumpool2d", "globalsumpool") and src[0] is not None:
            window = node.kernel[0] * node.kernel[1] if k == "sumpool2d" else \
                graph.node(node.inputs[0]).shape[1] * graph.node(node.inputs[0]).shape[2]
            hi[node.name] = src[0] * window
        elif k == "maxpool2d" and src[0] is not None:
            hi[node.name] = src[0]
        elif k == "flatten" and src[0] is not None:
            per = math.prod(graph.node(node.inputs[0]).shape[1:])
            hi[node.name] = np.repeat(src[0], per)
        elif k == "add" and all(s is not None for s in src):
            hi[node.name] = src[0] + src[1]
        elif k in ("qconv2d", "qlinear", "qgain") and src[0] is not None:
            hi[node.name] = _synapse_range(node, src[0], setter[node.name])
            setter[node.name] = [node.name]
        elif k == "qtemporal_mix" and src[0] is not None:
            total = int(np.abs(node.omega.astype(object)).sum(axis=1).max()) * int(src[0].max())
            if total >= 2 ** EXACT_BITS:
                raise IRError(f"{_where(node)}: T-GIM sums may reach {total}, beyond 2^{EXACT_BITS}")


def _synapse_range(node, m_in: np.ndarray, setters: list) -> np.ndarray:
    """Per-output-channel max |y| of an integer synapse; refuses a stored acc_bound below max |Σ w·x|
    (analysis/ranges.py's ``synapse_sum_bounds``, the function the quantizer sets acc_bound with)."""
    acc = synapse_sum_bounds(node, m_in)
    need = int(acc.max()) if acc.size else 0
    if node.acc_bound < need:
        raise IRError(f"{_where(node)}: acc_bound {node.acc_bound} is below the {need} its weights and the input "
                      f"range set by node(s) {', '.join(map(repr, setters))} allow (the float kernels would not be exact)")
    shift = node.shift
    scaled = acc * 2 ** shift if shift >= 0 else np.array([(a >> -shift) + 1 for a in acc], dtype=object)
    bias = getattr(node, "bias", None)
    return scaled + (0 if bias is None else np.abs(bias.astype(object)))
