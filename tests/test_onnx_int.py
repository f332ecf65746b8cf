"""Integer ONNX target: onnxruntime reproduces the integer runtime bit for bit; `lmhtc verify` compares targets."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
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


def assert_bit_exact(graph, x, float_limit=EXACT_F32):
    """Integer logits, per-step outputs, dequantized logits and every neuron layer's spikes equal the runtime's."""
    model = export_int_onnx(graph, spikes=True, float_limit=float_limit)
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
       int_path=st.booleans())
def test_random_networks_are_bit_exact(seed, net, levels, reparam, bits, int_path):
    """Property: for any small net, schedule, width and synapse lowering (float32 under 2^24, or int64 MatMul)."""
    model = randomize(TinyResNet(levels, 2) if net == "resnet" else StridedNet(levels, 3), seed)
    graph = compile_graphs(trace_to_ir(model, (2, 8, 8)), reparam=bool(reparam),
                           schedule=reparam or "uniform")["compiled"]
    cfg = QuantConfig.widest() if bits == "widest" else QuantConfig(weight_bits=bits)
    q = quantize(graph, cfg)
    x = np.random.default_rng(seed).normal(size=(5, 2, 8, 8)).astype(np.float32)
    onx, _ = assert_bit_exact(q, x, float_limit=0 if int_path else EXACT_F32)
    ops = {n.op_type for n in onx.graph.node}
    if int_path:
        assert "Conv" not in ops and "Gather" in ops         # every synapse ran as int64 MatMul
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

    assert_bit_exact(load_artifact(art)[0]["integer"], x)

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
