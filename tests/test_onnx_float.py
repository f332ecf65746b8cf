"""Float ONNX target: onnxruntime runs the exported graph like the float executor."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from lmhtc.compiler.cli import app
from lmhtc.compiler.executor import run_float
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.pipeline import compile_checkpoint, compile_graphs
from lmhtc.compiler.checkpoint import resolve_spec
from conftest import HYBRID_RESNET20, RESNET18, agreement_stats, assert_one_line_error
from nets import StridedNet, TinyResNet, randomize
from lmhtc.targets.onnx_float import ExportError, export_float_onnx


def ort_run(model: onnx.ModelProto, x: np.ndarray):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["logits", "outputs"], {"x": x})


@pytest.mark.parametrize("reparam, levels, schedule", [(True, 2, "uniform"), (True, 2, "exact"), (False, 4, "uniform")])
def test_random_networks_match_the_float_executor(reparam, levels, schedule):
    for model, shape in [(randomize(TinyResNet(levels, 2), 3), (2, 8, 8)),
                         (randomize(StridedNet(levels, 3), 4), (2, 8, 8))]:
        graph = compile_graphs(trace_to_ir(model, shape), reparam=reparam, schedule=schedule)["compiled"]
        onx = export_float_onnx(graph)
        assert onx.ir_version == 10 and onx.opset_import[0].version == 17
        props = {p.key: p.value for p in onx.metadata_props}
        assert props["producer"] == "lmhtc" and props["steps"] == str(graph.steps)
        x = np.random.default_rng(0).normal(size=(7, *shape)).astype(np.float32)
        logits, outputs = ort_run(onx, x)
        ref = run_float(graph, x)
        assert outputs.shape == ref.outputs.shape and logits.shape == ref.logits.shape
        stats = agreement_stats(outputs, ref.outputs)
        assert stats["argmax_agreement"] >= 0.93 and stats["within_tol"] >= 0.9, stats
        # dynamic batch: one image alone gives its row of the batch run
        one, _ = ort_run(onx, x[:1])
        assert np.allclose(one, logits[:1], atol=1e-4)


def test_hybrid_fixture_through_the_cli(fixtures, tmp_path):
    runner = CliRunner()
    art, onx = tmp_path / "r20.lmhtc", tmp_path / "r20.onnx"
    res = runner.invoke(app, ["compile", str(HYBRID_RESNET20), "-o", str(art), "--arch", "resnet20", "-L", "2",
                              "-T", "2", "--recipe", "hybrid", "--no-int", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["export", str(art), "--target", "onnx", "-o", str(onx)])
    assert res.exit_code == 0 and "IR version 10" in res.output, res.output
    with np.load(fixtures / "digits32_test.npz") as f:
        x = f["x"][:64]
    from lmhtc.compiler.artifact import load_artifact

    ref = run_float(load_artifact(art)[0]["compiled"], x)
    logits, outputs = ort_run(onnx.load(onx), x)
    stats = agreement_stats(outputs, ref.outputs)
    print("hybrid resnet20 ONNX vs float executor:", stats)
    assert stats["argmax_agreement"] >= 0.995 and stats["within_tol"] >= 0.95


def test_resnet18_fixture_matches_the_float_executor(fixtures):
    """docs/design.md §7 float rule against an executor of this project: argmax agreement ≥ 99.5 %, and most entries within
    1e-3·(1 + |ref|) (spiking nets amplify last-bit differences, so not all of them)."""
    graph = compile_checkpoint(RESNET18, resolve_spec(RESNET18, "resnet18", 2, 2, "direct", 10))["compiled"]
    with np.load(fixtures / "digits32_test.npz") as f:
        x = f["x"][:128]
    logits, outputs = ort_run(export_float_onnx(graph), x)
    ref = run_float(graph, x)
    stats = agreement_stats(outputs, ref.outputs)
    print("resnet18 ONNX vs float executor:", stats)
    assert stats["argmax_agreement"] >= 0.995 and stats["within_tol"] >= 0.9


def test_export_errors_name_the_cause(tmp_path):
    graph = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 0), (2, 8, 8)))["compiled"]
    from lmhtc.compiler.passes.quantize import quantize

    with pytest.raises(ExportError, match="integer network"):
        export_float_onnx(quantize(graph))
    res = CliRunner().invoke(app, ["export", str(tmp_path / "none.lmhtc"), "--target", "onnx",
                                   "-o", str(tmp_path / "m.onnx")])
    assert_one_line_error(res.exit_code, res.output, "none.lmhtc")
    assert not (tmp_path / "m.onnx").exists()
