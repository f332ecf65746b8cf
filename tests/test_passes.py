"""Passes: BN folding keeps outputs; reparameterization keeps window spike counts under Theorem 4.2."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lmhtc.compiler.exactness import exactness_report
from lmhtc.compiler.executor import run_float
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.ir import BatchNorm, Graph, Input, Linear, Neuron, Readout, TemporalMix, finalize
from lmhtc.compiler.passes import fold_batchnorm, reparameterize
from lmhtc.compiler.passes.reparameterize import ReparamError
from lmhtc.compiler.zoo import build_snn
from nets import TinyResNet, dyadic_images, randomize, theorem_net


@pytest.mark.parametrize("seed", [0, 1])
def test_bn_folding_keeps_outputs(seed):
    model = randomize(TinyResNet(2, 2), seed).double()
    graph = trace_to_ir(model, (2, 8, 8))
    folded = fold_batchnorm(graph)
    assert graph.nodes_of(BatchNorm) and not folded.nodes_of(BatchNorm)
    assert len(folded) == len(graph) - 2 and folded.meta["passes"] == ["fold_batchnorm"]
    x = np.random.default_rng(seed).normal(size=(8, 2, 8, 8))
    a = run_float(graph, x, dtype=torch.float64).outputs
    b = run_float(folded, x, dtype=torch.float64).outputs
    assert np.allclose(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5), (7, 4, 3, 3), (600, 512, 1, 1)])
def test_bn_folded_weights_are_the_one_float64_product_cast_once(shape, dtype, monkeypatch):
    """The blockwise fold gives float32(w·γ/σ) of one float64 product, bit for bit, for blocks smaller and
    larger than a row, float32 and float64 weights; the source graph's weight is not touched."""
    fold_module = importlib.import_module("lmhtc.compiler.passes.fold_batchnorm")
    monkeypatch.setattr(fold_module, "_BLOCK", 1000)     # several blocks, and rows longer than one block
    rng = np.random.default_rng(len(shape))
    w = rng.normal(size=shape).astype(dtype)
    scale = rng.uniform(0.1, 3.0, size=shape[0])
    before = w.copy()
    got = fold_module._scaled_rows(w.copy(), scale)
    want = np.multiply(w, scale.reshape(-1, *([1] * (w.ndim - 1))), dtype=np.float64).astype(np.float32)
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert np.array_equal(w, before)


def test_bn_folding_leaves_the_source_graph_alone():
    graph = trace_to_ir(randomize(TinyResNet(2, 2), 3), (2, 8, 8))
    weights = {n.name: n.weight.copy() for n in graph.topo() if hasattr(n, "weight") and n.weight is not None}
    fold_batchnorm(graph)
    assert weights and all(np.array_equal(graph.node(k).weight, v) for k, v in weights.items())


def test_reparameterization_structure():
    model = randomize(TinyResNet(2, 2), 3)
    g = fold_batchnorm(trace_to_ir(model, (2, 8, 8)))
    r = reparameterize(g, "uniform")
    assert r.steps == 4 and r.meta["reparameterized"] and r.meta["reparam_levels"] == 2
    for name in ("sn0", "sn1", "sn2"):
        old, new = g.node(name), r.node(name)
        assert new.levels == 1 and new.threshold == old.threshold and new.v_init == old.v_init
        assert new.leak.tolist() == [old.leak[0], 1.0, old.leak[1], 1.0]
        om, nm = g.node(f"{name}.tgim").omega, r.node(f"{name}.tgim").omega
        assert np.allclose(nm, np.kron(om, np.ones((2, 2))) / 2)
    # analog-fed neuron: input scale / L, offsets kept; spike-fed layers: offsets / L
    assert r.node("sn0").input_scale == g.node("sn0").input_scale / 2
    assert r.node("sn1").input_scale == g.node("sn1").input_scale
    assert np.array_equal(r.node("stem.0").bias, g.node("stem.0").bias)
    for layer in ("conv.0", "fc.0", "head.0"):
        assert np.allclose(r.node(layer).bias, g.node(layer).bias / 2)
        assert np.array_equal(r.node(layer).weight, g.node(layer).weight)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(levels=st.sampled_from([2, 4]), T=st.sampled_from([1, 2, 4]), seed=st.integers(0, 10_000))
def test_theorem_4_2_window_counts_equal_levels(levels, T, seed):
    """Random nets satisfying Theorem 4.2's conditions: every window's spike count equals the M-HT level."""
    model = theorem_net(levels, T, seed)
    g = fold_batchnorm(trace_to_ir(model, (2, 8, 8)))
    x = dyadic_images(4, seed=seed)
    assume(run_float(g, x).spike_counts.sum() > 0)   # not vacuous (hypothesis fails if this filters too much)
    report = exactness_report(g, reparameterize(g, "uniform"), x)
    assert report.fraction == 1.0, [(layer.layer, layer.fraction) for layer in report.layers]
    # and the whole network agrees: reparameterized logits × L equal the M-HT logits (dyadic → exact)
    assert report.mean_abs_dlogits == 0.0 and report.argmax_agreement == 1.0


def single_neuron_graph(omega, weight, leak, levels=2, threshold=1.0) -> Graph:
    steps = len(leak)
    g = Graph(steps=steps, meta={})
    g.add(Input("input", [], input_shape=(1,)))
    g.add(Linear("fc", ["input"], weight=np.array([[weight]], np.float32), bias=None))
    g.add(TemporalMix("mix", ["fc"], omega=np.asarray(omega, np.float64)))
    g.add(Neuron("sn", ["mix"], threshold=threshold, levels=levels, leak=np.asarray(leak, np.float64)))
    g.add(Readout("out", ["sn"]))
    return finalize(g)


def test_uniform_schedule_mismatch_outside_the_theorem_is_reported():
    """docs/design.md §2's example: v = 1.2 left over after a clipped window, next input −0.4:
    M-HT emits 0, the uniform-schedule LIF emits 1."""
    g = single_neuron_graph(omega=[[1.6, 0.0], [-0.2, 0.0]], weight=2.0, leak=[1.0, 1.0])
    x = np.ones((1, 1), np.float32)
    assert run_float(g, x).outputs[:, 0, 0].tolist() == [2.0, 0.0]        # levels 2, then 0
    r = reparameterize(g, "uniform")
    assert run_float(r, x).outputs[:, 0, 0].tolist() == [1.0, 1.0, 1.0, 0.0]   # window counts 2, 1
    report = exactness_report(g, r, x)
    (layer,) = report.layers
    assert (layer.pairs, layer.matching, layer.max_abs_diff) == (2, 1, 1)
    assert report.fraction == 0.5


def test_maxpool_between_neurons_is_refused_with_its_name():
    model = build_snn("resnet18-imagenet", 2, 2, 10, "direct", (3, 64, 64))
    g = fold_batchnorm(trace_to_ir(model, (3, 64, 64)))
    with pytest.raises(ReparamError, match="node 'maxpool.0' \\(maxpool2d\\) applies a non-linear operation to spikes"):
        reparameterize(g)


def test_mixed_levels_are_refused():
    g = single_neuron_graph([[1.0]], 1.0, [1.0])
    g.node("sn").levels = 2
    g.add(TemporalMix("mix2", ["sn"], omega=np.eye(1)))
    g.add(Neuron("sn2", ["mix2"], threshold=1.0, levels=4, leak=np.ones(1)))
    g.readout.inputs = ["sn2"]
    g.g.remove_edge("sn", "out")
    g.g.add_edge("sn2", "out")
    with pytest.raises(ReparamError, match="different level counts"):
        reparameterize(finalize(g))


def test_reparameterizing_twice_is_refused():
    r = reparameterize(single_neuron_graph([[1.0]], 1.0, [1.0]))
    with pytest.raises(ReparamError, match="already reparameterized"):
        reparameterize(r)
