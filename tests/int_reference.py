"""A deliberately plain integer reference of docs/integer-semantics.md (version 1), for tests only.

Written independently of ``runtime/`` and of ``lmhtc.compiler.intir.rs``: explicit
Python loops over output positions and kernel offsets, ``np.int64``
everywhere, no torch, every value held expanded over all ``steps`` (a static
value is simply repeated). Slow by design; use it on tiny networks only.

Node kinds are told apart by their ``kind`` string, so this file needs
nothing from the compiler beyond the node objects of the graph it is given.
"""
from __future__ import annotations

import numpy as np

I64 = np.int64
SYNAPTIC = ("qconv2d", "qlinear", "qgain")


# -- notation of the doc -----------------------------------------------------------

def rs(a, frac_bits: int) -> np.ndarray:
    """Rounding right shift, round half away from zero: ``sign(a)·((|a| + 2^(F−1)) >> F)``; ``rs(a, 0) = a``."""
    a = np.asarray(a, dtype=I64)
    f = int(frac_bits)
    if f == 0:
        return a.copy()
    mag = (np.abs(a) + I64(1 << (f - 1))) >> I64(f)     # floor shift of a non-negative integer
    return np.sign(a).astype(I64) * mag


def _exp_shift(a, e: int):
    """The synapse exponent: multiply by 2^e for e >= 0, rounding right shift by -e for e < 0."""
    return a * I64(1 << e) if e >= 0 else rs(a, -e)


def sat(a, bits: int) -> np.ndarray:
    """Saturation to B-bit two's complement."""
    lo, hi = -(1 << (int(bits) - 1)), (1 << (int(bits) - 1)) - 1
    return np.minimum(np.maximum(np.asarray(a, dtype=I64), I64(lo)), I64(hi))


def round_half_away(x) -> np.ndarray:
    """``sign(x)·floor(|x| + 1/2)`` in float64."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _per_channel(arr, channels: int, ndim: int) -> np.ndarray:
    """A per-channel int64 vector reshaped to broadcast over a per-sample shape of ``ndim`` dims (channel first)."""
    a = np.asarray(arr, dtype=I64).reshape(-1)
    if a.size == 1:
        a = np.full(channels, a[0], dtype=I64)
    assert a.size == channels, (a.size, channels)
    return a.reshape(channels, *([1] * (ndim - 1)))


# -- node kinds --------------------------------------------------------------------

def encode_input(x: np.ndarray, node) -> np.ndarray:
    """``clip(round(x/scale), ±(2^(bits−1) − 1))`` per image: [N, *shape] int64 (division in float64)."""
    q = (1 << (int(node.bits) - 1)) - 1
    r = round_half_away(np.asarray(x, dtype=np.float64) / float(node.scale))
    return np.clip(r, -q, q).astype(I64)


def conv_sum(x: np.ndarray, weight: np.ndarray, stride, padding, dilation, groups: int, out_hw) -> np.ndarray:
    """Exact ``Σ w·x`` of a convolution with zero padding. x: [..., Cin, H, W] → [..., Cout, Ho, Wo]."""
    w = np.asarray(weight, dtype=I64)
    cout, cin_g, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    h, wd = x.shape[-2:]
    ho, wo = out_hw
    cout_g = cout // groups
    lead = x.shape[:-3]
    out = np.zeros((*lead, cout, ho, wo), dtype=I64)
    for g in range(groups):
        ci = slice(g * cin_g, (g + 1) * cin_g)
        co = slice(g * cout_g, (g + 1) * cout_g)
        for oy in range(ho):
            for ox in range(wo):
                acc = np.zeros((*lead, cout_g), dtype=I64)
                for i in range(kh):
                    iy = oy * sh - ph + i * dh
                    if iy < 0 or iy >= h:
                        continue                        # zero padding
                    for j in range(kw):
                        ix = ox * sw - pw + j * dw
                        if ix < 0 or ix >= wd:
                            continue
                        xv = x[..., ci, iy, ix]          # [..., cin_g]
                        wv = w[co, :, i, j]             # [cout_g, cin_g]
                        acc = acc + (xv[..., None, :] * wv).sum(axis=-1)
                out[..., co, oy, ox] = acc
    return out


def conv_cover(in_hw, weight_shape, stride, padding, dilation, out_hw) -> np.ndarray:
    """[H, W] int64: how many output positions' windows cover each input position (zero padding)."""
    _, _, kh, kw = weight_shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    h, wd = in_hw
    cover = np.zeros((h, wd), dtype=I64)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            for i in range(kh):
                iy = oy * sh - ph + i * dh
                for j in range(kw):
                    ix = ox * sw - pw + j * dw
                    if 0 <= iy < h and 0 <= ix < wd:
                        cover[iy, ix] += 1
    return cover


def fanout(node, in_shape) -> np.ndarray:
    """Per-sample fan-out of every input position of a synaptic node (shape = its input's per-sample shape)."""
    if node.kind == "qgain":
        return np.ones(in_shape, dtype=I64)
    if node.kind == "qlinear":
        return np.full(in_shape, np.asarray(node.weight).shape[0], dtype=I64)
    cout = np.asarray(node.weight).shape[0]
    cover = conv_cover(in_shape[1:], np.asarray(node.weight).shape, node.stride, node.padding, node.dilation,
                       node.shape[1:])
    return np.broadcast_to(cover * I64(cout // node.groups), in_shape).astype(I64)


def sum_pool(x: np.ndarray, kernel, stride, padding, out_hw) -> np.ndarray:
    """Window sums (zero padding counted). x: [..., C, H, W] → [..., C, Ho, Wo]."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    h, wd = x.shape[-2:]
    out = np.zeros((*x.shape[:-2], *out_hw), dtype=I64)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            for i in range(kh):
                for j in range(kw):
                    iy, ix = oy * sh - ph + i, ox * sw - pw + j
                    if 0 <= iy < h and 0 <= ix < wd:
                        out[..., oy, ox] += x[..., iy, ix]
    return out


def temporal_mix(y: np.ndarray, omega: np.ndarray, frac_bits: int) -> np.ndarray:
    """``I(t) = rs(Σ_m omega[t,m]·y(m), F)``. y: [steps, ...]."""
    omega = np.asarray(omega, dtype=I64)
    steps = y.shape[0]
    out = np.zeros_like(y, dtype=I64)
    for t in range(steps):
        acc = np.zeros(y.shape[1:], dtype=I64)
        for m in range(steps):
            acc = acc + omega[t, m] * y[m]
        out[t] = rs(acc, frac_bits)
    return out


def neuron(current: np.ndarray, node) -> tuple[np.ndarray, np.ndarray]:
    """The qneuron pseudo-code. current: [steps, N, *shape] → (k [steps, N, *shape], saturations [N])."""
    steps, n = current.shape[:2]
    shape = current.shape[2:]
    theta = _per_channel(node.threshold, shape[0], len(shape))
    v = np.broadcast_to(_per_channel(node.v_init, shape[0], len(shape)), (n, *shape)).astype(I64)
    leak = np.asarray(node.leak, dtype=I64)
    d, b = int(node.leak_frac_bits), int(node.membrane_bits)
    k_all = np.zeros_like(current, dtype=I64)
    saturations = np.zeros(n, dtype=I64)
    for t in range(steps):
        raw = rs(leak[t] * v, d) + current[t]
        v = sat(raw, b)
        saturations += (v != raw).reshape(n, -1).sum(axis=1)
        k = np.zeros_like(v)
        for i in range(1, int(node.levels) + 1):
            k += (v >= i * theta).astype(I64)
        k_all[t] = k
        v = v - k * theta
    return k_all, saturations


def _rs_int(a: int, f: int) -> int:
    """rs on one Python integer: sign(a)·((|a| + 2^(F−1)) >> F)."""
    if f == 0:
        return a
    return (-1 if a < 0 else 1) * ((abs(a) + (1 << (f - 1))) >> f)


def lif(current: np.ndarray, node) -> tuple[np.ndarray, np.ndarray]:
    """The qlif pseudo-code, one neuron at a time in Python integers. current: [steps, N, *shape] →
    (outputs [steps, N, *shape], saturation events [N]: steps × neurons where a clip changed U or I)."""
    steps, n = current.shape[:2]
    flat = current.reshape(steps, n, -1)
    p = {k: None if getattr(node, k) is None else np.asarray(getattr(node, k), dtype=I64).reshape(-1)
         for k in ("beta", "alpha", "bias", "threshold", "v_reset", "v_min", "v_init")}
    f, bits = int(node.frac_bits), int(node.membrane_bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    snn, sub = node.reset_timing == "snntorch", node.reset == "subtract"
    out = np.zeros_like(flat, dtype=I64)
    saturations = np.zeros(n, dtype=I64)
    for b in range(n):
        for j in range(flat.shape[2]):
            th, beta, bias = int(p["threshold"][j]), int(p["beta"][j]), int(p["bias"][j])
            v, i = int(p["v_init"][j]), 0
            for t in range(steps):
                x, clipped = int(flat[t, b, j]), False
                if p["alpha"] is not None:
                    raw_i = _rs_int(int(p["alpha"][j]) * i, f) + x
                    i = min(max(raw_i, lo), hi)
                    clipped, x = i != raw_i, i
                r = 1 if snn and v > th else 0
                if snn and not sub and r:
                    v = 0
                raw = _rs_int(beta * v, f) + x + bias - (r * th if snn and sub else 0)
                u = min(max(raw, lo), hi)
                clipped = clipped or u != raw
                if not node.spiking:
                    s = v = u
                else:
                    if node.multi_spike:
                        s = u // th if u > 0 else 0
                    else:
                        s = int(u > th) if node.compare == ">" else int(u >= th)
                    if snn:
                        v = u - (s - r) * (th if sub else u)
                    elif sub:
                        v = u - s * th
                    elif node.reset == "zero":
                        v = int(p["v_reset"][j]) if s > 0 else u
                    else:
                        v = u
                if p["v_min"] is not None:
                    v = max(v, int(p["v_min"][j]))
                out[t, b, j] = s
                saturations[b] += int(clipped)
    return out.reshape(current.shape), saturations


# -- graph walk ----------------------------------------------------------------------

def spiking_input(graph, name: str) -> bool:
    """True when the synaptic node ``name`` is fed (through any non-neuron nodes) by neurons, False when by the
    analog input; both at once is outside the semantics."""
    sources, stack, seen = set(), list(graph.node(name).inputs), set()
    while stack:
        cur = stack.pop()
        if cur in seen:
            continue
        seen.add(cur)
        node = graph.node(cur)
        if node.kind in ("qneuron", "qlif", "qinput"):
            sources.add("qinput" if node.kind == "qinput" else "neuron")
        else:
            stack.extend(node.inputs)
    assert len(sources) == 1, f"{name}: fed by {sources}"
    return sources == {"neuron"}


def reference_run(graph, x) -> dict:
    """Run the integer graph on float images x [N, *input_shape] (or a per-step sequence [steps, N, ...]);
    see the module docstring."""
    x = np.asarray(x)
    seq = x.ndim == len(graph.input.input_shape) + 2
    steps, n = int(graph.steps), x.shape[int(seq)]
    frames = steps if seq else 1        # analog MACs: once per distinct input frame
    values: dict[str, np.ndarray] = {}
    spike_events, saturation, sops, macs = {}, {}, {}, {}
    outputs_int = readout = None
    for node in graph.topo():
        ins = [values[s] for s in node.inputs]
        v = ins[0] if ins else None
        kind = node.kind
        if kind == "qinput":
            enc = encode_input(x, node)
            out = enc if seq else np.stack([enc] * steps)
        elif kind == "qconv2d":
            acc = conv_sum(v, node.weight, node.stride, node.padding, node.dilation, int(node.groups),
                           node.shape[1:])
            out = _exp_shift(acc, int(node.shift))
            if node.bias is not None:
                out = out + _per_channel(node.bias, node.shape[0], len(node.shape))
        elif kind == "qlinear":
            w = np.asarray(node.weight, dtype=I64)
            out = np.zeros((steps, n, w.shape[0]), dtype=I64)
            for o in range(w.shape[0]):
                out[..., o] = (v * w[o]).sum(axis=-1)
            out = _exp_shift(out, int(node.shift))
            if node.bias is not None:
                out = out + np.asarray(node.bias, dtype=I64)
        elif kind == "qgain":
            gain = _per_channel(node.gain, node.shape[0], len(node.shape))
            out = _exp_shift(gain * v, int(node.shift))
        elif kind == "sumpool2d":
            out = sum_pool(v, node.kernel, node.stride, node.padding, node.shape[1:])
        elif kind == "globalsumpool":
            out = v.sum(axis=(-2, -1), keepdims=True)
        elif kind == "add":
            out = ins[0] + ins[1]
        elif kind == "flatten":
            out = v.reshape(steps, n, -1)
        elif kind == "qtemporal_mix":
            out = temporal_mix(v, node.omega, int(node.frac_bits))
        elif kind == "qneuron":
            out, sats = neuron(v, node)
            spike_events[node.name] = out.reshape(steps, n, -1).sum(axis=(0, 2))
            saturation[node.name] = sats
        elif kind == "qlif":
            out, sats = lif(v, node)
            if node.spiking:
                spike_events[node.name] = out.reshape(steps, n, -1).sum(axis=(0, 2))
            saturation[node.name] = sats
        elif kind == "qreadout":
            out = v.copy()
            outputs_int, readout = v, node
        else:
            raise ValueError(f"reference: node {node.name!r} ({kind}) is not an integer node kind")
        assert out.shape == (steps, n, *node.shape), (node.name, out.shape, node.shape)
        values[node.name] = out.astype(I64)

        if kind in SYNAPTIC:
            in_shape = tuple(graph.node(node.inputs[0]).shape)
            if spiking_input(graph, node.name):
                fo = fanout(node, in_shape)
                sops[node.name] = (v * fo).reshape(steps, n, -1).sum(axis=2).T.copy()   # [N, steps]
            elif kind == "qconv2d":
                cout, cin_g, kh, kw = np.asarray(node.weight).shape
                # Cout/groups × Cin × kh × kw × Hout × Wout, once per image
                macs[node.name] = (cout // node.groups) * (cin_g * node.groups) * kh * kw * \
                    node.shape[1] * node.shape[2] * frames
            elif kind == "qlinear":
                macs[node.name] = int(np.asarray(node.weight).size) * frames
            else:   # qgain on the analog input: one multiply per element
                macs[node.name] = int(np.prod(in_shape)) * frames

    assert outputs_int is not None, "graph has no qreadout"
    logits_int = outputs_int.sum(axis=0)
    scale = np.asarray(readout.scale, dtype=np.float64)
    return {"values": values, "outputs_int": outputs_int, "logits_int": logits_int,
            "logits": logits_int * scale / steps, "spike_events": spike_events, "saturation": saturation,
            "sops": sops, "macs": macs}
