"""Low-bit lowering methods (issue 20): bias correction, scale search, threshold-aware rounding.

Each method changes integer values only: the runtime stays bit-identical to the plain reference and
the ONNX / Lava tests (test_onnx_int.py, test_lava.py) run on the default method's integers.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.executor import run_float
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.intir import QConv2d
from lmhtc.compiler.passes.calibrate import Near
from lmhtc.compiler.passes.lowbit import (ALPHAS, bias_correction, bias_response, quantize_mantissa, search_scales,
                                          threshold_aware)
from lmhtc.compiler.passes.quantize import METHODS, QuantConfig, quantize
from lmhtc.compiler.pipeline import compile_graphs
from lmhtc.runtime.simulator import run_int
from nets import TinyResNet, randomize


def _weighted_error(w, imp, scale, qmax):
    return (((quantize_mantissa(w, scale, qmax) * scale[:, None] - w) ** 2) * imp).sum(axis=1)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 16), bits=st.integers(2, 8), n=st.integers(1, 64), data_aware=st.booleans())
def test_scale_search_is_never_worse_than_maxabs(seed, bits, n, data_aware):
    rng = np.random.default_rng(seed)
    w = rng.standard_t(3, size=(6, n))
    imp = rng.uniform(0, 2, size=(6, n)) if data_aware else np.ones((6, n))
    qmax = 2 ** (bits - 1) - 1
    peak = np.abs(w).max(axis=1)
    alpha = search_scales(peak, [(w, imp)], qmax)
    assert np.all((alpha > 0) & (alpha <= 1)) and set(alpha) <= set(ALPHAS)
    best = _weighted_error(w, imp, alpha * peak / qmax, qmax)
    maxabs = _weighted_error(w, imp, peak / qmax, qmax)
    assert np.all(best <= maxabs + 1e-12)
    for a in ALPHAS:      # and it is the grid's minimum
        assert np.all(best <= _weighted_error(w, imp, a * peak / qmax, qmax) + 1e-9)


def test_scale_search_clips_heavy_tailed_weights_at_4_bits():
    w = np.random.default_rng(0).standard_t(3, size=(16, 512))
    peak = np.abs(w).max(axis=1)
    alpha = search_scales(peak, [(w, np.ones_like(w))], 7)
    assert alpha.max() < 1.0      # clipping pays on every channel
    assert _weighted_error(w, 1, alpha * peak / 7, 7).sum() < 0.8 * _weighted_error(w, 1, peak / 7, 7).sum()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 16), stride=st.integers(1, 2), padding=st.integers(0, 2), groups=st.sampled_from([1, 2]))
def test_bias_correction_is_the_mean_output_error(seed, stride, padding, groups):
    """E[Δ·x] from the mean input map equals the mean over samples and positions of Δ * x (zero padding too)."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(0.7, size=(20, 4, 7, 7)).astype(np.float64)
    delta = rng.normal(size=(6, 4 // groups, 3, 3))
    geo = dict(stride=(stride, stride), padding=(padding, padding), dilation=(1, 1), groups=groups)
    direct = F.conv2d(torch.as_tensor(x), torch.as_tensor(delta), None, **geo).mean(dim=(0, 2, 3)).numpy()
    np.testing.assert_allclose(bias_correction("conv", delta, x.mean(axis=0), geo), direct, rtol=1e-10, atol=1e-12)
    d2 = rng.normal(size=(5, 4 * 49))
    np.testing.assert_allclose(bias_correction("linear", d2, x.reshape(20, -1).mean(0)),
                               (x.reshape(20, -1) @ d2.T).mean(0), rtol=1e-10, atol=1e-12)


def _tiny(seed, bits, method, calib):
    model = randomize(TinyResNet(2, 2, channels=6), seed)
    graph = compile_graphs(trace_to_ir(model, (2, 8, 8)))["compiled"]
    return graph, quantize(graph, QuantConfig(weight_bits=bits, method=method), calib=calib)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stem_mean_preactivation_error_is_zero_after_bias_correction(seed):
    """On the calibration data the stem's integer synaptic sum (runtime, exact) minus the float one has a mean
    of at most half a membrane unit per channel (the bias's own rounding) with bias correction."""
    calib = np.random.default_rng(seed).normal(0.5, 0.5, size=(64, 2, 8, 8)).astype(np.float32)
    errs, bounds = {}, {}
    for method in ("maxabs", "bias"):
        graph, q = _tiny(seed, 4, method, calib)
        stem = next(n for n in q.topo() if isinstance(n, QConv2d))
        neuron = graph.consumers(graph.consumers(stem.name)[0].name)[0]
        ref = run_float(graph, calib, capture={stem.name}, dtype=torch.float64).captured[stem.name]
        got = run_int(q, calib, capture={stem.name}).captured[stem.name].astype(np.float64)
        theta_int = q.node(neuron.name).threshold.astype(np.float64)
        mu = neuron.threshold / theta_int      # the membrane unit, to within Θ's rounding (0.5/Θ relative)
        err = (got * mu.reshape(-1, 1, 1) - ref).mean(axis=(0, 1, 3, 4)) / mu
        errs[method] = np.abs(err)
        bounds[method] = 0.5 + np.abs(got.mean(axis=(0, 1, 3, 4))) * 0.5 / theta_int + 1e-6
    assert np.all(errs["bias"] <= bounds["bias"]), (errs["bias"], bounds["bias"])
    assert np.any(errs["maxabs"] > bounds["maxabs"])


def test_threshold_aware_keeps_near_membranes_on_their_side():
    """Channel 0: 100 membranes just above θ, which nearest rounding of Θ would push below; channel 1: no record."""
    theta = np.array([1000.4, 500.0])
    bias = np.array([3.4, 7.6])
    vinit = np.array([0.0, 0.0])
    near = Near(channel=np.zeros(100, np.int64), step=np.zeros(100, np.int64), level=np.ones(100, np.int64),
                prior=np.zeros(100, np.int64), margin=np.full(100, 0.2 / 1000.4))
    rb, rv = bias_response(np.eye(2), np.ones(2), 2)
    b, th, vi, kept = threshold_aware(near, theta, bias, vinit, rb, rv)
    # nearest (b=3, Θ=1000) moves v by −0.4 + 0.4: margin 0.2 → 0.2 − 0.4 + 0.4 = 0.2 stays; check the rule itself
    m = 0.2 + (b[0] - bias[0]) * rb[0] - (th[0] - theta[0])
    assert m >= 0 and kept[0] == 100
    assert (b[1], th[1], vi[1]) == (8, 500, 0)          # no record: round to nearest
    # a record that nearest rounding would flip: margin 0.1, bias 3.4 → floor −0.4 flips it unless Θ/bias move
    near2 = Near(near.channel, near.step, near.level, near.prior, np.full(100, 0.1 / 1000.4))
    b2, th2, _, kept2 = threshold_aware(near2, np.array([1000.0, 500.0]), bias, vinit, rb, rv)
    assert kept2[0] == 100 and b2[0] == 4


def test_methods_keep_the_runtime_bit_identical_and_differ_in_values():
    calib = np.random.default_rng(5).normal(0.5, 0.5, size=(32, 2, 8, 8)).astype(np.float32)
    x = np.random.default_rng(6).normal(0.5, 0.5, size=(6, 2, 8, 8)).astype(np.float32)
    weights = {}
    assert QuantConfig(weight_bits=4).lowering == "mse-ta" and QuantConfig(weight_bits=8).lowering == "bias"
    for method in METHODS:
        _, q = _tiny(3, 4, method, calib)
        assert q.meta["quantization"]["method"] == method
        a, b = run_int(q, x, kernel="dense"), run_int(q, x, kernel="event")
        assert np.array_equal(a.outputs_int, b.outputs_int)
        weights[method] = {n.name: (n.weight.copy(), None if n.bias is None else n.bias.copy())
                           for n in q.topo() if isinstance(n, QConv2d)}
    assert any(not np.array_equal(weights["maxabs"][k][1], weights["bias"][k][1]) for k in weights["maxabs"])
    assert any(not np.array_equal(weights["maxabs"][k][0], weights["mse"][k][0]) for k in weights["maxabs"])


def test_bad_method_and_layer_names_are_refused():
    graph = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 0), (2, 8, 8)))["compiled"]
    with pytest.raises(LmhtcError, match="--quant-method"):
        quantize(graph, QuantConfig(method="adaround"))
    with pytest.raises(LmhtcError, match="'nosuch'"):
        quantize(graph, QuantConfig(layer_bits=(("nosuch", 4),)))


def test_per_layer_widths_are_recorded_and_lava_names_a_wide_layer():
    from lmhtc.targets.lava.errors import LavaExportError
    from lmhtc.targets.lava.lowering import lower_to_lava

    graph = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 0), (2, 8, 8)))["compiled"]
    wide = graph.neuron_layers()[1].name
    q = quantize(graph, QuantConfig(weight_bits=4, layer_bits=((wide, 12),)))
    feeding = {n.name: n.weight_bits for n in q.topo() if isinstance(n, QConv2d)}
    assert sorted(feeding.values()) == [4, 12]
    assert q.meta["quantization"]["layer_bits"] == {wide: 12}
    wide_node = next(k for k, b in feeding.items() if b == 12)
    with pytest.raises(LavaExportError, match=wide_node):
        lower_to_lava(q)
    lower_to_lava(quantize(graph, QuantConfig(weight_bits=4, layer_bits=((wide, 8),))))   # 8 bits: accepted
