"""The integer runtime: event and dense kernels agree bit for bit, hand-computed semantics, fixtures' accuracy."""
from __future__ import annotations

import numpy as np
import pytest

from lmhtc.compiler.executor import run_float
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.intir import QInput, QLinear, QNeuron, QReadout, QTemporalMix, rs
from lmhtc.compiler.ir import Graph, finalize
from lmhtc.compiler.passes.quantize import QuantConfig, quantize
from lmhtc.compiler.pipeline import compile_graphs
from nets import StridedNet, TinyResNet, randomize
from lmhtc.runtime.simulator import run_int


def int_net(model, shape, reparam=True, calib=None, **cfg):
    graph = compile_graphs(trace_to_ir(model, shape), reparam=reparam)["compiled"]
    return quantize(graph, QuantConfig(**cfg), calib=calib), graph


@pytest.mark.parametrize("seed, reparam, levels", [(0, True, 2), (1, False, 2), (2, True, 4), (3, False, 4)])
def test_event_and_dense_kernels_are_bit_identical(seed, reparam, levels):
    for model, shape in [(randomize(TinyResNet(levels, 2), seed), (2, 8, 8)),
                         (randomize(StridedNet(levels, 3), seed), (2, 8, 8))]:
        q, _ = int_net(model, shape, reparam)
        x = np.random.default_rng(seed).normal(size=(5, *shape)).astype(np.float32)
        names = {n.name for n in q.topo()}
        a = run_int(q, x, kernel="dense", capture=names)
        b = run_int(q, x, kernel="event", capture=names)
        assert set(a.kernels) == set(b.kernels) and all(v["event"] == 0 for v in a.kernels.values())
        assert all(v["dense"] == 0 for v in b.kernels.values())
        for name in names:
            assert np.array_equal(a.captured[name], b.captured[name]), name
        assert np.array_equal(a.sops_by_layer_step, b.sops_by_layer_step)
        assert a.spike_counts.sum() > 0 and a.sops.sum() > 0


def test_batch_and_single_sample_modes_agree():
    q, _ = int_net(randomize(TinyResNet(2, 2), 5), (2, 8, 8))
    x = np.random.default_rng(5).normal(size=(4, 2, 8, 8)).astype(np.float32)
    a, b = run_int(q, x, batch_size=4), run_int(q, x, batch_size=1)
    for field in ("outputs_int", "spike_counts", "saturation", "sops_by_layer_step", "macs"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_sops_equal_spike_events_times_fanout():
    """A linear head after a neuron: every spike event reaches out_features outputs."""
    q, _ = int_net(randomize(TinyResNet(2, 2), 7), (2, 8, 8))
    x = np.random.default_rng(7).normal(size=(3, 2, 8, 8)).astype(np.float32)
    r = run_int(q, x, capture={"sn2"})
    head = r.synaptic_layer_names.index("head.0")
    assert np.array_equal(r.sops_by_layer_step[:, head, :].sum(1), r.captured["sn2"].sum(axis=(0, 2)) * 3)
    # the analog stem does MACs, once per image: 4 out channels × 8×8 × 2 in channels × 3×3
    assert r.macs.tolist() == [4 * 64 * 2 * 9] * 3 and "stem.0" not in r.synaptic_layer_names


def hand_graph(membrane_bits=24, leak=(4096, 4096), threshold=(10,), omega=((4096, 0), (0, 4096)), weight=5,
               levels=1) -> Graph:
    g = Graph(steps=2, meta={"integer": True, "semantics_version": 1})
    g.add(QInput("input", [], input_shape=(1,), scale=0.5, bits=8))
    g.add(QLinear("fc", ["input"], weight=np.array([[weight]], np.int32), bias=None, shift=0,
                  acc_bound=abs(weight) * 127))      # |w| · max|x_int|: the validator checks the stored bound
    g.add(QTemporalMix("mix", ["fc"], omega=np.array(omega, np.int64), frac_bits=12))
    g.add(QNeuron("sn", ["mix"], threshold=np.array(threshold, np.int64), levels=levels,
                  leak=np.array(leak, np.int64), v_init=np.zeros(1, np.int64), leak_frac_bits=12,
                  membrane_bits=membrane_bits))
    g.add(QLinear("head", ["sn"], weight=np.array([[3]], np.int32), bias=np.array([1], np.int64), shift=1,
                  acc_bound=3 * levels))
    g.add(QReadout("out", ["head"], scale=np.array([0.25])))
    return finalize(g)


def test_hand_computed_integer_semantics():
    # x = 1.6 → round(1.6/0.5) = 3; fc: 3·5 = 15 per step; Ω = identity; Θ = 10
    # step 0: V = 15 → spike (V 5); step 1: V = 5 + 15 = 20 → spike (V 10)
    # head: (1·3) << 1 + 1 = 7 per step; logits_int = 14, logits = 14·0.25/2 = 1.75
    r = run_int(hand_graph(), np.array([[1.6]], np.float32), capture={"input", "sn"})
    assert r.captured["input"][:, 0, 0].tolist() == [3, 3]
    assert r.captured["sn"][:, 0, 0].tolist() == [1, 1]
    assert r.outputs_int[:, 0, 0].tolist() == [7, 7] and r.logits_int.tolist() == [[14]]
    assert r.logits[0, 0] == 1.75 and r.spike_counts.tolist() == [[2]]
    assert r.sops.tolist() == [2]   # two events × fan-out 1


def test_leak_rounding_and_multilevel_soft_reset():
    # leak 6144/4096 = 1.5 at step 1; 2 levels, Θ = 4; input 15 per step
    # step 0: V = 15 → k = 2 (V 7); step 1: V = rs(6144·7, 12) + 15 = rs(43008, 12) + 15 = 11 + 15 = 26
    #   (43008/4096 = 10.5 → 11, half away from zero) → k = 2 (V 18)
    r = run_int(hand_graph(leak=(4096, 6144), threshold=(4,), levels=2), np.array([[1.6]], np.float32),
                capture={"sn"})
    assert r.captured["sn"][:, 0, 0].tolist() == [2, 2]
    assert rs(np.array([43008, -43008]), 12).tolist() == [11, -11]


def test_membrane_saturation_is_counted_not_wrapped():
    # 8-bit membrane saturates at 127; Θ = 200 cannot be reached: V = 127 at both steps, 2 saturation events
    r = run_int(hand_graph(membrane_bits=8, threshold=(200,), weight=127), np.array([[1.6]], np.float32),
                capture={"sn"})
    assert r.captured["sn"].sum() == 0
    # 3·127 = 381 → 127 (saturated); next step 127 + 381 → 127 (saturated again)
    assert r.saturation.tolist() == [[2]]


def test_quantization_tracks_the_float_network():
    model = randomize(TinyResNet(2, 2), 11)
    q, g = int_net(model, (2, 8, 8), weight_bits=12)
    x = np.random.default_rng(11).normal(size=(16, 2, 8, 8)).astype(np.float32)
    r, f = run_int(q, x), run_float(g, x)
    assert (r.logits.argmax(1) == f.logits.argmax(1)).mean() >= 0.9
    assert abs(r.spike_counts.sum() / f.spike_counts.sum() - 1) < 0.02
    assert r.saturation.sum() == 0


def test_wider_weights_reduce_the_error():
    model = randomize(TinyResNet(2, 2, residual=False), 13)
    x = np.random.default_rng(13).normal(size=(16, 2, 8, 8)).astype(np.float32)
    errors = []
    for bits in (3, 6, 12):
        q, g = int_net(model, (2, 8, 8), calib=x, weight_bits=bits)
        errors.append(abs(run_int(q, x).spike_counts.sum() - run_float(g, x).spike_counts.sum()))
    assert errors[0] > errors[2]


def test_runtime_refuses_float_graphs():
    _, g = int_net(randomize(TinyResNet(2, 2), 0), (2, 8, 8))
    with pytest.raises(Exception, match="not an integer network"):
        run_int(g, np.zeros((1, 2, 8, 8), np.float32))


@pytest.mark.parametrize("seed, schedule", [(0, "exact"), (1, "exact"), (0, "uniform"), (1, "uniform")])
def test_window_sum_schedule_is_bit_identical_to_per_step(seed, schedule):
    """Synaptic products over window sums and one T-GIM current per window (equal rows for `uniform`, the
    first row only for `exact`) give the per-step schedule's integers."""
    from lmhtc.runtime.simulator import _program, window_plan

    for model in (randomize(TinyResNet(2, 2), seed), randomize(StridedNet(4, 2), seed)):
        graph = compile_graphs(trace_to_ir(model, (2, 8, 8)), schedule=schedule)["compiled"]
        q = quantize(graph, QuantConfig())
        x = np.random.default_rng(seed).normal(size=(4, 2, 8, 8)).astype(np.float32)
        assert max(window_plan(q).values()) > 1    # the schedules are in use
        assert set(_program(q, "cpu").row_blocks.values()) == {(graph.meta["reparam_levels"], schedule == "exact")}
        a, b = run_int(q, x, windows=True), run_int(q, x, windows=False)
        for field in ("outputs_int", "spike_counts", "saturation", "sops_by_layer_step", "macs"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("seed, schedule", [(0, "exact"), (1, "uniform")])
def test_capture_keeps_the_window_schedule(seed, schedule):
    """Capturing neurons (what SOP counting, report and verify capture) keeps every window group; capturing a
    synaptic node runs its group (the nodes feeding one mix) per step only. Same integers as windows=False."""
    from lmhtc.runtime.simulator import _program, window_plan

    for model in (randomize(TinyResNet(2, 2), seed), randomize(StridedNet(4, 2), seed)):
        q = quantize(compile_graphs(trace_to_ir(model, (2, 8, 8)), schedule=schedule)["compiled"], QuantConfig())
        x = np.random.default_rng(seed).normal(size=(4, 2, 8, 8)).astype(np.float32)
        neurons = {n.name for n in q.topo() if isinstance(n, QNeuron)}
        prog = _program(q, "cpu")
        full = window_plan(q)
        assert prog.window_plan(neurons) == full and max(full.values()) > 1
        conv = next(name for name, lw in full.items() if lw > 1)
        part = prog.window_plan(neurons | {conv})
        assert part[conv] == 1 and any(lw > 1 for lw in part.values())
        assert all(part[n] == full[n] for n in full if part[n] != 1)
        for capture in (neurons, neurons | {conv}):
            a, b = run_int(q, x, capture=capture), run_int(q, x, capture=capture, windows=False)
            for name in capture:
                assert np.array_equal(a.captured[name], b.captured[name]), name
            for field in ("outputs_int", "spike_counts", "saturation", "sops_by_layer_step", "macs"):
                assert np.array_equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("density", [0.02, 0.3, 0.9])
def test_spike_totals_decide_the_kernel_as_counting_does(density, monkeypatch):
    """The event/dense choice from spike totals (no count where Σk proves the input dense) is the counted one."""
    from lmhtc.runtime import simulator

    q, _ = int_net(randomize(TinyResNet(2, 2), 4), (2, 8, 8))
    x = np.random.default_rng(4).normal(size=(6, 2, 8, 8)).astype(np.float32)
    fast = run_int(q, x, event_density=density, batch_size=3)
    monkeypatch.setattr(simulator, "_sparse", lambda st, v, vin, lw, in_b:
                        float((vin != 0).sum()) < st.event_density * vin.numel())
    counted = run_int(q, x, event_density=density, batch_size=3)
    assert fast.kernels == counted.kernels
    for field in ("outputs_int", "spike_counts", "saturation", "sops_by_layer_step"):
        assert np.array_equal(getattr(fast, field), getattr(counted, field)), field
    if density == 0.9:
        assert sum(v["event"] for v in fast.kernels.values()) > 0
