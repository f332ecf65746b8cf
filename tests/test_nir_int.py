"""The integer lowering of imported NIR networks (``lif`` → ``qlif``, ``scale``, ``sum_pool2d``): one step
definition (``semantics.lif_step``) and its backends on shared cases; snnTorch networks lowered to integers
with the same spikes as float, bit-exact on int, onnx-int and Lava, with SOPs counted; refusals."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

import int_reference as ref
import semantics_cases as cases
from conftest import assert_one_line_error, cli
from lmhtc import semantics
from lmhtc.compiler.artifact import load_artifact
from lmhtc.compiler.executor import run_float
from lmhtc.compiler.intir_lif import QLIF
from lmhtc.compiler.passes.quantize import QuantConfig, quantize
from lmhtc.compiler.verify import run_target, verify
from lmhtc.runtime.lif_kernel import run_lif
from lmhtc.runtime.simulator import run_int
from lmhtc.targets import onnx_int
from lmhtc.targets.onnx_int_lif import emit_lif
from test_nir import STEPS, _graph, convnet, generic_graph, import_net, inputs, mlp, run_snntorch, synaptic_mlp

I64 = np.int64


def _qlif(case) -> QLIF:
    p = dict(case["params"])
    opts = {"reset_timing": p.pop("timing")}
    shape = case["current"].shape[2:]
    return QLIF("n", [], shape=shape, v_init=case["v_init"], **opts, **p)


# -- the definition, and the runtime's and ONNX's qlif against it on shared cases ---------------------

def test_lif_step_hand_values():
    """snnTorch timing, subtract: a membrane left above θ is tested as u − θ (not reset twice)."""
    kw = dict(beta=np.array([8, 8]), alpha=None, bias=np.array([0, 0]), threshold=np.array([10, 10]),
              v_reset=np.array([0, 0]), v_min=None, frac_bits=3, membrane_bits=24, reset="subtract", compare=">",
              timing="snntorch", multi_spike=False)
    v, i, s, sat = semantics.lif_step(np.array([0, 0]), np.zeros(2), np.array([25, 10]), **kw)
    assert s.tolist() == [1, 0] and v.tolist() == [15, 10]              # 25 > 10 → 15; 10 is not > 10
    v, i, s, sat = semantics.lif_step(v, i, np.array([0, 1]), **kw)
    assert s.tolist() == [0, 1] and v.tolist() == [15, 1]               # r = 1: tested 15 − 10 = 5 → no spike
    v, _, s, _ = semantics.lif_step(np.array([0]), np.zeros(1), np.array([13]), **{
        **{k: np.asarray(a)[:1] if isinstance(a, np.ndarray) else a for k, a in kw.items()},
        "beta": np.array([7]), "timing": "same-step", "reset": "zero", "v_reset": np.array([-4])})
    assert s.tolist() == [1] and v.tolist() == [-4]
    v, _, _, sat = semantics.lif_step(np.array([0]), np.zeros(1), np.array([300]), **{
        **{k: np.asarray(a)[:1] if isinstance(a, np.ndarray) else a for k, a in kw.items()},
        "membrane_bits": 8, "timing": "same-step", "threshold": np.array([1000])})
    assert v.tolist() == [127] and sat.tolist() == [True]               # saturates to 8 bits, counted


@pytest.mark.parametrize("case", cases.LIF)
def test_semantics_lif_equals_the_independent_reference(case):
    out, sat = cases.lif_reference(case)
    rout, rsat = ref.lif(case["current"], _qlif(case))
    np.testing.assert_array_equal(out, rout)
    np.testing.assert_array_equal(sat, rsat)


@pytest.mark.parametrize("case", cases.LIF)
def test_runtime_lif_kernel(case):
    out, sat = cases.lif_reference(case)
    got, gsat = run_lif(torch.from_numpy(case["current"]), _qlif(case), case["current"].shape[0])
    np.testing.assert_array_equal(got.numpy(), out)
    np.testing.assert_array_equal(gsat.numpy(), sat)


def test_lif_cases_saturate_and_spike():
    """Not vacuous: the shared cases spike, several at once, and saturate."""
    results = [cases.lif_reference(c) for c in cases.LIF]
    assert all(r[0].any() for r in results)
    assert max(int(r[0].max()) for r, c in zip(results, cases.LIF) if c["params"]["multi_spike"]) >= 2
    assert sum(int(r[1].sum()) for r in results) > 0


@pytest.mark.parametrize("case", cases.LIF)
def test_onnx_lif_ops(case):
    from test_semantics import _run_onnx

    out, _ = cases.lif_reference(case)
    node = _qlif(case)
    steps = case["current"].shape[0]
    feeds = {f"x{t}": case["current"][t] for t in range(steps)}
    for got in _run_onnx(lambda b: emit_lif(b, node, list(feeds), steps), feeds, list(out)):
        np.testing.assert_array_equal(np.stack(got), out)


# -- snnTorch networks through the integer lowering -----------------------------------------------------

def _lif_names(graph):
    return [n.name for n in graph.topo() if n.kind in ("lif", "qlif")]


@pytest.mark.parametrize("build", [mlp, convnet, synaptic_mlp])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_integer_lowering_spikes_equal_float_and_snntorch(tmp_path, build, reset):
    """β = 0.875, θ = 1, dyadic weights and inputs: with power-of-two scales the integer network (widest
    widths, and the artifact's own 8-bit one) spikes as the float network and snnTorch at every step."""
    net, shape = build(reset)
    _, art = import_net(tmp_path, net, shape, reset)
    graphs = load_artifact(art)[0]
    graph = graphs["compiled"]
    assert "integer" in graphs and graphs["integer"].meta["quantization"]["scales"] == "power-of-two"
    x = inputs(shape, n=24)
    names = _lif_names(graph)
    fl = run_float(graph, x, capture=set(names))
    ref = run_snntorch(net, x)
    for name, i in zip(names, sorted(ref)):
        assert np.array_equal(fl.captured[name], ref[i])
    for integer in (quantize(graph, QuantConfig.widest()), graphs["integer"]):
        r = run_int(integer, x, capture=set(names))
        for name in names:
            assert np.array_equal(r.captured[name], fl.captured[name]), (name, integer.meta["quantization"])
        assert r.saturation.sum() == 0 and r.spike_counts.sum() == fl.spike_counts.sum() > 0


@pytest.mark.parametrize("build", [convnet, synaptic_mlp])
def test_runtime_equals_the_independent_reference_on_imported_networks(tmp_path, build):
    """The whole integer network (per-step sequences) against tests/int_reference.py: outputs, spikes per layer,
    saturation, SOPs per synaptic layer and step, analog MACs."""
    net, shape = build("subtract")
    _, art = import_net(tmp_path, net, shape, "subtract")
    integer = load_artifact(art)[0]["integer"]
    x = inputs(shape, seed=5, n=3)
    want = ref.reference_run(integer, x)
    got = run_int(integer, x, capture={n.name for n in integer.topo()})
    assert np.array_equal(got.outputs_int, want["outputs_int"])
    for name in got.captured:
        assert np.array_equal(got.captured[name], want["values"][name]), name
    assert np.array_equal(got.spike_counts, np.stack([want["spike_events"][n] for n in got.layer_names], 1))
    assert np.array_equal(got.sops_by_layer_step, np.stack([want["sops"][n] for n in got.synaptic_layer_names], 1))
    assert np.array_equal(got.macs, np.full(3, sum(want["macs"].values())))
    assert got.spike_counts.sum() > 0 and got.sops.sum() > 0


def test_verify_int_onnx_int_lava_and_report_sops(tmp_path):
    """The issue's check on both networks and both resets: ``lmhtc verify --targets int,onnx-int,lava`` on
    per-step sequences is bit-exact, and ``report --mode int`` counts SOPs = an independent count (each
    first-layer spike reaches 3 outputs of the next Linear; each last-layer spike its readout gain, 1)."""
    for build in (mlp, convnet):
        for reset in ("subtract", "zero"):
            net, shape = build(reset)
            _, art = import_net(tmp_path, net, shape, reset, name=f"{build.__name__}_{reset}")
            x = inputs(shape, seed=3, n=2)       # Lava is slow: two sequences of 16 steps
            np.savez(tmp_path / "x.npz", x=x)
            code, out = cli("verify", art, "--inputs", tmp_path / "x.npz", "--targets", "int,onnx-int,lava",
                            "--json", tmp_path / "v.json", "--no-progress")
            assert code == 0, out
            doc = json.loads((tmp_path / "v.json").read_text())
            assert doc["inputs"] == 2 and len(doc["pairs"]) == 3
            assert all(p["bit_exact"] and p["spikes_equal"] for p in doc["pairs"]), doc["pairs"]
            code, out = cli("report", art, "--inputs", tmp_path / "x.npz", "--mode", "int", "--json",
                            tmp_path / "r.json", "--no-progress")
            assert code == 0, out
            sops = json.loads((tmp_path / "r.json").read_text())["totals"]["sops_per_image"]
            integer = load_artifact(art)[0]["integer"]
            counts = run_int(integer, x).spike_counts.astype(np.int64)
            assert counts[:, 0].sum() > 0
            assert sops == pytest.approx((3 * counts[:, 0] + counts[:, 1]).mean(), rel=1e-12)


def test_calibrated_lowering_is_bit_exact_too(tmp_path):
    """--calib (a per-step sequence) sets the input range and the membrane headroom; still power-of-two."""
    net, shape = convnet("subtract")
    model = tmp_path / "m.nir"
    from snntorch.export_nir import export_to_nir
    nir.write(model, export_to_nir(net, torch.zeros(shape)))
    x = inputs(shape, seed=4, n=8)
    np.savez(tmp_path / "c.npz", x=x)
    code, out = cli("import-nir", model, "--dialect", "snntorch", "--reset", "subtract", "--calib", tmp_path / "c.npz",
                    "-o", tmp_path / "m.lmhtc", "--no-progress")
    assert code == 0, out
    graphs = load_artifact(tmp_path / "m.lmhtc")[0]
    q = graphs["integer"].meta["quantization"]
    assert q["calibration_images"] == 8 and q["input_range"] == pytest.approx(float(np.abs(x).max()))
    runs, pairs = verify(graphs, x[:, :3], ["int", "onnx-int"])
    assert all(p.bit_exact for p in pairs)
    names = _lif_names(graphs["integer"])
    assert np.array_equal(run_int(graphs["integer"], x, capture=set(names)).captured[names[0]],
                          run_float(graphs["compiled"], x, capture=set(names)).captured[names[0]])


def test_generic_graph_with_scale_and_sum_pool_lowers_and_is_bit_exact(tmp_path):
    """Conv2d → LIF (v_leak, v_reset ≠ 0) → SumPool2d → Scale → Flatten → two Affine → IF (generic dialect):
    scale folds into the next weights, the sum pool keeps its unit; int, onnx-int and Lava agree exactly,
    and at the widest widths the spikes are the float network's."""
    rng = np.random.default_rng(4)
    nodes, edges, _ = generic_graph(rng)
    nir.write(tmp_path / "g.nir", _graph(nodes, edges))
    code, out = cli("import-nir", tmp_path / "g.nir", "--dialect", "generic", "--dt", 1e-3, "-o",
                    tmp_path / "g.lmhtc", "--no-progress")
    assert code == 0, out
    graphs = load_artifact(tmp_path / "g.lmhtc")[0]
    kinds = {n.kind for n in graphs["integer"].topo()}
    assert "scale" not in kinds and {"qlif", "sumpool2d"} <= kinds
    x = (rng.integers(0, 17, size=(STEPS, 3, 1, 4, 4)) / 4).astype(np.float32)
    runs, pairs = verify(graphs, x, ["int", "onnx-int", "lava"])
    assert all(p.bit_exact and p.spikes_equal for p in pairs), [p.to_json() for p in pairs]
    names = _lif_names(graphs["compiled"])
    wide = run_int(quantize(graphs["compiled"], QuantConfig.widest()), x, capture=set(names))
    fl = run_float(graphs["compiled"], x, dtype=torch.float64, capture=set(names))
    for name in names:
        assert np.array_equal(wide.captured[name], fl.captured[name]), name
    assert 0 < fl.spike_counts.sum()


# -- refusals -----------------------------------------------------------------------------------------

def test_conv1d_lowers_for_int_and_onnx_int_and_lava_refuses_it(tmp_path):
    """A conv1d is a qconv1d (its 2-D view on (C, 1, L) in every target): int and onnx-int agree exactly and
    spike as the float network; Lava's Conv is 2-D, so the Lava target refuses it naming node, kind, target."""
    rng = np.random.default_rng(6)
    wt = (rng.integers(-4, 5, size=(3, 2, 3)) / 4).astype(np.float32)
    nodes = {"input": nir.Input({"input": np.array([2, 10])}),
             "conv": nir.Conv1d(10, wt, 2, 1, 1, 1, (rng.integers(-2, 3, size=3) / 4).astype(np.float32)),
             "if": nir.IF(np.ones((3, 5), np.float32), np.ones((3, 5), np.float32), np.zeros((3, 5), np.float32)),
             "output": nir.Output({"output": np.array([3, 5])})}
    nir.write(tmp_path / "c.nir", _graph(nodes, [("input", "conv"), ("conv", "if"), ("if", "output")]))
    code, out = cli("import-nir", tmp_path / "c.nir", "--dialect", "snntorch", "-o", tmp_path / "c.lmhtc",
                    "--no-progress")
    assert code == 0 and "no integer lowering" not in out, out
    graphs = load_artifact(tmp_path / "c.lmhtc")[0]
    assert "qconv1d" in {n.kind for n in graphs["integer"].topo()}
    x = (rng.integers(0, 9, size=(STEPS, 5, 2, 10)) / 8).astype(np.float32)
    runs, pairs = verify(graphs, x, ["int", "onnx-int"])
    assert pairs[0].bit_exact and pairs[0].spikes_equal and set(pairs[0].layer_mismatches) == {"if"}
    spikes = run_target("int", graphs, x).spikes["if"]
    fl = run_float(graphs["compiled"], x, capture={"if"})
    assert spikes.any() and np.array_equal(spikes, fl.captured["if"])
    assert_one_line_error(*cli("export", tmp_path / "c.lmhtc", "--target", "lava", "-o", tmp_path / "lava"),
                          "target 'lava'", "'conv'", "qconv1d")
    assert not (tmp_path / "lava").exists()


def test_lava_refuses_a_non_spiking_integrator_naming_it(tmp_path):
    """LI (its output is the membrane, up to 24 bits and more) lowers for int and onnx-int, not for Lava."""
    n = 3
    nodes = {"input": nir.Input({"input": np.array([n])}),
             "w": nir.Linear((np.eye(n) / 2).astype(np.float32)),
             "li": nir.LI(np.full(n, 0.5, np.float32), np.full(n, 2.0, np.float32), np.zeros(n, np.float32)),
             "output": nir.Output({"output": np.array([n])})}
    nir.write(tmp_path / "l.nir", _graph(nodes, [("input", "w"), ("w", "li"), ("li", "output")]))
    code, out = cli("import-nir", tmp_path / "l.nir", "--dialect", "generic", "--dt", 0.125, "-o",
                    tmp_path / "l.lmhtc", "--no-progress")
    assert code == 0, out
    graphs = load_artifact(tmp_path / "l.lmhtc")[0]
    x = (np.random.default_rng(1).integers(-8, 9, size=(STEPS, 4, n)) / 8).astype(np.float32)
    runs, pairs = verify(graphs, x, ["int", "onnx-int"])
    assert pairs[0].bit_exact and np.ptp(runs[0].logits_int) > 0
    assert_one_line_error(*cli("export", tmp_path / "l.lmhtc", "--target", "lava", "-o", tmp_path / "lava"),
                          "target 'lava'", "'li'", "qlif", "non-spiking")
    assert not (tmp_path / "lava").exists()


def test_readme_snntorch_on_lava_in_four_commands(tmp_path):
    """The README's four commands, exactly (demo/ → a temporary directory), succeed; verify is bit-exact."""
    import re
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text.split("#### A snnTorch model on Lava in four commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [ln for ln in block.splitlines() if ln.strip()]
    assert len(lines) == 4 and lines[0].startswith("python ") and all(ln.startswith("lmhtc ") for ln in lines[1:])
    for line in lines:
        args = [a.replace("demo/", f"{tmp_path}/") for a in shlex.split(line)]
        if args[0] == "python":
            done = subprocess.run([sys.executable, *args[1:]], cwd=root, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            continue
        code, out = cli(*args[1:])
        assert code == 0, (line, out)
    assert "ok: every integer pair is bit-exact" in out and "4 inputs" in out
    # the exported directory runs on its own, on a per-step sequence, with the runtime's integers
    with np.load(tmp_path / "seq.npz") as f:
        np.savez(tmp_path / "few.npz", x=f["x"][:, :2])
    done = subprocess.run([sys.executable, str(tmp_path / "lava" / "run.py"), "--inputs", str(tmp_path / "few.npz"),
                           "-o", str(tmp_path / "lava.npz")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "lava.npz") as f, np.load(tmp_path / "few.npz") as g:
        integer = load_artifact(tmp_path / "model.lmhtc")[0]["integer"]
        assert np.array_equal(f["logits_int"], run_int(integer, g["x"]).logits_int)


@pytest.mark.parametrize("doc_edit, array_edit, message", [
    (lambda d: _lif_proc(d)["params"]["options"].update(reset="soft"), None, "option 'reset' has the invalid value"),
    (lambda d: _lif_proc(d)["params"].pop("options"), None, "missing parameter 'options'"),
    (lambda d: _lif_proc(d)["params"]["options"].pop("timing"), None, "'options' must have the keys"),
    (lambda d: _lif_proc(d)["params"]["options"].update(frac_bits=99), None, "'frac_bits' must be an integer"),
    (None, lambda a: a.update({k: v * 0 for k, v in a.items() if k.endswith("/threshold")}),
     "'threshold' must be >= 1"),
    (None, lambda a: a.update({k: v[:1] for k, v in a.items() if k.endswith("/beta")}), "array 'beta' has shape"),
])
def test_lava_lif_description_is_checked_before_lava_starts(tmp_path, doc_edit, array_edit, message):
    """A tampered ``lif`` process of an exported network: one error naming the file, before Lava starts."""
    from lmhtc.targets.lava.description import LavaNetworkError, load_description
    from test_hostile import lava_copy

    net, shape = mlp("subtract")
    _, art = import_net(tmp_path, net, shape, "subtract")
    code, out = cli("export", art, "--target", "lava", "-o", tmp_path / "lava")
    assert code == 0, out
    load_description(tmp_path / "lava")      # the untampered copy loads
    bad = lava_copy(tmp_path / "lava", tmp_path / "bad", doc_edit, array_edit)
    with pytest.raises(LavaNetworkError) as err:
        load_description(bad)
    assert str(bad / "network.json") in str(err.value) and message in str(err.value), str(err.value)


def _lif_proc(doc):
    return next(p for p in doc["processes"] if p["kind"] == "lif")


def test_a_drive_gain_varying_within_a_channel_is_refused_naming_node_kind_and_target(tmp_path):
    """The lowering folds a lif's input scale into the conv weights per output channel; one that varies over
    positions cannot be folded: no integer graph, and each integer target names the node, kind and reason."""
    w = np.ones((2, 1, 3, 3), np.float32) / 4
    r = np.ones((2, 4, 4), np.float32)
    r[:, 0, 0] = 2.0
    nodes = {"input": nir.Input({"input": np.array([1, 4, 4])}),
             "conv": nir.Conv2d((4, 4), w, 1, 1, 1, 1, np.zeros(2, np.float32)),
             "lif": nir.LIF(np.full((2, 4, 4), 4e-3, np.float32), r, np.zeros((2, 4, 4), np.float32),
                            np.ones((2, 4, 4), np.float32), np.zeros((2, 4, 4), np.float32)),
             "output": nir.Output({"output": np.array([2, 4, 4])})}
    nir.write(tmp_path / "g.nir", _graph(nodes, [("input", "conv"), ("conv", "lif"), ("lif", "output")]))
    code, out = cli("import-nir", tmp_path / "g.nir", "--dialect", "generic", "--dt", 1e-3, "-o",
                    tmp_path / "g.lmhtc", "--no-progress")
    assert code == 0 and "no integer lowering" in out and "varies within a channel" in out, out
    assert "integer" not in load_artifact(tmp_path / "g.lmhtc")[0]
    np.savez(tmp_path / "x.npz", x=np.ones((2, 1, 4, 4), np.float32))
    for args, target in [(("simulate", tmp_path / "g.lmhtc", "--inputs", tmp_path / "x.npz", "--mode", "int", "-o",
                           tmp_path / "o.npz"), "int"),
                         (("export", tmp_path / "g.lmhtc", "--target", "lava", "-o", tmp_path / "lava"), "lava")]:
        assert_one_line_error(*cli(*args), f"target {target!r}", "'lif' (lif)", "varies within a channel")
    assert not (tmp_path / "o.npz").exists() and not (tmp_path / "lava").exists()


def test_import_nir_runs_the_pass_pipeline_and_stores_the_window_plan(tmp_path):
    """``import-nir`` lowers as ``compile`` does (quantize, then plan_windows): the artifact's integer graph
    carries the window-plan annotation, equal to the analysis of the graph."""
    from lmhtc.compiler.analysis.windows import META_KEY, window_plan
    net, shape = convnet("subtract")
    _, art = import_net(tmp_path, net, shape, "subtract")
    integer = load_artifact(art)[0]["integer"]
    assert integer.meta[META_KEY] == window_plan(integer) and integer.meta[META_KEY]
