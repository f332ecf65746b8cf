"""The one-pass calibration (the executor's observe hook) gives the statistics of a plain capture-then-reduce
pass bit for bit, so the integer graph made from them is the same; it holds no captured sequences."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lmhtc.compiler.artifact import load_artifact
from lmhtc.compiler.executor import _Params, is_sequence, neuron_dynamics, run_float
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.lif_node import LIFNeuron, lif_dynamics
from lmhtc.compiler.passes.calibrate import NEAR_BAND, NEAR_MAX, Calibration, _channel_mean, _keep_closest, \
    calibrate, synaptic_sources
from lmhtc.compiler.passes.quantize import QuantConfig, calibrate_for, quantize
from lmhtc.compiler.pipeline import compile_graphs
from nets import StridedNet, TinyResNet, randomize
from test_nir import convnet, import_net, inputs


def reference_calibrate(graph, calib, batch_size=32, inputs=True, near=True, band=NEAR_BAND) -> Calibration:
    """The calibration as a plain two-step pass: capture every needed value of each batch's float run, then
    reduce the captures (a float32 neuron loop for the peaks, a float64 one for the near records, float64
    sums of the inputs)."""
    neurons = graph.neuron_layers()
    mix_of = {n.name: n.inputs[0] for n in neurons}
    lifs = graph.nodes_of(LIFNeuron)
    srcs = synaptic_sources(graph) if inputs else set()
    peaks = {n.name: 0.0 for n in neurons} | {n.name: np.zeros(n.shape[0]) for n in lifs}
    sums, sqs, near_parts = {}, {}, {n.name: [] for n in neurons}
    count = 0
    seq = is_sequence(graph, calib)
    for i in range(0, calib.shape[int(seq)], batch_size):
        xb = calib[:, i:i + batch_size] if seq else calib[i:i + batch_size]
        run = run_float(graph, xb, batch_size, capture=set(mix_of.values()) | srcs | {n.inputs[0] for n in lifs},
                        windows=True)
        for n in lifs:
            _, u = lif_dynamics(torch.as_tensor(run.captured[n.inputs[0]], dtype=torch.float64), n,
                                _Params(torch.float64, "cpu"))
            peaks[n.name] = np.maximum(peaks[n.name],
                                       u.abs().transpose(0, 2).reshape(n.shape[0], -1).amax(dim=1).numpy())
        for name in srcs:
            v = torch.as_tensor(run.captured[name], dtype=torch.float64)
            w = v.shape[0] * v.shape[1]
            s, q = v.sum(dim=(0, 1)), _channel_mean(v * v) * w
            sums[name] = sums[name] + s if name in sums else s
            sqs[name] = sqs[name] + q if name in sqs else q
        count += xb.shape[int(seq)]
        for n in neurons:
            cur = torch.as_tensor(run.captured[mix_of[n.name]], dtype=torch.float64)
            theta, prior = float(n.threshold), [torch.zeros_like(cur[0])]

            def observe(t, v, parts=near_parts[n.name], levels=n.levels, theta=theta, prior=prior):
                k = torch.clamp(torch.round(v / theta), 1, levels)
                m = v / theta - k
                hit = tuple((m.abs() < band).nonzero(as_tuple=False).T)
                if len(hit[0]):
                    parts.append((hit[1].numpy(), np.full(len(hit[0]), t), k[hit].numpy(), prior[0][hit].numpy(),
                                  m[hit].numpy()))
                prior[0] = prior[0] + sum((v >= i * theta).to(v.dtype) for i in range(1, levels + 1))

            # the membrane loop written out plainly (not the executor's in-place one): the peak in the run's
            # float32 (the executor's own membranes), the near records in float64
            for dtype in (torch.float32, torch.float64):
                c = cur.to(dtype)
                th = torch.tensor(theta, dtype=dtype)
                v = torch.full_like(c[0], n.v_init) * th
                peak = float(v.abs().max())
                leak = torch.as_tensor(n.leak, dtype=dtype)
                for t in range(c.shape[0]):
                    v = leak[t] * v + (c[t] if n.input_scale == 1.0 else c[t] * n.input_scale)
                    peak = max(peak, float(v.abs().max()))
                    if near and dtype == torch.float64:
                        observe(t, v)
                    k = sum((v >= i * th).to(v.dtype) for i in range(1, n.levels + 1))
                    v = v - k * th
                if dtype == torch.float32:
                    peaks[n.name] = max(peaks[n.name], peak)
    steps = graph.steps
    return Calibration(count, peaks, {k: (v / (count * steps)).numpy() for k, v in sums.items()},
                       {k: (v / (count * steps)).numpy() for k, v in sqs.items()},
                       {k: _keep_closest(p, NEAR_MAX) for k, p in near_parts.items()})


def assert_same_calibration(a: Calibration, b: Calibration) -> None:
    assert a.images == b.images and a.peaks.keys() == b.peaks.keys()
    for k in a.peaks:
        assert np.array_equal(a.peaks[k], b.peaks[k]), k
    for field in ("mean_in", "sq_in"):
        da, db = getattr(a, field), getattr(b, field)
        assert da.keys() == db.keys()
        for k in da:
            assert da[k].dtype == db[k].dtype and np.array_equal(da[k], db[k]), (field, k)
    assert a.near.keys() == b.near.keys()
    for k in a.near:
        for f in ("channel", "step", "level", "prior", "margin"):
            assert np.array_equal(getattr(a.near[k], f), getattr(b.near[k], f)), (k, f)


def assert_same_graph(a, b) -> None:
    """Two integer graphs with the same nodes, attributes and integer arrays (bit for bit)."""
    na, nb = list(a.topo()), list(b.topo())
    assert [n.name for n in na] == [n.name for n in nb]
    for p, q in zip(na, nb):
        assert p.kind == q.kind and p.inputs == q.inputs, p.name
        for key, val in vars(p).items():
            other = getattr(q, key)
            if isinstance(val, np.ndarray):
                assert val.dtype == other.dtype and np.array_equal(val, other), (p.name, key)
            else:
                assert val == other, (p.name, key)
    assert a.meta["quantization"] == b.meta["quantization"]


@pytest.mark.parametrize("net", ["resnet", "strided"])
@pytest.mark.parametrize("reparam", [False, "exact"])
def test_one_pass_calibration_equals_capture_then_reduce(net, reparam):
    """Peaks, input moments and near-threshold records are equal bit for bit (3 batches, the last one short),
    and quantize with each data-dependent method gives the same integer graph from either."""
    model = randomize(TinyResNet(2, 2) if net == "resnet" else StridedNet(2, 3), 7)
    graph = compile_graphs(trace_to_ir(model, (2, 8, 8)), reparam=bool(reparam),
                           schedule=reparam or "uniform")["compiled"]
    x = np.random.default_rng(7).normal(size=(10, 2, 8, 8)).astype(np.float32) * 2
    got, want = calibrate(graph, x, batch_size=4), reference_calibrate(graph, x, batch_size=4)
    assert_same_calibration(got, want)
    assert any(len(n.margin) for n in got.near.values())         # the near records are exercised
    for method in ("bias", "mse-ta"):
        cfg = QuantConfig(weight_bits=4, method=method)
        assert_same_graph(quantize(graph, cfg, calib=x, batch_size=4),
                          quantize(graph, cfg, calib=x, stats=reference_calibrate(graph, x, batch_size=4)))


@pytest.mark.parametrize("schedule", ["exact", "uniform"])
def test_window_sum_run_equals_the_per_step_run(schedule):
    """The calibration's float run (``run_float(windows=True)``: a synaptic product per window on window
    sums where the T-GIM's column blocks are constant) gives the per-step run's values up to float rounding:
    in float64 the same spikes in every layer and logits within 1e-12; a value the window run never forms
    per step cannot be captured."""
    from lmhtc.compiler.analysis.windows import float_window_plan

    model = randomize(TinyResNet(2, 2), 3)
    graph = compile_graphs(trace_to_ir(model, (2, 8, 8)), reparam=True, schedule=schedule)["compiled"]
    plan = float_window_plan(graph)
    assert set(plan.values()) == {2} and {"conv.0", "fc.0"} <= set(plan) and "head.0" not in plan, plan   # readout: per step
    x = np.random.default_rng(3).normal(size=(9, 2, 8, 8)).astype(np.float32) * 2
    spikes = {n.name for n in graph.neuron_layers()}
    a = run_float(graph, x, 4, dtype=torch.float64, capture=spikes)
    b = run_float(graph, x, 4, dtype=torch.float64, capture=spikes, windows=True)
    for name in spikes:
        assert np.array_equal(a.captured[name], b.captured[name]), name
    assert np.array_equal(a.spike_counts, b.spike_counts) and a.spike_counts.sum() > 0
    np.testing.assert_allclose(b.logits, a.logits, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="window sums"):
        run_float(graph, x, 4, capture={"conv.0"}, windows=True)


def test_one_pass_calibration_of_an_imported_lif_network(tmp_path):
    """Per-step sequences and lif layers (peak |u| per channel): equal to the capture-then-reduce pass."""
    net, shape = convnet("subtract")
    _, art = import_net(tmp_path, net, shape, "subtract")
    graph = load_artifact(art)[0]["compiled"]
    x = inputs(shape, seed=2, n=7)
    assert is_sequence(graph, x) and graph.nodes_of(LIFNeuron)
    cfg = QuantConfig(method="maxabs")
    assert_same_calibration(calibrate_for(graph, x, cfg, batch_size=3),
                            reference_calibrate(graph, x, batch_size=3, inputs=False, near=False))


def test_neuron_dynamics_in_place_loop_equals_the_plain_loop():
    """The executor's in-place neuron loop (multiplies by 1 skipped) gives the plain loop's spikes and peak,
    in float32 and float64, with leaks of 1 and below 1 and an input scale."""
    rng = np.random.default_rng(3)
    for dtype in (torch.float32, torch.float64):
        cur = torch.as_tensor(rng.normal(size=(5, 6, 7)) * 1.3, dtype=dtype)
        for leak_values, scale in (([1.0] * 5, 1.0), ([1.0, 0.9, 0.75, 1.0, 0.6], 0.5)):
            leak = torch.tensor(leak_values, dtype=dtype)
            k, peak = neuron_dynamics(cur, 0.7, 3, leak, 0.25, scale, return_peak=True)
            theta = torch.tensor(0.7, dtype=dtype)
            v, want_peak, want = torch.full_like(cur[0], 0.25) * theta, 0.0, []
            want_peak = float(v.abs().max())
            for t in range(5):
                v = leak[t] * v + cur[t] * scale
                want_peak = max(want_peak, float(v.abs().max()))
                kt = sum((v >= i * theta).to(dtype) for i in range(1, 4))
                want.append(kt)
                v = v - kt * theta
            assert torch.equal(k, torch.stack(want)) and peak == want_peak
            assert k.sum() > 0
