"""SOP, energy and hardware-resource passes and `lmhtc report`: hand-computed SOPs, exact agreement with the
runtime's counts, reparameterization keeps SOPs on the fixtures, energy models and core descriptions as data,
the command end to end."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmhtc.compiler.checkpoint import ModelSpec, resolve_spec, save_checkpoint
from lmhtc.compiler.cost.dynamic import measure_activity
from lmhtc.compiler.cost.energy import EnergyModelError, energy_model_from_json, load_energy_model, pj_to_mj
from lmhtc.compiler.cost.fanout import CostError, cost_graph, fold_through_pool, unit_input_fanout
from lmhtc.compiler.cost.hardware import HardwareError, core_spec_from_json, estimate_resources, load_hardware
from lmhtc.compiler.cost.static import static_costs
from lmhtc.compiler.data import Split, load_digits_dataset
from lmhtc.compiler.exactness import exactness_report
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.ir import (Add, AvgPool2d, Conv2d, Flatten, Graph, Input, Linear, MaxPool2d, Neuron, Readout,
                         TemporalMix, finalize)
from lmhtc.compiler.passes import reparameterize
from lmhtc.compiler.passes.quantize import QuantConfig, quantize
from lmhtc.compiler.pipeline import compile_checkpoint, compile_graphs
from lmhtc.compiler.training import TrainConfig, train
from lmhtc.compiler.zoo import build_snn
from conftest import HYBRID_RESNET20, RESNET18, assert_one_line_error, cli
from nets import StridedNet, TinyResNet, randomize
from lmhtc.runtime.simulator import run_int


# -- a network small enough to count by hand -------------------------------------------------------

def hand_graph() -> Graph:
    """input 1×4×4 → 1×1 conv (analog) → T-GIM (identity) → 2-level neuron n0 →
    [3×3 conv (zero weights) + identity shortcut] → T-GIM [[1, 0], [½, ½]] → 2-level neuron n1 →
    avg-pool 2 → flatten → linear 4→3 → readout; T = 2, θ = 1, λ = 1."""
    g = Graph(steps=2, meta={})
    g.add(Input("input", [], input_shape=(1, 4, 4)))
    g.add(Conv2d("c0", ["input"], weight=np.ones((1, 1, 1, 1), np.float32)))
    g.add(TemporalMix("n0.tgim", ["c0"], omega=np.eye(2)))
    g.add(Neuron("n0", ["n0.tgim"], threshold=1.0, levels=2, leak=np.ones(2)))
    g.add(Conv2d("c1", ["n0"], weight=np.zeros((1, 1, 3, 3), np.float32), padding=(1, 1)))
    g.add(Add("add", ["c1", "n0"]))
    g.add(TemporalMix("n1.tgim", ["add"], omega=np.array([[1.0, 0.0], [0.5, 0.5]])))
    g.add(Neuron("n1", ["n1.tgim"], threshold=1.0, levels=2, leak=np.ones(2)))
    g.add(AvgPool2d("pool", ["n1"], kernel=(2, 2), stride=(2, 2)))
    g.add(Flatten("flat", ["pool"]))
    g.add(Linear("fc", ["flat"], weight=np.full((3, 4), 0.25, np.float32)))
    g.add(Readout("out", ["fc"]))
    return finalize(g)


# the input; per pixel value, n0 emits levels (step 0, step 1): 0 → (0, 0); 0.5 → (0, 1); 1 → (1, 1); 2.5 → (2, 2)
# (v = 2.5 → level 2, v = 0.5; then v = 3.0 → clipped at L = 2). n1 gets I(0) = y(0), I(1) = (y(0) + y(1))/2:
# 0 → (0, 0); 0.5 → (0, ½) → (0, 0); 1 → (1, 1); 2.5 → (2, 2).
X_HAND = np.array([[0, 0.5, 1, 2.5], [2.5, 1, 0.5, 0], [0, 0, 1, 1], [2.5, 2.5, 0.5, 0.5]],
                  np.float32).reshape(1, 1, 4, 4)
K0 = {0.0: (0, 0), 0.5: (0, 1), 1.0: (1, 1), 2.5: (2, 2)}
K1 = {0.0: (0, 0), 0.5: (0, 0), 1.0: (1, 1), 2.5: (2, 2)}
COVER3 = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])   # 3×3 windows, padding 1, over 4×4


def test_hand_counted_sops_multi_level_residual_tgim_avgpool():
    a = measure_activity(hand_graph(), X_HAND, "float")
    img = X_HAND[0, 0]
    k0 = np.array([[[K0[float(v)][t] for v in row] for row in img] for t in range(2)])   # [step, 4, 4]
    k1 = np.array([[[K1[float(v)][t] for v in row] for row in img] for t in range(2)])
    # by hand: c1 = Σ level × (3×3 cover) = 70 + 95; shortcut = Σ level × 1 = 12 + 16;
    # fc after avg-pool 2×2: each event reaches one pooled position, × 3 classes = 36 + 36
    assert [int((k * COVER3).sum()) for k in k0] == [70, 95]
    assert [int(k.sum()) for k in k0] == [12, 16] and [3 * int(k.sum()) for k in k1] == [36, 36]
    assert a.unit_names == ["c1", "n0.gain.n1.tgim", "fc"]
    assert a.sops[0].tolist() == [[70, 95], [12, 16], [36, 36]]
    assert a.spikes[0].tolist() == [[12, 16], [12, 12]]
    assert a.macs.tolist() == [16]            # the analog 1×1 conv: 16 MACs, once per image
    rate = a.firing_rate_per_step()
    assert np.allclose(rate, [[12 / 16, 16 / 16], [12 / 16, 12 / 16]])


def test_hand_network_static_costs():
    s = static_costs(hand_graph())
    n0, n1, out = s.layers
    assert (n0.name, n0.synapses, n0.ann_macs, n0.analog_macs, n0.analog_macs_per_step, n0.worst_case_sops) == \
        ("n0", 16, 16, 16, 32, 0)
    # n1: 3×3 conv without padded positions (Σ cover = 100) + shortcut (16); worst case: levels 2 × steps 2
    assert (n1.synapses, n1.fan_in, n1.ann_macs, n1.worst_case_sops) == (116, 10, 144, 4 * 100 + 4 * 16)
    assert (out.synapses, out.ann_macs, out.worst_case_sops) == (12, 12, 4 * 16 * 3)
    assert s.totals()["ann_macs"] == 172 and s.totals()["worst_case_sops"] == 656
    assert n1.weight_memory_bytes == 9 * 4 and n1.state_memory_bytes == 16 * 4     # float32


def test_reparameterization_keeps_hand_counted_sops():
    g = hand_graph()
    r = reparameterize(g)
    a, b = measure_activity(g, X_HAND, "float"), measure_activity(r, X_HAND, "float")
    assert b.sops.shape == (1, 3, 4) and b.sops[0].sum(1).tolist() == [165, 28, 72]
    assert np.array_equal(a.spikes.sum(2), b.spikes.sum(2))
    assert static_costs(r).totals()["worst_case_sops"] == static_costs(g).totals()["worst_case_sops"] == 656


def test_maxpool_of_spikes_counts_pooled_events():
    g = Graph(steps=2, meta={})
    g.add(Input("input", [], input_shape=(1, 4, 4)))
    g.add(Conv2d("c0", ["input"], weight=np.ones((1, 1, 1, 1), np.float32)))
    g.add(TemporalMix("n0.tgim", ["c0"], omega=np.eye(2)))
    g.add(Neuron("n0", ["n0.tgim"], threshold=1.0, levels=2, leak=np.ones(2)))
    g.add(MaxPool2d("mp", ["n0"], kernel=(2, 2), stride=(2, 2), padding=(0, 0)))
    g.add(Flatten("flat", ["mp"]))
    g.add(Linear("fc", ["flat"], weight=np.ones((3, 4), np.float32)))
    g.add(Readout("out", ["fc"]))
    a = measure_activity(finalize(g), X_HAND, "float")
    # the pooled levels (max of each 2×2 block) per step, each reaching 3 classes
    img = X_HAND[0, 0]
    k0 = np.array([[[K0[float(v)][t] for v in row] for row in img] for t in range(2)])
    pooled = k0.reshape(2, 2, 2, 2, 2).max(axis=(2, 4))
    assert a.sops[0, 0].tolist() == (3 * pooled.sum(axis=(1, 2))).tolist()


def test_node_between_spikes_and_synapses_that_is_not_linear_is_named():
    g = Graph(steps=2, meta={})
    g.add(Input("input", [], input_shape=(4,)))
    g.add(Linear("l0", ["input"], weight=np.eye(4, dtype=np.float32)))
    g.add(TemporalMix("n0.tgim", ["l0"], omega=np.eye(2)))
    g.add(Neuron("n0", ["n0.tgim"], threshold=1.0, levels=1, leak=np.ones(2)))
    g.add(TemporalMix("odd", ["n0"], omega=np.eye(2)))
    g.add(Linear("l1", ["odd"], weight=np.eye(4, dtype=np.float32)))
    g.add(Readout("out", ["l1"]))
    with pytest.raises(CostError, match="'odd'"):
        cost_graph(finalize(g))


# -- fan-out maps against brute-force enumeration -------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(cin_g=st.integers(1, 2), groups=st.integers(1, 2), cout_g=st.integers(1, 3), h=st.integers(3, 7),
       w=st.integers(3, 7), k=st.integers(1, 3), stride=st.integers(1, 3), pad=st.integers(0, 2),
       dil=st.integers(1, 2))
def test_conv_fanout_map_equals_enumerated_connections(cin_g, groups, cout_g, h, w, k, stride, pad, dil):
    cin, cout = cin_g * groups, cout_g * groups
    ho, wo = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1, (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
    if ho < 1 or wo < 1:
        return
    node = Conv2d("c", ["x"], weight=np.zeros((cout, cin_g, k, k), np.float32), stride=(stride, stride),
                  padding=(pad, pad), dilation=(dil, dil), groups=groups, shape=(cout, ho, wo))
    brute = np.zeros((cin, h, w), np.int64)
    for co, oy, ox, ci, i, j in itertools.product(range(cout), range(ho), range(wo), range(cin_g), range(k), range(k)):
        y, x = oy * stride - pad + i * dil, ox * stride - pad + j * dil
        if 0 <= y < h and 0 <= x < w:
            brute[(co // cout_g) * cin_g + ci, y, x] += 1
    assert np.array_equal(unit_input_fanout(node, (cin, h, w)), brute)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 8), k=st.integers(1, 3), stride=st.integers(1, 3), pad=st.integers(0, 1),
       seed=st.integers(0, 100))
def test_pool_fold_equals_enumerated_windows(h, k, stride, pad, seed):
    if pad * 2 > k or h + 2 * pad < k:
        return
    ho = (h + 2 * pad - k) // stride + 1
    fmap = np.random.default_rng(seed).integers(0, 10, size=(2, ho, ho))
    brute = np.zeros((2, h, h), np.int64)
    for c, oy, ox, i, j in itertools.product(range(2), range(ho), range(ho), range(k), range(k)):
        y, x = oy * stride - pad + i, ox * stride - pad + j
        if 0 <= y < h and 0 <= x < h:
            brute[c, y, x] += fmap[c, oy, ox]
    assert np.array_equal(fold_through_pool(fmap, (2, h, h), (k, k), (stride, stride), (pad, pad)), brute)


# -- int mode: the pass equals the runtime's own counts exactly ----------------------------------------

@pytest.mark.parametrize("net, levels, T, reparam, seed", [("tiny", 2, 2, True, 0), ("tiny", 2, 2, False, 1),
                                                           ("strided", 2, 3, True, 2), ("strided", 4, 2, False, 3),
                                                           ("tiny", 3, 2, True, 4)])
def test_int_mode_sops_equal_the_runtimes_counts(net, levels, T, reparam, seed):
    model = randomize((TinyResNet if net == "tiny" else StridedNet)(levels, T), seed)
    graph = compile_graphs(trace_to_ir(model, (2, 8, 8)), reparam=reparam)["compiled"]
    q = quantize(graph, QuantConfig())
    x = np.random.default_rng(seed).normal(size=(6, 2, 8, 8)).astype(np.float32)
    act = measure_activity(q, x, "int", batch_size=4)
    fast = run_int(q, x)     # the runtime's own path (window sums, no capture)
    assert act.unit_names == fast.synaptic_layer_names
    assert np.array_equal(act.sops, fast.sops_by_layer_step) and act.sops.sum() > 0
    assert np.array_equal(act.spikes.sum(2), fast.spike_counts)
    assert np.array_equal(act.macs, fast.macs)
    # the float pass on the same IR names the same units (identity shortcuts as the lowering's qgains)
    assert measure_activity(graph, x[:2], "float").unit_names == act.unit_names


# -- reparameterization keeps SOPs on the authors' fixtures ------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("ckpt, arch, recipe, images", [(HYBRID_RESNET20, "resnet20", "hybrid", 4),
                                                        (RESNET18, "resnet18", "direct", 2)])
def test_fixture_sops_before_and_after_reparameterization(fixtures, digits32_test, ckpt, arch, recipe, images):
    graphs = compile_checkpoint(ckpt, resolve_spec(ckpt, arch, 2, 2, recipe, 10))
    x = digits32_test[0][:images]
    src = measure_activity(graphs["source"], x, "float")
    lif = measure_activity(graphs["compiled"], x, "float")
    ex = exactness_report(graphs["source"], graphs["compiled"], x)
    mismatch = 1.0 - ex.fraction
    total = src.sops.sum()
    assert src.steps == 2 and lif.steps == 4 and total > 0
    # level-weighted M-HT SOPs vs LIF SOPs: equal up to the exactness report's mismatch (measured: equal)
    assert abs(int(lif.sops.sum()) - int(total)) <= (mismatch + 1e-3) * total
    assert np.allclose(lif.sops.sum(2), src.sops.sum(2), rtol=mismatch + 1e-3)
    assert static_costs(graphs["source"]).totals()["worst_case_sops"] == \
        static_costs(graphs["compiled"]).totals()["worst_case_sops"]


# -- energy models and core descriptions are data --------------------------------------------------------

def test_builtin_energy_models_cite_their_figures():
    paper = load_energy_model("45nm")
    assert (paper.e_sop_pj, paper.e_mac_pj, paper.e_neuron_update_pj) == (0.9, 4.6, 0.0)
    assert "Horowitz" in paper.source and "ISSCC 2014" in paper.source
    # the paper's conversion: 1.60 G SOPs → 1.44 mJ
    assert pj_to_mj(paper.snn_pj(1.60e9, 0, 0)["total"]) == pytest.approx(1.44)
    loihi = load_energy_model("loihi")
    assert (loihi.e_sop_pj, loihi.e_neuron_update_pj) == (23.6, 52.0) and "Davies" in loihi.source


@pytest.mark.parametrize("content, fragment", [
    ('{"name": "x", "source": "s", "e_sop_pj": 1}', "missing key 'e_mac_pj'"),
    ('{"name": "x", "source": "s", "e_sop_pj": -1, "e_mac_pj": 1}', "'e_sop_pj'"),
    ('{"name": "x", "source": "s", "e_sop_pj": "1", "e_mac_pj": 1}', "'e_sop_pj'"),
    ('{"name": "x", "source": "", "e_sop_pj": 1, "e_mac_pj": 1}', "'source'"),
    ('{"name": "x", "source": "s", "e_sops_pj": 1, "e_sop_pj": 1, "e_mac_pj": 1}', "unknown key 'e_sops_pj'"),
    ('[1, 2]', "JSON object"),
    ('{"name": ', "not valid JSON"),
])
def test_bad_energy_model_file_names_file_and_key(tmp_path, content, fragment):
    path = tmp_path / "model.json"
    path.write_text(content)
    with pytest.raises(EnergyModelError) as err:
        load_energy_model(str(path))
    assert fragment in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_user_energy_model_file_and_unknown_name(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "source": "my lab, 2025", "e_sop_pj": 2, "e_mac_pj": 3,
                                "e_neuron_update_pj": 1}))
    m = load_energy_model(str(path))
    assert m.snn_pj(10, 1, 5) == {"sop": 20.0, "mac": 3.0, "neuron_update": 5.0, "total": 28.0}
    with pytest.raises(EnergyModelError, match="unknown energy model 'nope'.*45nm, loihi"):
        load_energy_model("nope")
    with pytest.raises(EnergyModelError, match="inline: key 'e_mac_pj' must be a finite number"):
        energy_model_from_json({"name": "b", "source": "s", "e_sop_pj": 1, "e_mac_pj": True}, "inline")


def test_hardware_presets_and_hand_computed_resources():
    l1, l2 = load_hardware("loihi1"), load_hardware("loihi2")
    assert (l1.cores_per_chip, l1.neurons_per_core, l1.synaptic_memory_bytes_per_core) == (128, 1024, 128 * 1024)
    assert (l2.cores_per_chip, l2.neurons_per_core, l2.synaptic_memory_bytes_per_core) == (128, 8192, 192 * 1024)
    assert "Davies" in l1.source and "Orchard" in l2.source and l2.graded_spikes and not l1.graded_spikes
    static = static_costs(reparameterize(hand_graph()))
    hw = core_spec_from_json({"name": "tiny", "source": "test", "cores_per_chip": 4, "neurons_per_core": 8,
                              "synaptic_memory_bytes_per_core": 64, "max_weight_bits": 8, "membrane_bits": 24,
                              "graded_spikes": False}, "tiny.json")
    est = estimate_resources(static, hw)
    # n0: fan-in 1 → 8 neurons/core → 2 cores; n1: fan-in 10 × 8 bits = 80 of 512 bits → 6 neurons/core → 3 cores;
    # readout: 3 accumulators → 1 core; 6 cores on 4-core chips → 2 chips
    assert [r.cores for r in est.layers] == [2, 3, 1] and (est.cores, est.chips) == (6, 2)
    assert est.layers[1].neurons_per_core == pytest.approx(16 / 3)
    assert est.layers[1].synaptic_memory_bytes_per_core == pytest.approx(116 / 3)
    small = core_spec_from_json({**hw.to_json(), "synaptic_memory_bytes_per_core": 8}, "small.json")
    misfit = estimate_resources(static, small)
    assert [m.layer for m in misfit.does_not_fit] == ["n1"]      # 80 bits of fan-in > 64; the readout's 32 fit
    assert "fan-in of 10 synapses" in misfit.does_not_fit[0].reason
    binary = estimate_resources(static_costs(hand_graph()), hw)     # M-HT: 2-level spikes
    assert [m.layer for m in binary.does_not_fit] == ["n0", "n1"] and "binary spikes" in binary.layers[0].reason


def test_bad_hardware_file(tmp_path):
    path = tmp_path / "hw.json"
    spec = load_hardware("loihi1").to_json()
    path.write_text(json.dumps({**spec, "neurons_per_core": 0}))
    with pytest.raises(HardwareError, match="'neurons_per_core'"):
        load_hardware(str(path))
    path.write_text(json.dumps({k: v for k, v in spec.items() if k != "cores_per_chip"}))
    with pytest.raises(HardwareError, match=f"{path}: missing key 'cores_per_chip'"):
        load_hardware(str(path))
    with pytest.raises(HardwareError, match="unknown hardware description 'loihi3'"):
        load_hardware("loihi3")


# -- `lmhtc report` end to end -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_artifact(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    data = load_digits_dataset("8")
    torch.manual_seed(0)
    model = build_snn("digitsnet", 2, 2, 10, "direct", (1, 8, 8))
    small = lambda split, n: Split(split.x[:n], split.y[:n])      # noqa: E731  (a quick, still trained model)
    train(model, small(data.train, 640), small(data.test, 64), TrainConfig(epochs=2, progress=False))
    ckpt = save_checkpoint(tmp / "m.pth", model, ModelSpec("digitsnet", 2, 2, input_shape=(1, 8, 8),
                                                           normalization=data.normalization()))
    np.savez(tmp / "test.npz", x=data.test.x[:48], y=data.test.y[:48])
    np.savez(tmp / "calib.npz", x=data.calib.x[:32])
    art = tmp / "m.lmhtc"
    code, out = cli("compile", ckpt, "-o", art, "--calib", tmp / "calib.npz", "--no-progress")
    assert code == 0, out
    return tmp, art


def test_report_cli_int_json_plots_and_runtime_agreement(digits_artifact):
    tmp, art = digits_artifact
    code, out = cli("report", art, "--inputs", tmp / "test.npz", "--json", tmp / "r.json", "--plots", tmp / "plots",
                    "--hardware", "loihi1", "--no-progress")
    assert code == 0, out
    assert "integer graph, int mode, 48 images" in out and "total" in out and "SOPs per image" in out
    rep = json.loads((tmp / "r.json").read_text())
    t = rep["totals"]
    assert rep["mode"] == "int" and rep["graph"] == "integer" and rep["steps"] == 4
    assert {"sops_per_image", "macs_per_image", "energy_mj_per_image"} <= set(t)
    assert [layer["name"] for layer in rep["layers"]] == ["features.1", "features.3", "features.6", "readout"]
    # the same figures as the runtime's own counts (`simulate --mode int`)
    code, out = cli("simulate", art, "--inputs", tmp / "test.npz", "-o", tmp / "sim.npz", "--mode", "int",
                    "--no-progress")
    assert code == 0, out
    with np.load(tmp / "sim.npz") as sim:
        assert t["sops_per_image"] == pytest.approx(sim["sops"].mean(), rel=1e-12)
        assert t["macs_per_image"] == sim["macs"].mean() == 16 * 64 * 9
        per_unit = sim["sops_by_layer_step"].mean(0)
        names = list(sim["synaptic_layer_names"])
    for s in rep["synaptic_layers"]:
        if not s["analog"]:
            assert s["sops_per_step"] == pytest.approx(per_unit[names.index(s["name"])].tolist(), rel=1e-12)
    assert sum(layer["sops_per_image"] for layer in rep["layers"]) == pytest.approx(t["sops_per_image"])
    e = rep["energy_model"]
    assert t["energy_mj_per_image"] == pytest.approx(
        (e["e_sop_pj"] * t["sops_per_image"] + e["e_mac_pj"] * t["macs_per_image"]) * 1e-9)
    assert t["ann_energy_mj_per_image"] == pytest.approx(4.6e-9 * t["ann_macs_per_image"])
    assert 0 < t["firing_rate"] < 1 and t["cores"] >= 4 and t["chips"] == 1
    assert rep["hardware"]["name"] == "loihi1" and not rep["resources"]["does_not_fit"]
    assert 0 <= rep["accuracy"] <= 1
    for name in ("firing_rate.png", "sops_per_layer.png", "energy.png", "firing_rate_per_step.png"):
        assert (tmp / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_cli_float_source_vs_compiled_and_loihi_energy(digits_artifact):
    tmp, art = digits_artifact
    reports = {}
    for graph in ("source", "compiled"):
        code, out = cli("report", art, "--inputs", tmp / "test.npz", "--mode", "float", "--graph", graph,
                        "--energy-model", "loihi", "--hardware", "loihi1", "--limit", "24", "--json",
                        tmp / f"{graph}.json", "--no-progress")
        assert code == 0, out
        reports[graph] = json.loads((tmp / f"{graph}.json").read_text())
    src, comp = reports["source"]["totals"], reports["compiled"]["totals"]
    assert reports["source"]["steps"] == 2 and reports["compiled"]["steps"] == 4
    assert comp["sops_per_image"] == pytest.approx(src["sops_per_image"], rel=1e-3)    # reparameterization
    assert comp["worst_case_sops_per_image"] == src["worst_case_sops_per_image"]
    # Loihi model: neuron updates (neurons × steps) are priced; the LIF form runs twice the steps
    assert comp["neuron_updates_per_image"] == 2 * src["neuron_updates_per_image"]
    assert comp["energy_breakdown_mj"]["neuron_update"] == pytest.approx(52e-9 * comp["neuron_updates_per_image"])
    # the M-HT network's 2-level spikes do not fit Loihi 1's binary spikes: every neuron layer is named
    misfits = [m["layer"] for m in reports["source"]["resources"]["does_not_fit"]]
    assert misfits == ["features.1", "features.3", "features.6"]


def test_report_cli_bad_energy_model_and_options(digits_artifact, tmp_path):
    tmp, art = digits_artifact
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "b", "source": "s", "e_sop_pj": 0.9}')
    out_json = tmp_path / "r.json"
    code, out = cli("report", art, "--inputs", tmp / "test.npz", "--energy-model", bad, "--json", out_json,
                    "--no-progress")
    assert_one_line_error(code, out, str(bad), "'e_mac_pj'")
    assert not out_json.exists() and not list(tmp_path.glob(".r.json*"))
    code, out = cli("report", art, "--inputs", tmp / "test.npz", "--hardware", "tpu", "--no-progress")
    assert_one_line_error(code, out, "unknown hardware description 'tpu'")
    code, out = cli("report", art, "--inputs", tmp / "test.npz", "--graph", "source", "--no-progress")
    assert_one_line_error(code, out, "--graph", "--mode float")
    code, out = cli("report", art, "--inputs", tmp / "missing.npz", "--no-progress")
    assert_one_line_error(code, out, "missing.npz")
    code, out = cli("report", art, "--inputs", tmp / "test.npz", "--limit", "4", "--plots", bad, "--no-progress")
    assert_one_line_error(code, out, str(bad), "directory")


def test_report_on_a_network_without_spiking_layers(tmp_path):
    """A graph with no neuron layer (input → flatten → linear → readout) has no SOPs and no spike events;
    ``report`` says so instead of failing on an empty event set."""
    import json

    from lmhtc.compiler.artifact import save_artifact
    from lmhtc.compiler.ir import Flatten, Graph, Input, Linear, Readout, finalize
    from conftest import cli

    g = Graph(steps=2)
    g.add(Input(name="input", input_shape=(1, 8, 8)))
    g.add(Flatten(name="flatten", inputs=["input"]))
    g.add(Linear(name="fc", inputs=["flatten"], weight=np.ones((10, 64), np.float32)))
    g.add(Readout(name="readout", inputs=["fc"]))
    art = save_artifact(tmp_path / "analog.lmhtc", {"compiled": finalize(g)})
    np.savez(tmp_path / "x.npz", x=np.ones((3, 1, 8, 8), np.float32))
    code, out = cli("report", art, "--inputs", tmp_path / "x.npz", "--mode", "float", "--json",
                    tmp_path / "r.json", "--no-progress")
    assert code == 0, out
    totals = json.loads((tmp_path / "r.json").read_text())["totals"]
    assert totals["sops_per_image"] == 0 and totals["spikes_per_image"] == 0
    assert totals["macs_per_image"] == 640          # the analog MACs per image: 10 × 64
