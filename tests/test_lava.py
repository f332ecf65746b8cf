"""The Lava target (issue 6): bit-exact with the integer runtime, exported directory, refusals.

Every end-to-end check compares the Lava run (Loihi2SimCfg fixed_pt) with
``lmhtc.runtime.simulator.run_int``: the per-step spike counts of every neuron layer
and the integer logits must be identical.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lmhtc.compiler.checkpoint import resolve_spec
from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.intir import QConv2d, QInput, QLinear, QNeuron, QReadout, QTemporalMix, rs
from lmhtc.compiler.ir import Flatten, Graph, MaxPool2d, finalize, infer_shapes
from lmhtc.compiler.neurons import LMHTNeuron, TimeDistributed, repeat_steps
from lmhtc.compiler.passes.quantize import QuantConfig, quantize
from lmhtc.compiler.pipeline import compile_checkpoint, compile_graphs
from conftest import HYBRID_RESNET20, REPO
from nets import StridedNet, TinyResNet, randomize
from lmhtc.runtime.simulator import run_int
from lmhtc.targets.lava import export_lava, run_lava
from lmhtc.targets.lava.errors import LavaExportError, LavaRunError
from lmhtc.targets.lava.lowering import lower_to_lava, resource_totals
from lmhtc.semantics import exp_shift
from lmhtc.targets.lava.procs.fixed import conv_wh
from lmhtc.targets.lava.procs.ports import DelayLine


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tests budget one core; on a shared machine torch's second OpenMP thread mostly spins
    (measured: the fixture's quantization took 8.8 s with 2 threads, 0.35 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class GlobalPoolNet(nn.Module):
    """stem → neuron → strided conv + 1×1-conv shortcut (a residual add of two convs) → neuron →
    global average pool → flatten → linear."""

    def __init__(self, levels: int, T: int):
        super().__init__()
        self.T = T
        self.stem = TimeDistributed(nn.Conv2d(2, 4, 3, padding=1))
        self.sn0 = LMHTNeuron(levels, T)
        self.conv = TimeDistributed(nn.Conv2d(4, 6, 3, stride=2, padding=1))
        self.short = TimeDistributed(nn.Conv2d(4, 6, 1, stride=2, bias=False))
        self.sn1 = LMHTNeuron(levels, T)
        self.pool = TimeDistributed(nn.AdaptiveAvgPool2d(1))
        self.head = TimeDistributed(nn.Linear(6, 3))

    def forward(self, x):
        a = self.sn0(self.stem(repeat_steps(x, self.T)))
        b = self.sn1(self.conv(a) + self.short(a))
        return self.head(torch.flatten(self.pool(b), 2))


def int_graph(model, shape=(2, 8, 8), reparam=True, **cfg) -> Graph:
    return quantize(compile_graphs(trace_to_ir(model, shape), reparam=reparam)["compiled"], QuantConfig(**cfg))


def assert_bit_exact(graph: Graph, x: np.ndarray, lava) -> None:
    """Spikes of every neuron layer per step and the integer logits equal the runtime's."""
    names = [n.name for n in graph.topo() if isinstance(n, QNeuron)]
    ref = run_int(graph, x, capture=set(names), windows=False)
    assert np.array_equal(lava.outputs_int, ref.outputs_int)
    assert lava.outputs_int.dtype == np.int64 and lava.logits_int.dtype == np.int64
    assert np.array_equal(lava.logits_int, ref.logits_int)
    assert np.array_equal(lava.logits, ref.logits)      # same dequantization, bit for bit
    assert set(lava.spikes) == set(names)
    for name in names:
        assert lava.spikes[name].shape == ref.captured[name].shape, name
        assert np.array_equal(lava.spikes[name], ref.captured[name]), name
    assert sum(int(s.sum()) for s in lava.spikes.values()) > 0       # the comparison is not vacuous


def images(n: int, seed: int, shape=(2, 8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


# -- random small networks, end to end -------------------------------------------------------

@pytest.mark.parametrize("model, reparam, conv_model", [
    # conv, residual add with qgain, sum-pool, flatten, linear, T-GIM; L=1 after reparameterization;
    # Lava's own fixed-point Conv model
    pytest.param(lambda: randomize(TinyResNet(2, 2), 0), True, "stock", id="tinyresnet-L1-stock-conv"),
    # multi-level neurons (L = 4) before reparameterization, graded spikes
    pytest.param(lambda: randomize(TinyResNet(4, 2), 2), False, "fast", id="tinyresnet-L4-multilevel"),
    # strided, grouped and dilated convs, padded overlapping sum-pool
    pytest.param(lambda: randomize(StridedNet(2, 3), 3), True, "fast", id="stridednet-L1"),
    # residual add of two convs (1×1 shortcut), global sum-pool; multi-level
    pytest.param(lambda: randomize(GlobalPoolNet(2, 2), 5), False, "stock", id="globalpool-L2-stock-conv"),
])
def test_random_networks_are_bit_exact(model, reparam, conv_model):
    graph = int_graph(model(), reparam=reparam)
    x = images(3, 7)
    result = run_lava(graph, x, conv_model=conv_model)
    assert_bit_exact(graph, x, result)
    levels = {n.levels for n in graph.topo() if isinstance(n, QNeuron)}
    assert (levels == {1}) == reparam
    assert result.time_steps == result.latency_steps + (len(x) - 1) * graph.steps


def hand_graph(head_shift: int) -> Graph:
    """A vector network: analog input → linear → T-GIM → 2-level neuron → linear (exponent E) → readout."""
    g = Graph(steps=2, meta={"integer": True, "semantics_version": 1})
    g.add(QInput("input", [], input_shape=(3,), scale=0.5, bits=8))
    g.add(QLinear("fc", ["input"], weight=np.array([[5, -3, 2], [7, 1, 0]], np.int32), bias=None, shift=0,
                  acc_bound=10 * 127))    # Σ|w| · max|x_int|: the validator checks the stored bound
    g.add(QTemporalMix("mix", ["fc"], omega=np.array([[4096, 2048], [1024, 4096]], np.int64), frac_bits=12))
    g.add(QNeuron("sn", ["mix"], threshold=np.array([10, 6], np.int64), levels=2,
                  leak=np.array([4096, 6144], np.int64), v_init=np.array([3, 0], np.int64), leak_frac_bits=12,
                  membrane_bits=24))
    g.add(QLinear("head", ["sn"], weight=np.array([[3, -5], [-7, 2]], np.int32), bias=np.array([1, -2], np.int64),
                  shift=head_shift, acc_bound=9 * 2))
    g.add(QReadout("out", ["head"], scale=np.array([0.25, 0.5])))
    return finalize(g)


def test_vector_network_with_negative_exponent_rounds_like_the_runtime():
    """Rounding right shifts at the readout port (E = −3: ties away from zero), leak > 1, v_init, 2 levels."""
    graph = hand_graph(head_shift=-3)
    x = np.random.default_rng(1).uniform(-6, 6, size=(5, 3)).astype(np.float32)
    result = run_lava(graph, x)
    assert_bit_exact(graph, x, result)
    assert result.outputs_int.shape == (2, 5, 2) and result.spikes["sn"].max() == 2     # level-2 spikes occur


# -- the hybrid ResNet-20 fixture -----------------------------------------------------------------

def test_hybrid_resnet20_fixture_is_bit_exact(fixtures, digits32_test):
    graphs = compile_checkpoint(HYBRID_RESNET20, resolve_spec(HYBRID_RESNET20, "resnet20", 2, 2, "hybrid", 10))
    with np.load(fixtures / "digits32_calib.npz") as f:
        calib = f["x"][:8]
    graph = quantize(graphs["compiled"], QuantConfig(), calib=calib)
    x, y = digits32_test[0][:3], digits32_test[1][:3]
    result = run_lava(graph, x)
    assert_bit_exact(graph, x, result)
    assert len(result.spikes) == 19 and (result.logits.argmax(1) == y).mean() >= 2 / 3
    desc = lower_to_lava(graph)
    kinds = [p.kind for p in desc.processes]
    ir_kinds = [n.kind for n in graph.topo()]
    # 21 convs, 7 identity shortcuts (qgain) and the global sum-pool are stock Conv processes
    assert ir_kinds.count("qconv2d") == 21 and ir_kinds.count("qgain") == 7
    assert kinds.count("layer") == 19 and kinds.count("dense") == 1 and kinds.count("conv") == 21 + 7 + 1
    # the stock Conv's 24-bit output holds every synaptic sum; 19 T-GIM layers of 4 steps set the latency
    assert all(p.params["acc_bound"] < 2 ** 23 for p in desc.processes if p.kind in ("conv", "dense"))
    assert result.latency_steps == desc.meta["latency_steps"] >= 19 * graph.steps


# -- the exported directory ---------------------------------------------------------------------

def test_export_run_py_matches_and_imports_neither_compiler_nor_torch(tmp_path):
    graph = int_graph(randomize(TinyResNet(2, 2), 4), reparam=False)
    out = export_lava(graph, tmp_path / "net", metadata={"source": "test"})
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "network.json", "run.py"]
    doc = json.loads((out / "network.json").read_text())
    assert doc["meta"]["source"] == "test" and doc["steps"] == graph.steps
    per_proc = {p["name"]: p["resources"] for p in doc["processes"]}
    assert per_proc["sn0"]["neurons"] == 4 * 8 * 8 and per_proc["stem.0"]["synapses"] > 0
    # stem: 4 out × 2 in channels × (taps inside the 8×8 map of a padded 3×3 kernel: (3·8 − 2)²)
    assert per_proc["stem.0"]["synapses"] == 4 * 2 * 22 * 22
    assert per_proc["stem.0"]["synaptic_memory_bits"] == 4 * 2 * 22 * 22 * 8
    assert doc["resources"]["synapses"] == sum(r["synapses"] for r in per_proc.values())
    with np.load(out / "arrays.npz", allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)

    x = images(2, 11)
    np.savez(tmp_path / "x.npz", x=x)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-X", "importtime", str(out / "run.py"), "--inputs",
                           str(tmp_path / "x.npz"), "-o", str(tmp_path / "out.npz")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "lmhtc.targets.lava.network" in imported and "lava.proc.conv.process" in imported
    assert not {m for m in imported if m.split(".")[0] in ("compiler", "torch", "runtime")
                or m.startswith(("lmhtc.compiler", "lmhtc.runtime"))}
    with np.load(tmp_path / "out.npz", allow_pickle=False) as f:
        res = {k: f[k] for k in f.files}
    names = [n.name for n in graph.topo() if isinstance(n, QNeuron)]
    ref = run_int(graph, x, capture=set(names), windows=False)
    assert np.array_equal(res["logits_int"], ref.logits_int) and np.array_equal(res["outputs_int"], ref.outputs_int)
    assert np.array_equal(res["logits"], ref.logits) and list(res["layer_names"]) == names
    for name in names:
        assert np.array_equal(res[f"spikes/{name}"], ref.captured[name]), name


def test_export_refuses_non_empty_dir_and_leaves_nothing_on_failure(tmp_path):
    graph = int_graph(randomize(TinyResNet(2, 2), 0))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(LavaExportError, match="not an empty directory"):
        export_lava(graph, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (export_lava(graph, empty) / "run.py").is_file()      # an empty directory is fine
    float_graph = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 0), (2, 8, 8)))["compiled"]
    with pytest.raises(LavaExportError, match="not an integer network"):
        export_lava(float_graph, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty"]     # no partial or temp output


# -- refusals and bad input ---------------------------------------------------------------------

def test_refuses_max_pool_and_wide_weights():
    g = Graph(steps=2, meta={"integer": True, "semantics_version": 1})
    g.add(QInput("input", [], input_shape=(1, 4, 4), scale=0.5, bits=8))
    g.add(QConv2d("conv", ["input"], weight=np.ones((2, 1, 3, 3), np.int32), bias=None, padding=(1, 1), shift=0,
                  acc_bound=9 * 127))
    g.add(QTemporalMix("mix", ["conv"], omega=np.eye(2, dtype=np.int64) * 4096, frac_bits=12))
    g.add(QNeuron("sn", ["mix"], threshold=np.array([5, 5], np.int64), levels=1, leak=np.full(2, 4096, np.int64),
                  v_init=np.zeros(2, np.int64)))
    g.add(MaxPool2d("pool", ["sn"], kernel=(2, 2), stride=(2, 2), padding=(0, 0)))
    g.add(Flatten("flat", ["pool"]))
    g.add(QLinear("head", ["flat"], weight=np.ones((3, 8), np.int32), bias=None, shift=0, acc_bound=8))
    g.add(QReadout("out", ["head"], scale=np.ones(3)))
    with pytest.raises(LavaExportError, match=r"node 'pool' \(maxpool2d\): max-pool"):
        lower_to_lava(infer_shapes(g))      # an integer graph holding a float max-pool: Lava refuses it
    wide = int_graph(randomize(TinyResNet(2, 2), 0), weight_bits=12)
    with pytest.raises(LavaExportError, match=r"node 'stem.0' \(qconv2d\): 12-bit weights"):
        run_lava(wide, images(1, 0))


def test_bad_directory_and_inputs_give_one_line_errors(tmp_path):
    graph = int_graph(randomize(TinyResNet(2, 2), 0))
    out = export_lava(graph, tmp_path / "net")
    with pytest.raises(LavaRunError, match=r"expects \[N, 2, 8, 8\]"):
        run_lava(out, np.zeros((2, 3, 8, 8), np.float32))
    doc = json.loads((out / "network.json").read_text())
    del doc["processes"][1]["params"]["stride"]
    (out / "network.json").write_text(json.dumps(doc))
    with pytest.raises(LavaRunError, match=r"network.json: process 'stem.0': missing parameter 'stride'"):
        run_lava(out, images(1, 0))
    assert issubclass(LavaRunError, LmhtcError) and issubclass(LavaExportError, LmhtcError)
    np.savez(tmp_path / "x.npz", x=images(1, 0))
    proc = subprocess.run([sys.executable, str(out / "run.py"), "--inputs", str(tmp_path / "x.npz"), "-o",
                           str(tmp_path / "o.npz")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "missing parameter 'stride'" in lines[0], proc.stderr
    assert not (tmp_path / "o.npz").exists()
    with pytest.raises(LavaRunError, match="not found"):
        run_lava(tmp_path / "nowhere", images(1, 0))
    doc["processes"][1]["params"]["stride"] = [1, 1]
    doc["processes"][1]["params"]["groups"] = 2          # 2 groups of 2 channels: the input has 2 channels
    (out / "network.json").write_text(json.dumps(doc))
    with pytest.raises(LavaRunError, match=r"process 'stem.0': weight \(4, 3, 3, 2\) with 2 group\(s\) does not fit"):
        run_lava(out, images(1, 0))


def test_resource_totals_add_up():
    desc = lower_to_lava(int_graph(randomize(GlobalPoolNet(2, 2), 1)))
    totals = resource_totals(desc)
    layers = [p for p in desc.processes if p.kind == "layer"]
    assert totals["neurons"] == sum(p.resources["neurons"] for p in desc.processes)
    assert [p.resources["neurons"] for p in layers] == [4 * 8 * 8, 6 * 4 * 4]
    # sn1 adds a 3×3 conv and a 1×1 shortcut conv of equal delay: no delay line
    assert layers[1].resources["port_delays"] == [0, 0]
    pool = next(p for p in desc.processes if p.params.get("role") == "globalsumpool")
    assert pool.resources["synapses"] == 6 * 4 * 4


# -- properties of the building blocks --------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.data())
def test_vectorised_conv_equals_lavas_stock_conv_and_the_ir_convolution(data):
    """The fast Conv model's kernel equals lava.proc.conv.utils.conv, and with the lowering's weight
    transform (transpose + flip) equals the IR's correlation (torch conv2d) in (C, H, W) order."""
    from lava.proc.conv import utils

    d = data.draw
    groups = d(st.sampled_from([1, 2]))
    cin, cout = groups * d(st.integers(1, 2)), groups * d(st.integers(1, 2))
    kh, kw, sh, sw = d(st.integers(1, 3)), d(st.integers(1, 3)), d(st.integers(1, 2)), d(st.integers(1, 2))
    ph, pw, dh, dw = d(st.integers(0, 2)), d(st.integers(0, 2)), d(st.integers(1, 2)), d(st.integers(1, 2))
    h, w = d(st.integers(dh * (kh - 1) + 1, 7)), d(st.integers(dw * (kw - 1) + 1, 7))
    rng = np.random.default_rng(d(st.integers(0, 2 ** 16)))
    wt = rng.integers(-127, 128, (cout, cin // groups, kh, kw))
    x = rng.integers(0, 4, (cin, h, w))
    lava_w = np.ascontiguousarray(wt.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])
    xl = np.ascontiguousarray(x.transpose(2, 1, 0))
    mine = conv_wh(xl, lava_w, (sw, sh), (pw, ph), (dw, dh), groups)
    stock = utils.conv(xl.astype(np.int32), lava_w.astype(np.int32), (kw, kh), (sw, sh), (pw, ph), (dw, dh), groups)
    assert np.array_equal(mine, stock)
    ref = torch.nn.functional.conv2d(torch.tensor(x[None], dtype=torch.float64),
                                     torch.tensor(wt, dtype=torch.float64), stride=(sh, sw), padding=(ph, pw),
                                     dilation=(dh, dw), groups=groups)[0].numpy()
    assert np.array_equal(mine.transpose(2, 1, 0), ref.astype(np.int64))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-2 ** 40, 2 ** 40), min_size=1, max_size=20), st.integers(-12, 12))
def test_port_exponent_is_the_contracts_exponent(values, e):
    a = np.array(values, np.int64)
    expected = a << e if e >= 0 else rs(a, -e)
    assert np.array_equal(exp_shift(a, e), expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 6), st.lists(st.integers(-100, 100), min_size=1, max_size=30))
def test_delay_line_delays_by_exactly_its_length(delay, values):
    line = DelayLine(delay, (1,))
    out = [int(line.push(np.array([v]))[0]) for v in values]
    assert out == ([0] * delay + values)[:len(values)]


def test_exact_schedule_export_cli_and_verify(tmp_path):
    """Issue 9's front-loaded schedule runs on Lava bit-exactly too, through `lmhtc export` and `lmhtc verify`."""
    import json as _json

    from typer.testing import CliRunner

    from lmhtc.compiler.artifact import save_artifact
    from lmhtc.compiler.cli import app

    graphs = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 11), (2, 8, 8)), schedule="exact")
    graphs["integer"] = quantize(graphs["compiled"])
    art, inputs, report, out = tmp_path / "a.lmhtc", tmp_path / "x.npz", tmp_path / "v.json", tmp_path / "lava"
    save_artifact(art, graphs)
    x = np.random.default_rng(11).normal(size=(3, 2, 8, 8)).astype(np.float32)
    np.savez(inputs, x=x)
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(art), "--target", "lava", "-o", str(out)])
    assert res.exit_code == 0 and (out / "run.py").is_file(), res.output
    assert_bit_exact(graphs["integer"], x, run_lava(out, x))
    res = runner.invoke(app, ["verify", str(art), "--inputs", str(inputs), "--targets", "int,onnx-int,lava",
                              "--json", str(report), "--no-progress"])
    assert res.exit_code == 0, res.output
    doc = _json.loads(report.read_text())
    assert [(p["a"], p["b"]) for p in doc["pairs"]] == [("int", "onnx-int"), ("int", "lava"), ("onnx-int", "lava")]
    assert all(p["bit_exact"] and p["spikes_equal"] and p["required_bit_exact"] for p in doc["pairs"])


def test_every_process_kind_has_its_value_rule_and_a_shape_rule():
    """The description checks are per-kind tables: each process kind has a value rule, and the kinds without
    their own shape rule are the neuron kinds and the readout (checked against their own shape)."""
    from lmhtc.targets.lava.description import KINDS, SHAPE_RULES, VALUE_RULES
    assert set(VALUE_RULES) == set(KINDS)
    assert set(KINDS) - set(SHAPE_RULES) == {"layer", "lif", "readout"} and set(SHAPE_RULES) <= set(KINDS)
