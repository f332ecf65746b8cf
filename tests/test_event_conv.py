"""The C++ event-driven convolution (runtime/event_conv.py) returns the exact synaptic sums, refuses what it
cannot prove, and the runtime that picks it is bit-identical to the independent reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lmhtc import semantics
from lmhtc.compiler.intir import QConv2d
from lmhtc.runtime import fused
from lmhtc.runtime.event_conv import EventConv

needs_ext = pytest.mark.skipif(not fused.available(), reason=f"fused extension unavailable: {fused.build_error()}")

FIELDS = ("outputs_int", "logits_int", "spike_counts", "saturation", "sops_by_layer_step", "macs")


def conv_node(cin, cout, kh, kw, stride, padding, dilation, hw, weights) -> QConv2d:
    (sh, sw), (ph, pw), (dh, dw), (h, w) = stride, padding, dilation, hw
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return QConv2d("c", ["x"], shape=(cout, ho, wo), weight=weights.astype(np.int32), bias=None, shift=0,
                   stride=stride, padding=padding, dilation=dilation, groups=1)


def exact_conv(x: torch.Tensor, node: QConv2d) -> torch.Tensor:
    """Σ w·x in float64 (exact: every sum here is below 2^53), [S, B, C, H, W] → [S, B, Cout, Ho, Wo]."""
    s, b = x.shape[:2]
    y = F.conv2d(x.reshape(s * b, *x.shape[2:]).to(torch.float64), torch.as_tensor(node.weight, dtype=torch.float64),
                 None, node.stride, node.padding, node.dilation)
    return y.round().to(torch.int64).reshape(s, b, *y.shape[1:])


def spikes(rng, shape, bound, density) -> torch.Tensor:
    x = rng.integers(1, bound + 1, size=shape) * (rng.random(shape) < density)
    return torch.from_numpy(x.astype(np.int8))


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """[S, B, C, H, W] with the runtime's spike layout: channels innermost."""
    return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


@needs_ext
@settings(max_examples=80, deadline=None)
@given(cin=st.integers(1, 70), cout=st.integers(1, 140), kh=st.integers(1, 5), kw=st.integers(1, 5),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       frames=st.tuples(st.integers(1, 2), st.integers(1, 3)), bound=st.integers(1, 127),
       max_w=st.sampled_from([1, 7, 127]), nmax=st.sampled_from([None, 1, 3]), density=st.floats(0.0, 1.0),
       epilogue=st.none() | st.tuples(st.integers(-9, 6), st.booleans(), st.integers(1, 4)), seed=st.integers(0, 2 ** 16))
def test_event_conv_equals_the_exact_sum(cin, cout, kh, kw, stride, padding, dilation, hw, frames, bound, max_w,
                                         nmax, density, epilogue, seed):
    """Channel counts across the 32-channel masks and 64-channel blocks, every geometry, all seven bit planes,
    the int16 partial sums widened after the proven row count or (a smaller nmax is as exact) every row, and
    the synapse's exponent and bias applied in the kernel (the integer semantics' ``exp_shift`` + bias·lw)."""
    rng = np.random.default_rng(seed)
    node = conv_node(cin, cout, kh, kw, stride, padding, dilation, hw,
                     rng.integers(-max_w, max_w + 1, size=(cout, cin, kh, kw)))
    assume(node.shape[1] >= 1 and node.shape[2] >= 1)
    conv = EventConv(node)
    assume(conv.exact(bound))
    assert conv.nmax == 32767 // max(int(np.abs(node.weight).max()), 1)
    conv.nmax = nmax or conv.nmax
    x = spikes(rng, (*frames, cin, *hw), bound, density)
    layout = channels_last(x) if rng.random() < 0.5 else x
    want = exact_conv(x, node)
    if epilogue is not None:
        e, with_bias, lw = epilogue
        bias = torch.as_tensor(rng.integers(-5000, 5000, size=cout)) if with_bias else None
        want = torch.as_tensor(semantics.exp_shift(want.numpy(), e))
        want = want + (bias.reshape(-1, 1, 1) * lw if with_bias else 0)
        assume(want.numel() == 0 or int(want.abs().max()) <= 2 ** 31 - 1)
        epilogue = (e, bias, lw)
    got = conv(layout, bound, None, epilogue)
    assert got.dtype == torch.int32 and got.shape == (*frames, *node.shape)
    assert torch.equal(got.to(torch.int64), want)


@needs_ext
@pytest.mark.parametrize("cin, cout, hw, k, stride, padding", [
    (64, 64, 32, 3, 1, 1), (64, 128, 32, 3, 2, 1), (64, 128, 32, 1, 2, 0), (128, 128, 16, 3, 1, 1),
    (128, 256, 16, 3, 2, 1), (256, 256, 8, 3, 1, 1), (256, 512, 8, 3, 2, 1), (512, 512, 4, 3, 1, 1)])
def test_event_conv_on_every_resnet18_layer_shape(cin, cout, hw, k, stride, padding):
    """ResNet-18's layer shapes at its measured input density (22–34 %, window sums of two steps: 0…4)."""
    rng = np.random.default_rng(cin + cout + hw)
    node = conv_node(cin, cout, k, k, (stride, stride), (padding, padding), (1, 1), (hw, hw),
                     rng.integers(-127, 128, size=(cout, cin, k, k)))
    x = channels_last(spikes(rng, (2, 2, cin, hw, hw), 4, 0.3))
    assert torch.equal(EventConv(node)(x, 4).to(torch.int64), exact_conv(x, node))


@needs_ext
def test_the_event_limit_counts_bit_plane_events():
    """More events than the limit: None; a count with k bits set is k events (3 = 0b11 is two)."""
    rng = np.random.default_rng(1)
    node = conv_node(40, 70, 3, 3, (1, 1), (1, 1), (1, 1), (5, 5), rng.integers(-127, 128, size=(70, 40, 3, 3)))
    x = spikes(rng, (1, 2, 40, 5, 5), 7, 0.4)
    events = int(sum(((x.to(torch.int64) >> q) & 1).sum() for q in range(3)))
    conv = EventConv(node)
    assert conv(x, 7, max_events=events - 1) is None
    assert torch.equal(conv(x, 7, max_events=events).to(torch.int64), exact_conv(x, node))
    assert conv(torch.zeros_like(x), 7, max_events=0).abs().sum() == 0


def test_what_the_event_conv_refuses():
    """Inputs it cannot hold (0 or above int8), int32 partial sums that could wrap, weights beyond int8, groups."""
    rng = np.random.default_rng(2)
    node = conv_node(8, 4, 3, 3, (1, 1), (1, 1), (1, 1), (4, 4), rng.integers(-127, 128, size=(4, 8, 3, 3)))
    conv = EventConv(node)
    assert conv.exact(1) and conv.exact(127) and not conv.exact(0) and not conv.exact(128)
    wide = np.full((1, 16384, 3, 3), -127)                 # Σ|w| = 18.7e6: counts of 127 could wrap int32
    big = EventConv(conv_node(16384, 1, 3, 3, (1, 1), (1, 1), (1, 1), (3, 3), wide))
    assert big.exact(114) and not big.exact(115)
    assert EventConv.eligible(conv_node(8, 4, 3, 3, (1, 1), (1, 1), (1, 1), (4, 4), np.full((4, 8, 3, 3), -127)))
    assert not EventConv.eligible(conv_node(8, 4, 3, 3, (1, 1), (1, 1), (1, 1), (4, 4), np.full((4, 8, 3, 3), 128)))
    grouped = conv_node(8, 4, 3, 3, (1, 1), (1, 1), (1, 1), (4, 4), rng.integers(-9, 9, size=(4, 4, 3, 3)))
    grouped.groups = 2
    assert EventConv.eligible(node) and not EventConv.eligible(grouped)


def _network(seed):
    from lmhtc.compiler.frontends import trace_to_ir
    from lmhtc.compiler.passes.quantize import QuantConfig, quantize
    from lmhtc.compiler.pipeline import compile_graphs
    from nets import DownsampleNet, TinyResNet, randomize

    return [quantize(compile_graphs(trace_to_ir(randomize(m, seed), (2, 8, 8)))["compiled"], QuantConfig())
            for m in (TinyResNet(2, 2), DownsampleNet(2, 2))]


def _assert_reference(r, ref):
    assert np.array_equal(r.outputs_int, ref["outputs_int"]) and np.array_equal(r.logits_int, ref["logits_int"])
    for i, name in enumerate(r.layer_names):
        assert np.array_equal(r.spike_counts[:, i], ref["spike_events"][name]), name
    for i, name in enumerate(r.synaptic_layer_names):
        assert np.array_equal(r.sops_by_layer_step[:, i], ref["sops"][name]), name


@needs_ext
@pytest.mark.parametrize("slow_gemm", [False, True])
def test_the_runtime_picks_the_event_conv_and_equals_the_reference(slow_gemm, monkeypatch):
    """``kernel="event"`` runs every spike-input conv as the C++ event kernel; ``auto`` runs the multi-tap ones
    with it first on int16-pair CPUs only (never the analog stem), and takes the next kernel above the crossover
    density; every run is the independent reference's, integer for integer."""
    from int_reference import reference_run
    from lmhtc.runtime import simulator
    from lmhtc.runtime.simulator import _program, run_int

    ran: list[str] = []
    call = EventConv.__call__

    def spy(self, *args, **kwargs):
        out = call(self, *args, **kwargs)
        if out is not None:
            ran.append(self.node.name)
        return out

    monkeypatch.setattr(EventConv, "__call__", spy)
    monkeypatch.setattr(simulator, "int16_pairs", lambda: slow_gemm)
    x = np.random.default_rng(6).normal(size=(5, 2, 8, 8)).astype(np.float32)
    crossover = simulator.EVENT_CROSSOVER
    for q in _network(6):
        prog = _program(q, "cpu")
        convs = [n.name for n in q.topo() if n.kind == "qconv2d" and n.name not in prog.analog]
        multi = [n for n in convs if prog.syn[n].event_conv.taps > 1]
        assert multi and all(prog.syn[n].event_first == slow_gemm for n in multi)
        ref = reference_run(q, x)
        for kernel, want in (("event", convs), ("auto", multi if slow_gemm else [])):
            ran.clear()
            r = run_int(q, x, batch_size=3, kernel=kernel, event_density=0.0)
            _assert_reference(r, ref)
            assert sorted(set(ran)) == sorted(want) and not set(ran) & set(prog.analog), kernel
            assert all(r.kernels[n]["event"] > 0 for n in want)
        monkeypatch.setattr(simulator, "EVENT_CROSSOVER", 0.0)     # any input with an event is above it
        ran.clear()
        r = run_int(q, x, batch_size=3, event_density=0.0)
        _assert_reference(r, ref)
        assert sum(r.kernels[n]["event"] for n in multi) < sum(sum(r.kernels[n].values()) for n in multi)
        monkeypatch.setattr(simulator, "EVENT_CROSSOVER", crossover)
