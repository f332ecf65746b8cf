"""Integer ONNX target: onnxruntime reproduces the integer runtime bit for bit; `lmhtc verify` compares targets."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lmhtc.compiler.checkpoint import resolve_spec
from lmhtc.compiler.cli import app
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.passes.quantize import QuantConfig, quantize
from lmhtc.compiler.pipeline import compile_checkpoint, compile_graphs
from conftest import HYBRID_RESNET20, RESNET18, assert_one_line_error
from nets import StridedNet, TinyResNet, randomize
from lmhtc.runtime.simulator import run_int
from lmhtc.targets.onnx_int import EXACT_F32, ExportError, export_int_onnx, value_bounds


def ort_outputs(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"x": x})))


def assert_bit_exact(graph, x, float_limit=EXACT_F32, int8=True):
    """Integer logits, per-step outputs, dequantized logits and every neuron layer's spikes equal the runtime's."""
    model = export_int_onnx(graph, spikes=True, float_limit=float_limit, int8=int8)
    got = ort_outputs(model, x)
    neurons = [n.name for n in graph.topo() if n.kind == "qneuron"]
    ref = run_int(graph, x, capture=set(neurons), windows=False)
    assert got["logits_int"].dtype == np.int64
    np.testing.assert_array_equal(got["logits_int"], ref.logits_int)
    np.testing.assert_array_equal(got["outputs_int"], ref.outputs_int)
    np.testing.assert_array_equal(got["logits"], ref.logits)          # float64, computed the same way
    np.testing.assert_array_equal(got["outputs"], ref.outputs)
    for n in neurons:
        np.testing.assert_array_equal(got[f"spikes/{n}"], ref.captured[n], err_msg=n)
    assert ref.spike_counts.sum() > 0
    return model, ref


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), net=st.sampled_from(["resnet", "strided"]), levels=st.sampled_from([2, 3]),
       reparam=st.sampled_from([False, "uniform", "exact"]), bits=st.sampled_from([4, 8, 16, "widest"]),
       path=st.sampled_from(["int8", "float", "int64"]))
def test_random_networks_are_bit_exact(seed, net, levels, reparam, bits, path):
    """Property: for any small net, schedule, width and synapse lowering (uint8 ConvInteger/MatMulInteger where
    inputs and weights fit, float32 under 2^24, or int64 MatMul)."""
    model = randomize(TinyResNet(levels, 2) if net == "resnet" else StridedNet(levels, 3), seed)
    graph = compile_graphs(trace_to_ir(model, (2, 8, 8)), reparam=bool(reparam),
                           schedule=reparam or "uniform")["compiled"]
    cfg = QuantConfig.widest() if bits == "widest" else QuantConfig(weight_bits=bits)
    q = quantize(graph, cfg)
    x = np.random.default_rng(seed).normal(size=(5, 2, 8, 8)).astype(np.float32)
    onx, _ = assert_bit_exact(q, x, float_limit=0 if path == "int64" else EXACT_F32, int8=path == "int8")
    ops = {n.op_type for n in onx.graph.node}
    if path == "int64":
        assert not ops & {"Conv", "ConvInteger", "MatMulInteger"} and "Gather" in ops   # int64 MatMul only
    elif path == "float":
        assert not ops & {"ConvInteger", "MatMulInteger"}
    elif bits in (4, 8):
        assert {"ConvInteger", "MatMulInteger"} <= ops and "Conv" not in ops
    # dynamic batch: one image alone gives its row of the batch run
    one = ort_outputs(onx, x[:1])
    np.testing.assert_array_equal(one["logits_int"], ort_outputs(onx, x)["logits_int"][:1])


def test_value_bounds_hold_on_data():
    """The emitter's range analysis bounds every synaptic sum actually formed."""
    q = quantize(compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 1), (2, 8, 8)))["compiled"])
    edge, sums = value_bounds(q)
    x = np.random.default_rng(1).normal(size=(8, 2, 8, 8)).astype(np.float32) * 3
    names = {n.name for n in q.topo()}
    ref = run_int(q, x, capture=names, windows=False)
    for name in names:
        assert np.abs(ref.captured[name]).max() <= edge[name], name
    assert sums["stem.0"] == int(np.abs(q.node("stem.0").weight).reshape(4, -1).sum(1).max()) * 127


def test_hybrid_fixture_export_cli_and_verify(fixtures, tmp_path):
    runner = CliRunner()
    art, onx = tmp_path / "r20.lmhtc", tmp_path / "r20_int.onnx"
    res = runner.invoke(app, ["compile", str(HYBRID_RESNET20), "-o", str(art), "--arch", "resnet20", "-L", "2",
                              "-T", "2", "--recipe", "hybrid", "--calib", str(fixtures / "digits32_calib.npz"),
                              "--calib-limit", "32", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["export", str(art), "--target", "onnx-int", "-o", str(onx), "--spikes"])
    assert res.exit_code == 0 and "IR version 10" in res.output, res.output
    model = onnx.load(onx)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["producer"] == "lmhtc" and props["semantics_version"] == "1" and props["integer"] == "true"
    assert props["levels"] == "2" and props["steps"] == "4" and props["recipe"] == "hybrid"
    with np.load(fixtures / "digits32_test.npz") as f:
        x = f["x"][:16]
    from lmhtc.compiler.artifact import load_artifact

    integer = load_artifact(art)[0]["integer"]
    from lmhtc.compiler.analysis.windows import planned_windows
    from lmhtc.targets.onnx_int_affine import affine_nodes

    kept = affine_nodes(integer, value_bounds(integer)[1], planned_windows(integer))
    assert {integer.node(n).kind for n in kept} == {"qconv2d", "qgain", "add"}     # T-GIM on 2^e·P + c
    assert_bit_exact(integer, x)

    inputs, report = tmp_path / "x.npz", tmp_path / "verify.json"
    np.savez(inputs, x=x)
    res = runner.invoke(app, ["verify", str(art), "--inputs", str(inputs), "--targets", "float,int,onnx,onnx-int",
                              "--json", str(report), "--no-progress"])
    assert res.exit_code == 0, res.output
    doc = json.loads(report.read_text())
    assert doc["targets"] == ["float", "int", "onnx", "onnx-int"] and len(doc["pairs"]) == 6
    pair = {(p["a"], p["b"]): p for p in doc["pairs"]}
    exact = pair[("int", "onnx-int")]
    assert exact["bit_exact"] and exact["spikes_equal"] and exact["max_abs_dlogits"] == 0.0
    assert len(exact["layer_mismatches"]) == 19 and not any(exact["layer_mismatches"].values())
    assert pair[("float", "onnx")]["argmax_agreement"] == 1.0 and pair[("float", "onnx")]["spikes_equal"] is None
    assert pair[("float", "int")]["argmax_agreement"] >= 0.9


def test_resnet18_fixture_is_bit_exact(fixtures):
    graphs = compile_checkpoint(RESNET18, resolve_spec(RESNET18, "resnet18", 2, 2, "direct", 10))
    with np.load(fixtures / "digits32_test.npz") as f:
        x = f["x"][:4]
    q = quantize(graphs["compiled"])          # data-free rule: no calibration run
    _, ref = assert_bit_exact(q, x)
    assert ref.saturation.sum() == 0


def test_verify_exits_nonzero_when_a_bit_exact_pair_differs(tmp_path, monkeypatch):
    graphs = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 4), (2, 8, 8)))
    graphs["integer"] = quantize(graphs["compiled"])
    from lmhtc.compiler.artifact import save_artifact

    art, inputs, report = tmp_path / "a.lmhtc", tmp_path / "x.npz", tmp_path / "v.json"
    save_artifact(art, graphs)
    np.savez(inputs, x=np.random.default_rng(4).normal(size=(3, 2, 8, 8)).astype(np.float32))
    runner = CliRunner()
    res = runner.invoke(app, ["verify", str(art), "--inputs", str(inputs), "--targets", "int,onnx-int",
                              "--json", str(report), "--no-progress"])
    assert res.exit_code == 0 and "bit-exact" in res.output, res.output

    import lmhtc.compiler.verify as tv

    real = tv.run_target

    def corrupted(name, *args, **kwargs):
        run = real(name, *args, **kwargs)
        if name == "onnx-int":           # one flipped spike in one layer
            layer = sorted(run.spikes)[0]
            run.spikes[layer] = run.spikes[layer].copy()
            run.spikes[layer].flat[0] ^= 1
        return run

    monkeypatch.setattr(tv, "run_target", corrupted)
    res = runner.invoke(app, ["verify", str(art), "--inputs", str(inputs), "--targets", "int,onnx-int",
                              "--json", str(report), "--no-progress"])
    assert res.exit_code == 1 and "int vs onnx-int" in res.output, res.output
    doc = json.loads(report.read_text())
    assert doc["pairs"][0]["spikes_equal"] is False and doc["pairs"][0]["bit_exact"] is False
    assert sum(doc["pairs"][0]["layer_mismatches"].values()) == 1


def test_verify_compares_batch_by_batch_without_keeping_spike_trains(monkeypatch):
    """A batch record holds logits and per-layer counts of differing entries, no spike trains (memory stays one
    batch's); batches of 2 add up to the counts of one batch, flipped spikes included."""
    import lmhtc.compiler.verify as tv

    graphs = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 4), (2, 8, 8)))
    graphs["integer"] = quantize(graphs["compiled"])
    x = np.random.default_rng(4).normal(size=(5, 2, 8, 8)).astype(np.float32)
    record = tv.run_batch(graphs, x, ["float", "int", "onnx-int"], {})
    arrays = {k: type(v).__name__ for run in record["runs"].values() for k, v in run.items()
              if isinstance(v, np.ndarray)}
    assert set(arrays) == {"logits", "logits_int"} and list(record["mismatches"]) == ["int vs onnx-int"]

    real = tv.run_target

    def corrupted(name, graphs, x, *args, **kwargs):     # every sample's first spike of one layer flipped
        run = real(name, graphs, x, *args, **kwargs)
        if name == "onnx-int":
            layer = sorted(run.spikes)[0]
            run.spikes[layer] = run.spikes[layer].copy()
            run.spikes[layer][0, :].reshape(x.shape[0], -1)[:, 0] ^= 1
        return run

    monkeypatch.setattr(tv, "run_target", corrupted)
    whole = tv.verify(graphs, x, ["int", "onnx-int"])[1][0]
    parts = tv.verify(graphs, x, ["int", "onnx-int"], batch_size=2)[1][0]
    assert sum(whole.layer_mismatches.values()) == 5 and whole.layer_mismatches == parts.layer_mismatches
    assert not parts.bit_exact and parts.spikes_equal is False


def test_errors_name_the_cause(tmp_path):
    graph = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 0), (2, 8, 8)))["compiled"]
    with pytest.raises(ExportError, match="float network"):
        export_int_onnx(graph)
    q = quantize(graph)
    q.node("conv.0").weight = np.full_like(q.node("conv.0").weight, 2 ** 58, dtype=np.int64)
    with pytest.raises(ExportError, match="'conv.0'.*do not fit int64"):
        export_int_onnx(q)

    from lmhtc.compiler.artifact import save_artifact

    art, inputs = tmp_path / "float_only.lmhtc", tmp_path / "x.npz"
    save_artifact(art, compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 0), (2, 8, 8))))
    np.savez(inputs, x=np.zeros((2, 2, 8, 8), np.float32))
    runner = CliRunner()
    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", str(art), "--target", "onnx-int", "-o", str(out)])
    assert_one_line_error(res.exit_code, res.output, "float_only.lmhtc", "integer graph")
    assert not out.exists()
    res = runner.invoke(app, ["verify", str(art), "--inputs", str(inputs), "--targets", "float,int", "--no-progress"])
    assert_one_line_error(res.exit_code, res.output, "target 'int'", "no integer graph")
    res = runner.invoke(app, ["verify", str(art), "--inputs", str(inputs), "--targets", "float,gpu"])
    assert_one_line_error(res.exit_code, res.output, "'gpu'")
    res = runner.invoke(app, ["export", str(art), "--target", "tflite", "-o", str(out)])
    assert_one_line_error(res.exit_code, res.output, "'tflite'")


def _calibrated_tiny(reparam: str, seed: int = 3):
    graph = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), seed), (2, 8, 8)), schedule=reparam)["compiled"]
    calib = np.random.default_rng(seed).normal(size=(16, 2, 8, 8)).astype(np.float32)
    return quantize(graph, QuantConfig(), calib=calib), calib


@pytest.mark.parametrize("reparam, int8", [("exact", True), ("uniform", True), ("exact", False)])
def test_reference_evaluator_is_bit_exact_with_the_runtime(reparam, int8):
    """onnx's own ReferenceEvaluator runs the model (ConvInteger and MatMulInteger, or float32 Conv and MatMul on
    the same integers; int32 edges, the split T-GIM, the int32 leak) to the runtime's integers: every output and
    every neuron layer's spikes."""
    from onnx.reference import ReferenceEvaluator

    q, calib = _calibrated_tiny(reparam)
    x = calib[:3] * 1.5
    model, ref = assert_bit_exact(q, x, int8=int8)
    ops = {n.op_type for n in model.graph.node}
    if int8:
        assert {"ConvInteger", "MatMulInteger"} <= ops and not ops & {"Conv", "MatMul", "Gather"}
    else:
        assert {"Conv", "MatMul"} <= ops and not ops & {"ConvInteger", "MatMulInteger", "Gather"}
    names = [o.name for o in model.graph.output]
    got = dict(zip(names, ReferenceEvaluator(model).run(names, {"x": x})))
    np.testing.assert_array_equal(got["logits_int"], ref.logits_int)
    np.testing.assert_array_equal(got["outputs_int"], ref.outputs_int)
    np.testing.assert_array_equal(got["logits"], ref.logits)
    for n in names:
        if n.startswith("spikes/"):
            np.testing.assert_array_equal(got[n], ref.captured[n[len("spikes/"):]], err_msg=n)


def _edge_types(model: onnx.ModelProto) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}


def test_resnet18_fixture_runs_on_integer_kernels_with_int32_edges(fixtures):
    """The calibrated ResNet-18 (the benchmark's network): every synapse but the readout's input encoding is a
    uint8 ConvInteger/MatMulInteger, one per window of the exact schedule (2 of 4 steps), no im2col and no
    float convolution; T-GIM and neuron values are int32 (int64 only at the outputs); bit-exact."""
    graphs = compile_checkpoint(RESNET18, resolve_spec(RESNET18, "resnet18", 2, 2, "direct", 10))
    with np.load(fixtures / "digits32_calib.npz") as f:
        q = quantize(graphs["compiled"], QuantConfig(), calib=f["x"][:16])
    with np.load(fixtures / "digits32_test.npz") as f:
        x = f["x"][:2]
    model, ref = assert_bit_exact(q, x)
    count = {}
    for n in model.graph.node:
        count[n.op_type] = count.get(n.op_type, 0) + 1
    convs = [n for n in q.topo() if n.kind == "qconv2d"]
    assert count["ConvInteger"] == 1 + 2 * (len(convs) - 1)        # the static stem once, the rest per window
    assert count["MatMulInteger"] == q.steps and not {"Conv", "MatMul", "Gather"} & set(count)
    types = _edge_types(model)
    wide = {n.name.rsplit("__", 1)[0] for n in model.graph.node
            if any(types.get(o) == TensorProto.INT64 for o in n.output)}
    assert wide <= {"readout", "fc.0"} | {n.name for n in q.topo() if n.kind == "qinput"}, sorted(wide)
    assert ref.saturation.sum() == 0


def _run_int32(build, inputs: dict[str, np.ndarray], n_out: int) -> list[list[np.ndarray]]:
    """An op pattern on int32 inputs, run by onnxruntime and by onnx's reference evaluator (outputs int64)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    from lmhtc.targets.onnx_common import IR_VERSION, OPSET
    from lmhtc.targets.onnx_int import _IntBuilder

    b = _IntBuilder()
    for k in inputs:
        b.dt[k] = TensorProto.INT32
    outs = build(b)
    names = [f"out{i}" for i in range(n_out)]
    for o, n in zip(outs, names):
        b.op("Cast", [o], "out", out=n, to=TensorProto.INT64)
    vi = [helper.make_tensor_value_info(k, TensorProto.INT32, v.shape) for k, v in inputs.items()]
    shape = next(iter(inputs.values())).shape           # every output has the inputs' shape
    vo = [helper.make_tensor_value_info(n, TensorProto.INT64, shape) for n in names]
    model = helper.make_model(helper.make_graph(b.nodes, "op", vi, vo, initializer=b.inits),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {k: v.astype(np.int32) for k, v in inputs.items()}
    return [sess.run(names, feeds), ReferenceEvaluator(model).run(names, feeds)], b


def test_int32_temporal_mix_split_form_equals_the_semantics():
    """The split form of T-GIM (sums beyond int32, computed in int32) on values at the rounding ties of both
    signs, with positive and negative weights: equal to ``semantics.temporal_mix``."""
    from lmhtc import semantics
    from lmhtc.compiler.intir import QTemporalMix
    from lmhtc.targets.onnx_int import _mix

    rng = np.random.default_rng(5)
    f = 12
    ties = np.array([(k << f) + (1 << (f - 1)) for k in range(-40, 40)] + [0, 1, -1, (1 << 24) - 1, -(1 << 24)])
    y = np.stack([np.concatenate([ties, rng.integers(-2**24, 2**24, 60)]) for _ in range(3)]).astype(np.int64)
    for omega in (np.array([[2076, 2052, 0], [0, 0, 0], [2072, -2039, 4095]]),
                  rng.integers(-4096, 4097, (3, 3))):
        node = QTemporalMix("mix", omega=omega.astype(np.int64), frac_bits=f)
        want = semantics.temporal_mix(y, omega, f)
        feeds = {f"y{t}": y[t] for t in range(3)}
        bound = int(np.abs(y).max())
        runs, b = _run_int32(lambda b: _mix(b, node, list(feeds), 3, 1, bound, bound), feeds, 3)
        assert b.type_of(next(n.output[0] for n in b.nodes if n.op_type == "Div")) == TensorProto.INT32
        for got in runs:
            np.testing.assert_array_equal(np.stack(got), want)


def test_int32_neuron_loop_equals_the_semantics():
    """The int32 neuron loop (leak steps in the split form rs(λV) = V + ⌊(dV − [V<0] + 2^(F−1)) / 2^F⌋, the
    Clip only where bounds allow saturation) equals ``semantics.neuron_step`` iterated, saturating cases
    included; where the bounds do not fit int32 the loop is int64 and still equal."""
    from semantics_cases import NEURON, neuron_reference

    from lmhtc.compiler.intir import QNeuron
    from lmhtc.targets.onnx_int import _neuron, _neuron_type

    rng = np.random.default_rng(9)
    f = 12
    int32_cases = [c for c in NEURON if np.abs(c["current"]).max() < 2**31]     # currents enter as int32 here
    cases = int32_cases + [dict(current=rng.integers(-3 * 2**22, 3 * 2**22, (4, 2, 6)), levels=lv,
                                 leak=np.array([4123, 4096, 4059, 4101]), leak_frac_bits=f,
                                 theta=rng.integers(1, 2**20, 6), v_init=rng.integers(0, 2**20, 6),
                                 membrane_bits=24) for lv in (1, 2)]
    # d·V at the rounding ties of rs(λV, 12) (odd d, V = ±2048·odd), then a current that puts the correctly
    # rounded membrane at Θ − 1: a rounding one too high makes a spike
    from lmhtc import semantics

    v1 = np.stack([2048 * (2 * np.arange(-12, 12) + 1), -2048 * (2 * np.arange(-12, 12) + 1)])
    theta = 2 ** 20
    zero = np.zeros_like(v1)
    cases.append(dict(current=np.stack([v1, zero, theta - 1 - semantics.rs(4123 * v1, f), zero]), levels=1,
                      leak=np.array([4096, 4096, 4123, 4096]), leak_frac_bits=f, theta=np.full(24, theta),
                      v_init=np.zeros(24, np.int64), membrane_bits=24))
    kinds = set()
    for case in cases:
        node = QNeuron("sn", shape=(case["current"].shape[-1],), threshold=case["theta"], levels=case["levels"],
                       leak=case["leak"], v_init=case["v_init"], leak_frac_bits=case["leak_frac_bits"],
                       membrane_bits=case["membrane_bits"])
        bound = int(np.abs(case["current"]).max())
        kinds.add(_neuron_type(node, bound))
        rk, _ = neuron_reference(case)
        feeds = {f"i{t}": case["current"][t] for t in range(len(case["current"]))}
        runs, _ = _run_int32(lambda b: _neuron(b, node, list(feeds), len(feeds), cur_bound=bound), feeds, len(feeds))
        for got in runs:
            np.testing.assert_array_equal(np.stack(got), rk)
    assert kinds == {TensorProto.INT32, TensorProto.INT64}


@pytest.mark.parametrize("schedule", ["exact", "uniform"])
@pytest.mark.parametrize("cfg", [QuantConfig(), QuantConfig(membrane_bits=9), QuantConfig.widest()])
def test_window_neurons_equal_the_per_step_neurons(schedule, cfg, monkeypatch):
    """A neuron whose spike counts are read only as window sums is emitted as one multi-level step per window
    (exact schedule: the steps after a window's first are silent); its integer logits are the per-step
    export's (``spikes=True`` keeps every step) and the runtime's, in onnxruntime and onnx's evaluator; 9-bit
    membranes (the plan runs them per step) and the int64 loop of the widest setting too."""
    from onnx.reference import ReferenceEvaluator

    import lmhtc.targets.onnx_int as onnx_int
    from lmhtc.compiler.analysis.windows import planned_windows
    from nets import DownsampleNet

    windows: list[int] = []
    real = onnx_int._window_neuron
    monkeypatch.setattr(onnx_int, "_window_neuron", lambda *a: windows.append(real(*a)) or windows[-1])
    for model in (randomize(TinyResNet(2, 2), 6), randomize(DownsampleNet(2, 2), 7)):
        q = quantize(compile_graphs(trace_to_ir(model, (2, 8, 8)), schedule=schedule)["compiled"], cfg)
        x = (2 * np.random.default_rng(8).normal(size=(6, 2, 8, 8))).astype(np.float32)
        want = run_int(q, x, batch_size=6).logits_int
        windows.clear()
        fast = export_int_onnx(q)
        windowed = any(lw > 1 for lw in planned_windows(q).values())      # 9-bit membranes: a per-step plan
        assert (2 in windows) == (schedule == "exact" and windowed) and set(windows) <= {1, 2}
        windows.clear()
        per_step = export_int_onnx(q, spikes=True)
        assert set(windows) == {1}
        for m in (fast, per_step):
            sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            assert np.array_equal(sess.run(["logits_int"], {"x": x})[0], want)
            assert np.array_equal(ReferenceEvaluator(m).run(["logits_int"], {"x": x})[0], want)


@pytest.mark.parametrize("bias", ["mixed", "none", "odd"])
@pytest.mark.parametrize("e", [1, 6, 11])
@pytest.mark.parametrize("top", [490_000, 60_000])
def test_affine_mix_equals_the_semantics(bias, e, top):
    """T-GIM on values kept as 2^e·P + c (onnx_int_affine): the int32 currents equal ``semantics.temporal_mix``
    of the full values, whose sums need more than 31 bits, at the rounding ties of both signs, for constants
    whose low e bits are zero in some channels (z = 1), every channel (no bias) or (mostly) none, with sums too
    wide for the offset floor and narrow enough for it."""
    from lmhtc import semantics
    from lmhtc.compiler.intir import QTemporalMix
    from lmhtc.targets.onnx_int_affine import affine_mix

    rng = np.random.default_rng(e)
    f, ch = 12, 6
    m = 1 << (f - e)
    ties = np.array([k * m + (m >> 1) + d for k in range(-20, 20) for d in (-1, 0, 1)])
    p = np.stack([np.concatenate([ties, rng.integers(-top, top, 40), [top, -top]])
                  for _ in range(2)])            # [windows, n]: Σ|ω|·|P| < 2^31; 60 000: the offset floor fits
    p = np.repeat(p[:, :, None], ch, axis=2)                                                      # [windows, n, C]
    c = {"mixed": np.array([0, 1 << e, 3, -(5 << e), -7, 12345]), "none": None,
         "odd": np.array([1, -3, 5, 7, -9, 11])}[bias]
    cv = np.zeros(ch, np.int64) if c is None else c.astype(np.int64)
    bound = int(np.abs(p).max())
    small = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [3, 0, -2, 0], [0, 0, 0, 0]], np.int64)
    for omega, p_bound in ((np.array([[2076, 0, 2052, 0], [0, 0, 0, 0], [2072, 0, -2039, 0], [0, 0, 0, 0]], np.int64),
                            bound), (small, bound), (small, 2**29)):       # 2^29: a loose bound, no offset floor
        q = p.copy()
        if omega[0, 0] == 1:     # row 0 is P_0 itself: put A + C1 at −3…3 in every channel (the sign's edge)
            c1 = (cv * 1) >> e
            q[0, :7] = -c1 + np.arange(-3, 4)[:, None]
        node = QTemporalMix("mix", omega=omega, frac_bits=f)
        y = (q << e) + cv                                           # the full values, per window
        win = omega[:, ::2]                                          # one column per window (w_in = 2)
        want = np.stack([semantics.rs(win[t, 0] * y[0] + win[t, 1] * y[1], f) for t in range(4)])
        feeds = {f"p{w}": q[w] for w in range(2)}
        runs, _ = _run_int32(lambda b: [v for v in affine_mix(b, node, list(feeds), e, c, 4, 2, TensorProto.INT32,
                                                              p_bound + 2**12) if v is not None], feeds, 2)
        assert top < 490_000 or omega[0, 0] == 1 or np.abs(y).max() * 4128 > 2**31   # Σ ω·y needs 32+ bits
        for got in runs:
            np.testing.assert_array_equal(np.stack(got), want[[0, 2]])


def test_affine_values_are_kept_only_where_every_consumer_takes_them():
    """``affine_nodes``: a sum reaching a mix through an add is kept as 2^e·P + c, but not when one of its
    values also goes elsewhere (here a mix whose F ≤ e cannot take it); the add then goes too, and with it
    its other input."""
    from lmhtc.compiler.intir import QConv2d, QInput, QTemporalMix
    from lmhtc.compiler.ir import Add, Graph
    from lmhtc.targets.onnx_int_affine import affine_nodes

    def conv(name, shift):
        w = np.ones((2, 1, 3, 3), np.int32)
        return QConv2d(name, ["x"], shape=(2, 4, 4), weight=w, bias=np.array([3, -5]), shift=shift, stride=(1, 1),
                       padding=(1, 1), dilation=(1, 1), groups=1)

    omega = np.array([[2048, 0, 2048, 0], [0] * 4, [2048, 0, 2048, 0], [0] * 4], np.int64)
    for second_use in (False, True):
        g = Graph(4)
        g.add(QInput("x", shape=(1, 4, 4), scale=0.1, bits=8))
        g.add(conv("a", 6))
        g.add(conv("b", 4))
        g.add(Add("s", ["a", "b"]))
        g.add(QTemporalMix("m", ["s"], omega=omega, frac_bits=12))
        if second_use:
            g.add(QTemporalMix("m2", ["a"], omega=omega, frac_bits=6))     # F − 1 < e: no affine form
        kept = affine_nodes(g, {"a": 9 * 127, "b": 9 * 127}, {})
        assert kept == ({} if second_use else {"a": (6, 1143, 5), "b": (4, 1143, 5), "s": (4, 1143 * 4 + 1143, 10)})


@pytest.mark.parametrize("vnni", [True, False])
def test_the_default_products_follow_the_cpu(vnni, monkeypatch, tmp_path):
    """``products="auto"`` (the default) takes onnxruntime's uint8 kernels where the CPU has VNNI/AMX and float32
    Conv/MatMul elsewhere (faster there); explicit choices win; the metadata says which; all are bit-exact."""
    from conftest import assert_one_line_error, cli

    from lmhtc.compiler.artifact import save_artifact
    from lmhtc.runtime import int8 as int8_mod

    monkeypatch.setattr(int8_mod, "int8_dot_product", lambda: vnni)
    q, calib = _calibrated_tiny("exact")
    x = calib[:4]
    want = run_int(q, x).logits_int
    for products, uint8 in (("auto", vnni), ("uint8", True), ("float", False)):
        model = export_int_onnx(q, products=products)
        ops = {n.op_type for n in model.graph.node}
        assert ("ConvInteger" in ops) == uint8 and ("Conv" in ops) == (not uint8), products
        props = {p.key: p.value for p in model.metadata_props}
        assert props["synaptic_products"] == ("uint8" if uint8 else "float")
        np.testing.assert_array_equal(ort_outputs(model, x)["logits_int"], want)
    with pytest.raises(ExportError, match="--products"):
        export_int_onnx(q, products="int4")
    art, onx = tmp_path / "t.lmhtc", tmp_path / "t.onnx"
    save_artifact(art, {"integer": q})
    code, out = cli("export", art, "--target", "onnx-int", "-o", onx, "--products", "int4")
    assert_one_line_error(code, out, "--products", "int4")
    assert not onx.exists()
    code, out = cli("export", art, "--target", "onnx-int", "-o", onx, "--products", "float")
    assert code == 0, out
    assert {p.key: p.value for p in onnx.load(onx).metadata_props}["synaptic_products"] == "float"
