"""Window schedules of the reparameterization: the front-loaded `exact` schedule is lossless in every case
(issue 9); the authors' `uniform` schedule only under Theorem 4.2's conditions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lmhtc.compiler.checkpoint import resolve_spec
from lmhtc.compiler.cli import app
from lmhtc.compiler.exactness import exactness_report
from lmhtc.compiler.executor import run_float
from lmhtc.compiler.frontends import checkpoint_to_ir, trace_to_ir
from lmhtc.compiler.ir import Graph, Input, Linear, Neuron, Readout, TemporalMix, finalize
from lmhtc.compiler.passes import fold_batchnorm, reparameterize
from lmhtc.compiler.passes.quantize import QuantConfig, quantize
from lmhtc.compiler.pipeline import compile_graphs
from conftest import HYBRID_RESNET20, RESNET18, agreement_stats
from int_reference import neuron as int_neuron
from nets import StridedNet, TinyResNet, randomize
from lmhtc.runtime.simulator import run_int


def violating_net(seed: int, levels: int, steps: int) -> Graph:
    """A two-layer vector net far outside Theorem 4.2: leaks up to 1.5, T-GIM with negative entries,
    inputs that clip windows and leave residuals ≥ θ; all values dyadic, so float64 is exact."""
    rng = np.random.default_rng(seed)
    dy = (lambda lo, hi, size, q=4: rng.integers(lo * q, hi * q + 1, size=size) / q)
    g = Graph(steps=steps, meta={})
    g.add(Input("input", [], input_shape=(4,)))
    sizes = [4, 6, 5]
    prev = "input"
    for i in range(2):
        g.add(Linear(f"fc{i}", [prev], weight=dy(-2, 2, (sizes[i + 1], sizes[i])).astype(np.float32),
                     bias=dy(-1, 1, sizes[i + 1]).astype(np.float32)))
        g.add(TemporalMix(f"mix{i}", [f"fc{i}"], omega=dy(-1, 2, (steps, steps))))
        g.add(Neuron(f"sn{i}", [f"mix{i}"], threshold=float(rng.choice([0.5, 1.0, 2.0])), levels=levels,
                     leak=rng.choice([0.5, 0.75, 1.0, 1.25, 1.5], size=steps), v_init=float(rng.choice([0.0, 0.5]))))
        prev = f"sn{i}"
    g.add(Linear("head", [prev], weight=dy(-2, 2, (3, sizes[-1])).astype(np.float32), bias=None))
    g.add(Readout("out", ["head"]))
    return finalize(g)


def dyadic_vectors(seed: int, n: int = 16) -> np.ndarray:
    return (np.random.default_rng(seed).integers(-16, 17, size=(n, 4)) / 4).astype(np.float32)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), levels=st.sampled_from([2, 4]), steps=st.sampled_from([2, 3, 4]))
def test_exact_schedule_is_lossless_outside_the_theorem(seed, levels, steps):
    g = violating_net(seed, levels, steps)
    x = dyadic_vectors(seed)
    assume(run_float(g, x, dtype=torch.float64).spike_counts.sum() > 0)
    report = exactness_report(g, reparameterize(g, "exact"), x)
    assert report.fraction == 1.0, [(layer.layer, layer.fraction) for layer in report.layers]
    # the whole network agrees: LIF logits × L equal the M-HT logits exactly (dyadic values)
    assert report.mean_abs_dlogits == 0.0 and report.argmax_agreement == 1.0


def test_uniform_schedule_mismatch_is_reported_next_to_exact():
    fractions = {"uniform": [], "exact": []}
    for seed in range(12):
        g = violating_net(seed, 2, 4)
        for name in fractions:
            fractions[name].append(exactness_report(g, reparameterize(g, name), dyadic_vectors(seed)).fraction)
    assert min(fractions["exact"]) == 1.0
    assert min(fractions["uniform"]) < 0.95 and np.mean(fractions["uniform"]) < 1.0, fractions["uniform"]


def test_design_counter_example_is_exact_with_front_loading():
    """docs/design.md §2: v = 1.2 after a clipped window, next input −0.4. M-HT emits 2 then 0; so does `exact`."""
    g = Graph(steps=2, meta={})
    g.add(Input("input", [], input_shape=(1,)))
    g.add(Linear("fc", ["input"], weight=np.array([[2.0]], np.float32), bias=None))
    g.add(TemporalMix("mix", ["fc"], omega=np.array([[1.6, 0.0], [-0.2, 0.0]])))
    g.add(Neuron("sn", ["mix"], threshold=1.0, levels=2, leak=np.ones(2)))
    g.add(Readout("out", ["sn"]))
    g = finalize(g)
    x = np.ones((1, 1), np.float32)
    r = reparameterize(g, "exact")
    assert run_float(r, x).outputs[:, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0]     # window counts 2, 0
    assert exactness_report(g, r, x).fraction == 1.0
    assert exactness_report(g, reparameterize(g, "uniform"), x).fraction == 0.5


def test_exact_schedule_structure():
    g = fold_batchnorm(trace_to_ir(randomize(TinyResNet(2, 2), 0), (2, 8, 8)))
    r = reparameterize(g, "exact")
    assert r.meta["schedule"] == "exact" and r.steps == 4
    om_src, om = g.node("sn0.tgim").omega, r.node("sn0.tgim").omega     # analog input: one column per window
    assert np.array_equal(om[1::2], np.zeros((2, 4))) and np.array_equal(om[::2, 1::2], np.zeros((2, 2)))
    assert np.array_equal(om[::2, ::2], om_src)
    om_src, om = g.node("sn1.tgim").omega, r.node("sn1.tgim").omega     # spiking input: every step of a window
    assert np.array_equal(om[1::2], np.zeros((2, 4)))
    assert np.array_equal(om[::2, ::2], om_src) and np.array_equal(om[::2, 1::2], om_src)
    assert r.node("sn0").input_scale == g.node("sn0").input_scale           # no division by L anywhere
    assert r.node("sn0").leak.tolist() == [g.node("sn0").leak[0], 1.0, g.node("sn0").leak[1], 1.0]
    assert np.allclose(r.node("conv.0").bias, g.node("conv.0").bias / 2)   # offsets: window sums as uniform


@pytest.mark.parametrize("seed, levels", [(0, 2), (1, 4), (2, 2)])
def test_integer_lif_window_counts_equal_an_integer_mht_reference(seed, levels):
    """Int mode: the multi-level neuron run in integer arithmetic on the same quantized layer inputs (each
    window's current, delivered at its first step) emits exactly the LIF's window spike counts."""
    for model in (randomize(TinyResNet(levels, 2), seed, leak_spread=2, mask_spread=2),
                  randomize(StridedNet(levels, 3), seed, leak_spread=2, mask_spread=2)):
        q = quantize(compile_graphs(trace_to_ir(model, (2, 8, 8)), schedule="exact")["compiled"])
        x = np.random.default_rng(seed).normal(size=(6, 2, 8, 8)).astype(np.float32) * 3
        neurons = [n for n in q.topo() if n.kind == "qneuron"]
        r = run_int(q, x, capture={n.name for n in neurons} | {n.inputs[0] for n in neurons}, windows=False)
        assert_integer_windows_exact(q, r, levels)


def assert_integer_windows_exact(q: Graph, r, levels: int) -> None:
    for n in (n for n in q.topo() if n.kind == "qneuron"):
        cur, spikes = r.captured[n.inputs[0]], r.captured[n.name]
        steps = cur.shape[0]
        assert not cur.reshape(steps // levels, levels, -1)[:, 1:].any(), n.name   # nothing after window starts

        class MHT:   # the same neuron with L levels, stepping once per window
            threshold, v_init, leak_frac_bits, membrane_bits = n.threshold, n.v_init, n.leak_frac_bits, n.membrane_bits
            leak = n.leak[::levels]
        MHT.levels = levels
        k, _ = int_neuron(cur[::levels], MHT)
        counts = spikes.reshape(steps // levels, levels, *spikes.shape[1:]).sum(axis=1)
        np.testing.assert_array_equal(counts, k, err_msg=n.name)
    assert r.spike_counts.sum() > 0


@pytest.mark.parametrize("ckpt, arch, recipe, golden, n_report", [
    (HYBRID_RESNET20, "resnet20", "hybrid", "hybrid_resnet20_digits_Q8_L2_T2_golden.npz", 16),
    (RESNET18, "resnet18", "direct", "resnet18_digits_L2_T2_golden.npz", 8)])
def test_fixtures_exact_schedule(fixtures, ckpt, arch, recipe, golden, n_report):
    """Both fixtures: 100 % of (neuron, window) counts equal the M-HT levels with `exact` (uniform next to it),
    float logits × L follow the authors' LM-HT outputs, and the integer network is exact window by window."""
    with np.load(fixtures / "digits32_test.npz") as f:
        x = f["x"][:48]
    source = fold_batchnorm(checkpoint_to_ir(ckpt, resolve_spec(ckpt, arch, 2, 2, recipe, 10)))
    exact = reparameterize(source, "exact")
    rep = {name: exactness_report(source, g, x[:n_report]) for name, g in
           (("exact", exact), ("uniform", reparameterize(source, "uniform")))}
    print(arch, {k: (v.fraction, v.within_tol) for k, v in rep.items()})
    assert rep["exact"].fraction == 1.0 and rep["uniform"].fraction <= 1.0
    with np.load(fixtures / golden) as f:
        lmht = f["lmht_out"][:, :len(x)]
    out = run_float(exact, x).outputs                                   # [L·T, N, classes]
    windows = out.reshape(2, 2, *out.shape[1:]).sum(axis=1)             # window sums = M-HT step outputs
    stats = agreement_stats(windows, lmht)
    print(arch, "exact schedule vs lmht_out:", stats)
    assert stats["argmax_agreement"] >= 0.97
    q = quantize(exact, QuantConfig())
    neurons = [n for n in q.topo() if n.kind == "qneuron"]
    r = run_int(q, x[:4], capture={n.name for n in neurons} | {n.inputs[0] for n in neurons}, windows=False)
    assert_integer_windows_exact(q, r, 2)


def test_compile_cli_reparam_flag_and_schedule_comparison(tmp_path, fixtures):
    runner = CliRunner()
    art, inputs, report = tmp_path / "r20.lmhtc", tmp_path / "x.npz", tmp_path / "ex.json"
    with np.load(fixtures / "digits32_test.npz") as f:
        np.savez(inputs, x=f["x"][:8])
    base = ["compile", str(HYBRID_RESNET20), "-o", str(art), "--arch", "resnet20", "-L", "2", "-T", "2",
            "--recipe", "hybrid", "--no-int", "--no-progress"]
    res = runner.invoke(app, base + ["--reparam", "exact"])
    assert res.exit_code == 0 and "reparameterize[exact]" in res.output, res.output
    res = runner.invoke(app, ["exactness", str(art), "--inputs", str(inputs), "--json", str(report), "--no-progress"])
    assert res.exit_code == 0 and "schedules side by side" in res.output, res.output
    doc = json.loads(report.read_text())
    assert doc["schedule"] == "exact" and doc["fraction"] == 1.0
    assert set(doc["other_schedules"]) == {"uniform"}
    res = runner.invoke(app, base + ["--reparam", "frontloaded"])
    assert res.exit_code == 2 and "--reparam must be one of uniform, exact" in res.output
    res = runner.invoke(app, base + ["--reparam", "exact", "--no-reparam"])
    assert res.exit_code == 2 and "--no-reparam" in res.output
