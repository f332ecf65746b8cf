"""The fast runtime kernels are bit-identical to the integer semantics: int8 products, int32 neuron loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from int_reference import neuron as ref_neuron
from lmhtc.compiler.intir import QConv2d, QLinear, QNeuron
from lmhtc.runtime import int8 as int8_mod
from lmhtc.runtime.int8 import INT16_MAX, Int8Product, OneDnnConv, int16_pairs, int_mm_exact, onednn_available
from lmhtc.runtime.neuron import _loop64, run_neuron

FIELDS = ("outputs_int", "logits_int", "spike_counts", "saturation", "sops_by_layer_step", "macs")


def conv_node(cin, cout, k, stride, padding, dilation, hw, rng) -> QConv2d:
    ho = (hw + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    w = rng.integers(-127, 128, size=(cout, cin, k, k)).astype(np.int32)
    return QConv2d("c", ["x"], shape=(cout, ho, ho), weight=w, bias=None, shift=0, stride=(stride, stride),
                   padding=(padding, padding), dilation=(dilation, dilation), groups=1)


NEEDS_EXACT_INT_MM = pytest.mark.skipif(not int_mm_exact("cpu"), reason="this CPU's _int_mm is not exact on "
                                     "full-range operands (the runtime does not use it here)")


def exact_conv(x: torch.Tensor, node: QConv2d) -> torch.Tensor:
    """Σ w·x in float64 (exact: every sum here is far below 2^53)."""
    y = F.conv2d(x.to(torch.float64), torch.as_tensor(node.weight, dtype=torch.float64), None, node.stride,
                 node.padding, node.dilation)
    return y.round().to(torch.int64)


@NEEDS_EXACT_INT_MM
@settings(max_examples=40, deadline=None)
@given(cin=st.integers(1, 9), cout=st.integers(1, 12), k=st.sampled_from([1, 2, 3]), stride=st.integers(1, 2),
       padding=st.integers(0, 2), dilation=st.integers(1, 2), hw=st.integers(4, 9), signed=st.booleans(),
       seed=st.integers(0, 2 ** 16), channels_last=st.booleans())
def test_int8_conv_equals_the_exact_sum(cin, cout, k, stride, padding, dilation, hw, signed, seed, channels_last):
    assume(hw + 2 * padding > dilation * (k - 1))
    rng = np.random.default_rng(seed)
    node = conv_node(cin, cout, k, stride, padding, dilation, hw, rng)
    lo, hi = (-127, 127) if signed else (0, 4)       # analog int8 inputs or spike window sums
    x = torch.as_tensor(rng.integers(lo, hi + 1, size=(2, 3, cin, hw, hw)), dtype=torch.int8)
    if channels_last:
        x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    got = Int8Product(node, "cpu")(x)
    assert got.dtype == torch.int32
    assert torch.equal(got.to(torch.int64), exact_conv(x.reshape(6, cin, hw, hw), node).reshape(got.shape))


@pytest.mark.skipif(not onednn_available("cpu"), reason="this torch build has no oneDNN int8 convolution")
@settings(max_examples=40, deadline=None)
@given(cin=st.integers(1, 9), cout=st.integers(1, 12), k=st.sampled_from([1, 2, 3]), stride=st.integers(1, 2),
       padding=st.integers(0, 2), dilation=st.integers(1, 2), hw=st.integers(4, 9), signed=st.booleans(),
       seed=st.integers(0, 2 ** 16), batch=st.integers(1, 4))
def test_onednn_int8_conv_equals_the_exact_sum(cin, cout, k, stride, padding, dilation, hw, signed, seed, batch):
    """Signed analog inputs (zero point 128) and spike counts (zero point 0), any batch with one prepack."""
    assume(hw + 2 * padding > dilation * (k - 1))
    rng = np.random.default_rng(seed)
    node = conv_node(cin, cout, k, stride, padding, dilation, hw, rng)
    lo, hi = (-127, 127) if signed else (0, 4)
    x = torch.as_tensor(rng.integers(lo, hi + 1, size=(2, batch, cin, hw, hw)), dtype=torch.int8)
    conv = OneDnnConv(node, "cpu")
    if padding > dilation * (k - 1):           # a geometry oneDNN gets wrong: refused, the runtime uses im2col
        assert not conv.exact(hi, signed)
        return
    assert not conv.exact(300, False)
    # exact wherever the CPU sums products into int32 (VNNI/AMX); with int16 pairs, exactly where no pair of
    # uint8 operands × weights can leave int16 (signed inputs enter as x + 128 ≤ 255)
    assert conv.exact(hi, signed) == (not int16_pairs() or (255 if signed else hi) * conv.pair_w <= INT16_MAX)
    if not conv.exact(hi, signed):
        return
    got = conv(x, signed)
    assert got.dtype == torch.int32
    assert torch.equal(got.to(torch.int64), exact_conv(x.reshape(2 * batch, cin, hw, hw), node).reshape(got.shape))


@pytest.mark.parametrize("cin, cout, hw, k, stride, padding", [
    (3, 64, 32, 3, 1, 1), (64, 64, 32, 3, 1, 1), (64, 128, 32, 3, 2, 1), (64, 128, 32, 1, 2, 0),
    (128, 256, 16, 3, 2, 1), (256, 256, 8, 3, 1, 1), (256, 512, 8, 1, 2, 0), (512, 512, 4, 3, 1, 1)])
@NEEDS_EXACT_INT_MM
def test_int8_conv_on_every_resnet18_layer_shape(cin, cout, hw, k, stride, padding):
    rng = np.random.default_rng(cin + cout)
    node = conv_node(cin, cout, k, stride, padding, 1, hw, rng)
    x = torch.as_tensor((rng.random((2, 2, cin, hw, hw)) < 0.2) * rng.integers(1, 3, (2, 2, cin, hw, hw)),
                        dtype=torch.int8)
    want = exact_conv(x.reshape(4, cin, hw, hw), node)
    got = Int8Product(node, "cpu")(x)
    assert torch.equal(got.to(torch.int64), want.reshape(got.shape))
    if onednn_available("cpu"):
        assert torch.equal(OneDnnConv(node, "cpu")(x, False).to(torch.int64), want.reshape(got.shape))


@NEEDS_EXACT_INT_MM
def test_int8_linear_and_eligibility():
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, size=(10, 512)).astype(np.int32)
    node = QLinear("fc", ["x"], shape=(10,), weight=w, bias=None, shift=0)
    x = torch.as_tensor(rng.integers(0, 17, size=(4, 3, 512)), dtype=torch.int8)
    assert torch.equal(Int8Product(node, "cpu")(x).to(torch.int64), x.to(torch.int64) @ torch.as_tensor(w.T).long())
    assert Int8Product.eligible(node)
    assert not Int8Product.eligible(QLinear("wide", ["x"], shape=(1,), weight=np.array([[128]], np.int32)))
    prod = Int8Product(node, "cpu")
    assert prod.exact(127, 2 ** 31 - 1)
    assert not prod.exact(128, 1) and not prod.exact(1, 2 ** 31)


@pytest.mark.skipif(not onednn_available("cpu"), reason="this torch build has no oneDNN int8 convolution")
@pytest.mark.parametrize("bound, signed", [(129, False), (130, False), (255, False), (127, True)])
def test_onednn_conv_is_refused_where_int16_pairs_could_saturate(bound, signed, monkeypatch):
    """Weights of one sign at ±127 put every u8 × s8 pair at 254 × the uint8 operand: on a CPU that adds pairs
    in int16 the conv is refused from an operand of 130 on (254 · 130 > 2^15 − 1); where the conv is claimed
    exact it returns the exact sums on the worst-case inputs, on whichever CPU runs the test."""
    rng = np.random.default_rng(bound)
    node = conv_node(16, 8, 3, 1, 1, 1, 6, rng)
    node.weight[:] = 127
    conv = OneDnnConv(node, "cpu")
    assert conv.pair_w == 254
    monkeypatch.setattr(int8_mod, "int16_pairs", lambda: True)
    assert conv.exact(bound, signed) == (not signed and bound <= 129)
    monkeypatch.setattr(int8_mod, "int16_pairs", lambda: False)
    assert conv.exact(bound, signed)
    monkeypatch.undo()
    # the worst case: every operand at its largest uint8 encoding (signed 127 enters as 255)
    x = torch.full((1, 2, 16, 6, 6), 127 if signed else bound, dtype=torch.int8 if signed else torch.int64)
    if conv.exact(bound, signed):
        got = conv(x, signed).to(torch.int64)
        assert torch.equal(got, exact_conv(x.reshape(2, 16, 6, 6), node).reshape(got.shape))
    else:
        assert int16_pairs()


def neuron_node(levels, leak, theta, v_init, bits) -> QNeuron:
    return QNeuron("sn", ["mix"], threshold=np.asarray(theta, np.int64), levels=levels,
                   leak=np.asarray(leak, np.int64), v_init=np.asarray(v_init, np.int64), leak_frac_bits=12,
                   membrane_bits=bits)


@settings(max_examples=60, deadline=None)
@given(levels=st.integers(1, 3), rows=st.sampled_from([1, 2]), front=st.booleans(), bits=st.sampled_from([12, 24]),
       leak=st.lists(st.integers(2000, 6200), min_size=4, max_size=4), scale=st.sampled_from([10, 1000, 300000]),
       seed=st.integers(0, 2 ** 16), tight=st.booleans())
def test_neuron_loop_equals_the_definition(levels, rows, front, bits, leak, scale, seed, tight):
    """Whichever loop runs (int32 without clip when proven, int64 with the clip otherwise), spikes and
    saturation events are the definition's."""
    rng = np.random.default_rng(seed)
    c, steps = 3, 4
    theta = rng.integers(1, 4 * scale + 2, size=c)
    v_init = rng.integers(-scale, scale + 1, size=c)
    node = neuron_node(levels, leak, theta, v_init, bits)
    cur = rng.integers(-2 * scale, 2 * scale + 1, size=(steps // rows, 5, c, 2, 2))
    per_step = np.repeat(cur, rows, axis=0)
    if front and rows > 1:
        per_step[np.arange(steps) % rows != 0] = 0
    k_ref, sat_ref = ref_neuron(per_step, node)
    bound = int(np.abs(cur).max()) if tight else None
    args = (torch.as_tensor(cur), node, rows, front and rows > 1, torch.as_tensor(theta), torch.as_tensor(v_init))
    k, sat = run_neuron(*args, cur_bound=bound)
    assert np.array_equal(k.numpy(), k_ref) and np.array_equal(sat.numpy(), sat_ref)
    k64, sat64 = _loop64(*args)
    assert np.array_equal(k64.numpy(), k_ref) and np.array_equal(sat64.numpy(), sat_ref)


def test_int32_loop_is_taken_when_proven_and_not_otherwise():
    node = neuron_node(1, [4123, 4096], [50], [0], 24)
    cur = torch.full((2, 1, 1, 1, 1), 40, dtype=torch.int32)
    k, sat = run_neuron(cur, node, 1, False, torch.tensor([50]), torch.tensor([0]), cur_bound=40)
    assert k.dtype == torch.int8 and k.flatten().tolist() == [0, 1] and sat.tolist() == [0]
    small = neuron_node(1, [4096, 4096], [200], [0], 8)      # 8-bit membrane: 120 + 120 saturates at 127
    k, sat = run_neuron(torch.full((2, 1, 1, 1, 1), 120), small, 1, False, torch.tensor([200]), torch.tensor([0]),
                        cur_bound=120)
    assert k.sum() == 0 and sat.tolist() == [1]


@pytest.mark.parametrize("seed, schedule", [(0, "exact"), (1, "uniform")])
def test_int8_kernel_run_is_bit_identical_to_float_and_event_kernels(seed, schedule):
    from lmhtc.compiler.frontends import trace_to_ir
    from lmhtc.compiler.passes.quantize import QuantConfig, quantize
    from lmhtc.compiler.pipeline import compile_graphs
    from lmhtc.runtime.simulator import run_int
    from nets import StridedNet, TinyResNet, randomize

    for model in (randomize(TinyResNet(2, 2), seed), randomize(StridedNet(4, 2), seed)):
        q = quantize(compile_graphs(trace_to_ir(model, (2, 8, 8)), schedule=schedule)["compiled"], QuantConfig())
        x = np.random.default_rng(seed).normal(size=(5, 2, 8, 8)).astype(np.float32)
        runs = {k: run_int(q, x, kernel=k, batch_size=3) for k in ("int8", "dense", "event")}
        assert sum(v["int8"] for v in runs["int8"].kernels.values()) > 0
        assert all(v["int8"] == 0 for k in ("dense", "event") for v in runs[k].kernels.values())
        for kernel in ("dense", "event"):
            for field in FIELDS:
                assert np.array_equal(getattr(runs["int8"], field), getattr(runs[kernel], field)), (kernel, field)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("kernel", ["auto", "dense", "event"])
def test_cuda_run_is_bit_identical_to_cpu(kernel):
    from lmhtc.compiler.frontends import trace_to_ir
    from lmhtc.compiler.passes.quantize import QuantConfig, quantize
    from lmhtc.compiler.pipeline import compile_graphs
    from lmhtc.runtime.simulator import run_int
    from nets import StridedNet, TinyResNet, randomize

    for model in (randomize(TinyResNet(2, 2), 4), randomize(StridedNet(4, 2), 4)):
        q = quantize(compile_graphs(trace_to_ir(model, (2, 8, 8)))["compiled"], QuantConfig())
        x = np.random.default_rng(4).normal(size=(40, 2, 8, 8)).astype(np.float32)
        cpu, gpu = run_int(q, x, kernel=kernel), run_int(q, x, kernel=kernel, device="cuda")
        for field in FIELDS:
            assert np.array_equal(getattr(cpu, field), getattr(gpu, field)), field


def test_device_names_are_checked_with_one_line_errors(tmp_path):
    from conftest import assert_one_line_error, cli

    from lmhtc.compiler.errors import LmhtcError
    from lmhtc.runtime.device import resolve_device

    assert resolve_device("cpu") == "cpu"
    with pytest.raises(LmhtcError, match="not a device"):
        resolve_device("gpu0")
    with pytest.raises(LmhtcError, match="only cpu and cuda"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(LmhtcError, match="no CUDA device"):
            resolve_device("cuda")
    code, out = cli("simulate", tmp_path / "missing.lmhtc", "--inputs", tmp_path / "x.npz", "-o", tmp_path / "o.npz",
                    "--mode", "int", "--device", "gpu0")
    assert_one_line_error(code, out, "--device", "gpu0")
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("slow_gemm", [False, True])
def test_a_pointwise_conv_runs_as_the_int8_gemm_and_equals_the_reference(slow_gemm, monkeypatch):
    """A 1×1 strided shortcut takes ``_int_mm`` (not oneDNN's direct convolution) where the CPU has VNNI/AMX,
    oneDNN's convolution where it has not (``_int_mm`` is slow there), with the fused epilogue when the kernel
    builds, and the run is the independent reference's, integer for integer."""
    from int_reference import reference_run
    from lmhtc.compiler.frontends import trace_to_ir
    from lmhtc.compiler.passes.quantize import QuantConfig, quantize
    from lmhtc.compiler.pipeline import compile_graphs
    from lmhtc.runtime import simulator
    from lmhtc.runtime.simulator import _program, run_int
    from nets import DownsampleNet, randomize

    q = quantize(compile_graphs(trace_to_ir(randomize(DownsampleNet(2, 2), 4), (2, 8, 8)))["compiled"],
                 QuantConfig())
    (pointwise,) = [n for n in q.topo() if n.kind == "qconv2d" and tuple(n.weight.shape[2:]) == (1, 1)]
    monkeypatch.setattr(simulator, "int16_pairs", lambda: slow_gemm)
    syn = _program(q, "cpu").syn[pointwise.name]
    assert syn.slow_gemm == slow_gemm and syn.int8 is not None
    assert (syn.onednn is not None) == (slow_gemm and onednn_available("cpu"))
    x = np.random.default_rng(5).normal(size=(6, 2, 8, 8)).astype(np.float32)
    ref = reference_run(q, x)
    for fused, kernel in ((True, "int8"), (False, "int8"), (True, "auto")):
        r = run_int(q, x, batch_size=4, kernel=kernel, fused=fused)
        if kernel == "int8":
            assert r.kernels[pointwise.name]["int8"] > 0
        else:       # on either machine kind the 1×1 takes an int8 kernel (or events), never the float product
            assert r.kernels[pointwise.name]["dense"] == 0
        assert np.array_equal(r.outputs_int, ref["outputs_int"]) and np.array_equal(r.logits_int, ref["logits_int"])
        for i, name in enumerate(r.layer_names):
            assert np.array_equal(r.spike_counts[:, i], ref["spike_events"][name]), name
        for i, name in enumerate(r.synaptic_layer_names):
            assert np.array_equal(r.sops_by_layer_step[:, i], ref["sops"][name]), name


@pytest.mark.skipif(not onednn_available("cpu"), reason="this torch build has no oneDNN int8 convolution")
def test_int16_pairs_probe_runs_where_the_flags_claim_vnni(monkeypatch):
    """With the CPU flags claiming VNNI, the saturating probe decides: it answers False only where oneDNN
    returns the exact sums of 255 × ±127 everywhere (on a CPU without VNNI it must find the saturation)."""
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: True, raising=False)
    int16_pairs.cache_clear()
    try:
        claimed = int16_pairs()
    finally:
        int16_pairs.cache_clear()
    x = torch.full((1, 16, 4, 4), 255, dtype=torch.uint8)
    w = torch.full((8, 16, 3, 3), 127, dtype=torch.int8)
    exact = torch.equal(int8_mod._qconv(x, w, 0).double(), F.conv2d(x.double(), w.double(), padding=1))
    assert claimed or exact          # a saturation seen here ⇒ the probe reports int16 pairs
