"""The fused T-GIM mix + neuron kernel (runtime/fused.py) is bit-identical to lmhtc.semantics and to the torch
kernels; without the extension (no compiler, LMHTC_FUSED=0, fused=False) the runtime gives the same integers."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import semantics_cases as cases
from lmhtc import semantics
from lmhtc.compiler.intir import QNeuron
from lmhtc.runtime import fused
from lmhtc.runtime.neuron import run_neuron
from lmhtc.runtime.simulator import _Current

FIELDS = ("outputs_int", "logits_int", "spike_counts", "saturation", "sops_by_layer_step", "macs")

needs_ext = pytest.mark.skipif(not fused.available(), reason=f"fused extension unavailable: {fused.build_error()}")


def qneuron(levels, leak, theta, v_init, leak_frac_bits=12, bits=24) -> QNeuron:
    return QNeuron("sn", ["mix"], threshold=np.asarray(theta, np.int64), levels=levels,
                   leak=np.asarray(leak, np.int64), v_init=np.asarray(v_init, np.int64),
                   leak_frac_bits=leak_frac_bits, membrane_bits=bits)


def reference(y: np.ndarray, omega: np.ndarray, f: int, rows: int, front: bool, node: QNeuron, c_axis: int = 1):
    """The definition: currents ``semantics.temporal_mix``, delivered per window, then ``neuron_step`` iterated.
    y [Win, N, ...] with channels on axis ``c_axis`` of a step; returns k [steps, N, ...], sat [N]."""
    cur = semantics.temporal_mix(y, omega, f)
    steps = len(node.leak)
    theta = node.threshold.reshape([-1 if d == c_axis else 1 for d in range(y.ndim - 1)])
    v = np.broadcast_to(node.v_init.reshape(theta.shape), y.shape[1:]).astype(np.int64)
    ks, sat = [], np.zeros(y.shape[1], np.int64)
    for t in range(steps):
        i_t = cur[t // rows] if (not front or t % rows == 0) else np.zeros_like(cur[0])
        v, k, clipped = semantics.neuron_step(v, i_t, int(node.leak[t]), node.leak_frac_bits, theta, node.levels,
                                              node.membrane_bits)
        ks.append(k)
        sat += clipped.reshape(len(sat), -1).sum(1)
    return np.stack(ks), sat


def prep_of(node: QNeuron, channels: int) -> fused.FusedNeuron:
    return fused.FusedNeuron(node, torch.as_tensor(node.threshold), torch.as_tensor(node.v_init), channels)


def run_fused(y: torch.Tensor, omega, f, rows, front, node, cur_bound=None):
    acc = int(np.abs(omega).sum(1).max()) * int(y.abs().max()) if y.numel() else 0
    bound = cur_bound if cur_bound is not None else (acc + ((1 << f) >> 1)) >> f
    return fused.mix_neuron(y, omega, f, acc, rows, front, prep_of(node, y.shape[2]), cur_bound=bound)


@needs_ext
@pytest.mark.parametrize("case", cases.NEURON)
def test_fused_neuron_on_the_shared_cases(case):
    """Identity mix (ω = I, F = 0): the kernel's neuron steps are semantics.neuron_step's, saturation included."""
    node = qneuron(case["levels"], case["leak"], case["theta"], case["v_init"], case["leak_frac_bits"],
                   case["membrane_bits"])
    steps = len(case["leak"])
    k_ref, sat_ref = cases.neuron_reference(case)
    for bound in (None, int(np.abs(case["current"]).max())):
        k, sat, csum = run_fused(torch.from_numpy(case["current"]), np.eye(steps, dtype=np.int64), 0, 1, False,
                                 node, bound)
        assert csum is None        # a flat [N, C] layer has no positions to sum over
        np.testing.assert_array_equal(k.numpy(), k_ref)
        np.testing.assert_array_equal(sat.numpy(), sat_ref)


@needs_ext
@pytest.mark.parametrize("y, omega, f", cases.MIX)
@pytest.mark.parametrize("levels, bits", [(1, 24), (3, 24), (2, 14)])
def test_fused_mix_on_the_shared_cases(y, omega, f, levels, bits):
    """The shared T-GIM cases feeding a neuron: the mix's rounding shift and the steps are the definition's."""
    steps = len(omega)
    rng = np.random.default_rng(steps * 31 + f)
    node = qneuron(levels, rng.integers(3000, 4500, steps), rng.integers(1, 3000, 6), rng.integers(-50, 50, 6),
                   bits=bits)
    k_ref, sat_ref = reference(y[:, None, :], omega, f, 1, False, node)
    k, sat, _ = run_fused(torch.from_numpy(y[:, None, :].copy()), omega, f, 1, False, node)
    np.testing.assert_array_equal(k.numpy(), k_ref)
    np.testing.assert_array_equal(sat.numpy(), sat_ref)


@needs_ext
@settings(max_examples=60, deadline=None)
@given(levels=st.integers(1, 4), windows=st.sampled_from([(4, 1, False), (2, 2, False), (2, 2, True), (1, 4, False)]),
       bits=st.sampled_from([10, 16, 24, 40]), c=st.integers(1, 9), hw=st.integers(1, 4), batch=st.integers(1, 3),
       dtype=st.sampled_from([torch.int8, torch.int16, torch.int32, torch.int64]), channels_last=st.booleans(),
       flat=st.booleans(), scale=st.sampled_from([1, 30, 3000]), leak_frac_bits=st.sampled_from([0, 4, 12]),
       tight=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_fused_kernel_equals_the_definition_and_the_torch_kernels(levels, windows, bits, c, hw, batch, dtype,
                                                                  channels_last, flat, scale, leak_frac_bits, tight,
                                                                  seed):
    """Any layout (NCHW, channels-last, flat), input width, window schedule (per step, one current per window at
    every step or at its first step, a static input), membrane width (clipping or not), loose or tight bounds."""
    rng = np.random.default_rng(seed)
    win, rows, front = windows
    steps = 4
    one = 1 << leak_frac_bits
    node = qneuron(levels, rng.integers(max(1, one // 2), 2 * one + 1, steps), rng.integers(1, 4 * scale + 2, c),
                   rng.integers(-scale, scale + 1, c), leak_frac_bits, bits)
    lim = {torch.int8: 127, torch.int16: 2000, torch.int32: 200000, torch.int64: 200000}[dtype]
    lim = min(lim, 40 * scale)
    shape = (win, batch, c) if flat else (win, batch, c, hw, hw)
    y = torch.as_tensor(rng.integers(-lim, lim + 1, size=shape), dtype=dtype)
    if channels_last and not flat:
        y = y.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    f = int(rng.integers(0, 13))
    omega = rng.integers(-(1 << f) - 3, 2 * (1 << f) + 3, size=(steps // rows, win))
    k_ref, sat_ref = reference(y.numpy(), omega, f, rows, front, node)
    cur = _Current(y, omega, f, int(np.abs(omega).sum(1).max()) * lim, 0)
    cur.bound = (cur.acc_bound + ((1 << f) >> 1)) >> f
    k, sat, csum = run_fused(y, omega, f, rows, front, node,
                             int(np.abs(semantics.temporal_mix(y.numpy(), omega, f)).max()) if tight else cur.bound)
    np.testing.assert_array_equal(k.numpy(), k_ref)
    np.testing.assert_array_equal(sat.numpy(), sat_ref)
    if csum is not None:
        assert torch.equal(csum, k.sum(2, dtype=torch.int32))
    k2, sat2 = run_neuron(cur.materialize(), node, rows, front, torch.as_tensor(node.threshold),
                          torch.as_tensor(node.v_init), cur_bound=cur.bound)
    assert torch.equal(k2.to(torch.int64), k.to(torch.int64)) and torch.equal(sat2, sat)


@needs_ext
@pytest.mark.parametrize("c, hw", [(64, 32), (128, 16), (256, 8), (512, 4)])
def test_fused_kernel_on_every_resnet18_layer_shape(c, hw):
    """ResNet-18's neuron layers as the runtime meets them: channels-last int64 conv sums, two windows of
    L = 2 with the window's current at its first step (the exact schedule), int32 membranes."""
    rng = np.random.default_rng(c)
    node = qneuron(2, [4110, 4096, 4110, 4096], rng.integers(2000, 9000, c), np.zeros(c, np.int64))
    y = torch.as_tensor(rng.integers(-20000, 20000, size=(2, 3, hw, hw, c))).permute(0, 1, 4, 2, 3)
    omega = np.array([[2052, 2054], [2039, 2060]])
    k_ref, sat_ref = reference(y.numpy(), omega, 12, 2, True, node)
    k, sat, csum = run_fused(y, omega, 12, 2, True, node)
    np.testing.assert_array_equal(k.numpy(), k_ref)
    assert sat.tolist() == sat_ref.tolist() == [0, 0, 0]
    assert k.is_contiguous(memory_format=torch.channels_last) or k.permute(0, 1, 3, 4, 2).is_contiguous()
    assert torch.equal(csum, k.sum(2, dtype=torch.int32))


def small_nets(schedule):
    from lmhtc.compiler.frontends import trace_to_ir
    from lmhtc.compiler.passes.quantize import QuantConfig, quantize
    from lmhtc.compiler.pipeline import compile_graphs
    from nets import DownsampleNet, StridedNet, TinyResNet, randomize

    for i, model in enumerate((randomize(TinyResNet(2, 2), 3), randomize(StridedNet(4, 2), 3),
                               randomize(DownsampleNet(2, 2), 4))):
        yield quantize(compile_graphs(trace_to_ir(model, (2, 8, 8)), schedule=schedule)["compiled"], QuantConfig())


@needs_ext
@pytest.mark.parametrize("schedule", ["exact", "uniform"])
def test_fused_run_is_bit_identical_to_the_torch_path(schedule, monkeypatch):
    from lmhtc.runtime.simulator import run_int

    calls = []
    real = fused.mix_neuron
    monkeypatch.setattr(fused, "mix_neuron", lambda *a, **k: calls.append(1) or real(*a, **k))
    for q in small_nets(schedule):
        x = np.random.default_rng(9).normal(size=(5, 2, 8, 8)).astype(np.float32)
        calls.clear()
        a = run_int(q, x, batch_size=3)
        assert calls, "the fused kernel ran"
        calls.clear()
        b = run_int(q, x, batch_size=3, fused=False)
        assert not calls
        for field in FIELDS:
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        monkeypatch.setenv("LMHTC_FUSED", "0")
        c = run_int(q, x, batch_size=3)
        monkeypatch.delenv("LMHTC_FUSED")
        assert not calls and all(np.array_equal(getattr(a, f), getattr(c, f)) for f in FIELDS)


def test_a_failed_build_falls_back_to_the_torch_kernels(monkeypatch):
    """No compiler (the build raises): ``available()`` is false, the reason is kept, and runs give the same
    integers as the torch kernels."""
    from torch.utils import cpp_extension

    from lmhtc.runtime.simulator import run_int

    q = next(small_nets("exact"))
    x = np.random.default_rng(2).normal(size=(3, 2, 8, 8)).astype(np.float32)
    want = run_int(q, x, fused=False)
    monkeypatch.setattr(fused, "_state", {})

    def no_compiler(*args, **kwargs):
        raise OSError("no C++ compiler")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    assert not fused.available() and "no C++ compiler" in fused.build_error()
    got = run_int(q, x)
    for field in FIELDS:
        assert np.array_equal(getattr(want, field), getattr(got, field)), field


def test_the_build_name_follows_the_source(monkeypatch, tmp_path):
    src = tmp_path / "k.cpp"
    src.write_text("// a\n")
    monkeypatch.setattr(fused, "SOURCES", (*fused.SOURCES, src))
    a = fused.build_name()
    src.write_text("// b\n")
    b = fused.build_name()
    assert b != a and a.startswith("lmhtc_fused_")
    monkeypatch.setattr(fused, "CSRC", tmp_path)        # the same sources in another checkout: another name
    assert fused.build_name() != b


@needs_ext
@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from([torch.float32, torch.int8, torch.int16, torch.int32]), e=st.integers(-9, 7),
       c=st.integers(1, 7), hw=st.integers(1, 4), lw=st.integers(1, 3), channels_last=st.booleans(),
       flat=st.booleans(), with_scale=st.booleans(), with_bias=st.booleans(), wide=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_affine_shift_is_the_synapse_epilogue(dtype, e, c, hw, lw, channels_last, flat, with_scale, with_bias, wide,
                                              seed):
    """``e(x·scale, E) + bias·lw`` in one pass equals the torch epilogue (semantics.exp_shift, then the bias)."""
    rng = np.random.default_rng(seed)
    lim = {torch.float32: 2 ** 24 - 1, torch.int8: 127, torch.int16: 30000, torch.int32: 2 ** 20}[dtype]
    if with_scale or e > 0:
        lim = min(lim, 2 ** 12)
    shape = (2, 3, c) if flat else (2, 3, c, hw, hw)
    xi = rng.integers(-lim, lim + 1, size=shape)
    x = torch.as_tensor(xi).to(dtype)
    if channels_last and not flat:
        x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    scale = torch.as_tensor(rng.integers(-127, 128, c)) if with_scale else None
    bias = torch.as_tensor(rng.integers(-2 ** 20, 2 ** 20, c)) if with_bias else None
    per_c = (-1,) + (1,) * (len(shape) - 3)
    want = xi * (scale.numpy().reshape(per_c) if with_scale else 1)
    want = semantics.exp_shift(want, e) + (bias.numpy().reshape(per_c) * lw if with_bias else 0)
    out_dtype = torch.int64 if wide else torch.int32
    got = fused.affine_shift(x, scale, bias, lw, e, out_dtype)
    assert got.dtype == out_dtype and got.stride() == x.stride()
    np.testing.assert_array_equal(got.numpy(), want)


def test_the_pinned_ninja_is_found_without_an_activated_environment(monkeypatch):
    """torch's builder runs ``ninja`` from PATH; when PATH lacks it (``.venv/bin/lmhtc`` run directly), the
    pinned ninja package's directory is put in front."""
    import shutil

    import ninja

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    fused._ninja_on_path()
    assert os.environ["PATH"].split(os.pathsep)[0] == ninja.BIN_DIR
