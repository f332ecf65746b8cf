"""`lmhtc compile --calib/--weight-bits`, `simulate --mode int` and `sweep` on a small zoo network."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmhtc.compiler.artifact import load_artifact
from lmhtc.compiler.checkpoint import ModelSpec, save_checkpoint
from lmhtc.compiler.data import load_digits_dataset
from lmhtc.compiler.training import TrainConfig, train
from lmhtc.compiler.zoo import build_snn
from conftest import assert_one_line_error, cli


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("int")
    data = load_digits_dataset("8")
    torch.manual_seed(0)
    model = build_snn("digitsnet", 2, 2, 10, "direct", (1, 8, 8))
    train(model, data.train, data.test, TrainConfig(epochs=3, progress=False))
    ckpt = save_checkpoint(tmp / "m.pth", model, ModelSpec("digitsnet", 2, 2, input_shape=(1, 8, 8),
                                                           normalization=data.normalization()))
    np.savez(tmp / "test.npz", x=data.test.x[:120], y=data.test.y[:120])
    np.savez(tmp / "calib.npz", x=data.calib.x[:64])
    return tmp, ckpt


def test_compile_with_calibration_and_simulate_int(digits_model):
    tmp, ckpt = digits_model
    art = tmp / "m.lmhtc"
    code, out = cli("compile", ckpt, "-o", art, "--calib", tmp / "calib.npz", "--weight-bits", "6", "--no-progress")
    assert code == 0, out
    assert "integer lowering: 6-bit weights (per channel), 24-bit membranes" in out and "calibration" in out
    graphs, _ = load_artifact(art)
    assert set(graphs) == {"source", "compiled", "integer"}
    assert graphs["integer"].meta["quantization"]["calibration_images"] == 64
    code, out = cli("simulate", art, "--inputs", tmp / "test.npz", "-o", tmp / "int.npz", "--mode", "int",
                    "--no-progress")
    assert code == 0, out
    with np.load(tmp / "int.npz") as f:
        r = {k: f[k] for k in f.files}
    assert {"logits", "outputs", "logits_int", "outputs_int", "spike_counts", "layer_names", "sops", "macs",
            "saturation", "sops_by_layer_step", "synaptic_layer_names"} <= set(r)
    assert r["logits_int"].dtype == np.int64 and r["logits"].dtype == np.float32
    assert r["sops"].shape == (120,) and np.array_equal(r["sops"], r["sops_by_layer_step"].sum(axis=(1, 2)))
    assert r["sops_by_layer_step"].shape == (120, 3, 4) and list(r["synaptic_layer_names"])[0] == "features.2.0"
    assert r["macs"].tolist() == [16 * 64 * 9] * 120 and r["saturation"].sum() == 0
    acc_line = [ln for ln in out.splitlines() if ln.startswith("accuracy:")][0]
    assert float(acc_line.split()[1]) > 80
    code, out = cli("inspect", art, "--graph", "integer")
    assert code == 0 and "qneuron" in out and "(int)" in out and "qconv2d" in out


def test_sweep_prints_table_plot_and_json(digits_model):
    tmp, ckpt = digits_model
    art = tmp / "s.lmhtc"
    assert cli("compile", ckpt, "-o", art, "--no-progress")[0] == 0
    code, out = cli("sweep", art, "--inputs", tmp / "test.npz", "--bits", "3,8", "--calib", tmp / "calib.npz",
                    "--plot", tmp / "sweep.png", "--json", tmp / "sweep.json", "--no-progress")
    assert code == 0, out
    for row in ("3-bit weights", "8-bit weights", "widest", "float LM-HT"):
        assert row in out
    report = json.loads((tmp / "sweep.json").read_text())
    assert [r["setting"] for r in report["rows"]] == ["3-bit weights", "8-bit weights", "widest"]
    widest = report["rows"][-1]
    assert abs(widest["delta_pp"]) <= 1.0 and widest["agreement"] >= 0.97
    assert (tmp / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("flags, fragment", [
    (["--weight-bits", "1"], "--weight-bits must be between 2 and 24"),
    (["--weight-bits", "40"], "--weight-bits must be between 2 and 24"),
    (["--calib", "missing.npz"], "missing.npz: no such file"),
    (["--quant-method", "adaround"], "--quant-method must be auto or one of maxabs, bias, mse, mse-ta"),
])
def test_bad_integer_options(digits_model, flags, fragment):
    tmp, ckpt = digits_model
    art = tmp / "bad.lmhtc"
    assert_one_line_error(*cli("compile", ckpt, "-o", art, *flags, "--no-progress"), fragment)
    assert not art.exists()


def test_simulate_int_needs_an_integer_network(digits_model):
    tmp, ckpt = digits_model
    art = tmp / "float_only.lmhtc"
    assert cli("compile", ckpt, "-o", art, "--no-int", "--no-progress")[0] == 0
    assert_one_line_error(*cli("simulate", art, "--inputs", tmp / "test.npz", "-o", tmp / "x.npz", "--mode", "int"),
                          "has no integer network")


def test_sweep_compares_methods_with_spike_agreement(digits_model):
    tmp, ckpt = digits_model
    art = tmp / "s.lmhtc"
    assert cli("compile", ckpt, "-o", art, "--quant-method", "maxabs", "--no-progress")[0] == 0
    code, out = cli("sweep", art, "--inputs", tmp / "test.npz", "--bits", "4", "--calib", tmp / "calib.npz",
                    "--methods", "maxabs,mse-ta", "--spikes", "--json", tmp / "methods.json", "--no-progress")
    assert code == 0, out
    rows = json.loads((tmp / "methods.json").read_text())["rows"]
    assert [(r["method"], r["setting"]) for r in rows] == [("maxabs", "4-bit weights"), ("mse-ta", "4-bit weights"),
                                                           ("maxabs", "widest")]
    assert all(0 < r["spikes_first"] <= 1 and 0 < r["spikes_last"] <= 1 for r in rows)
    assert rows[-1]["spikes_first"] > 0.99
    assert_one_line_error(*cli("sweep", art, "--inputs", tmp / "test.npz", "--methods", "best"), "--methods")


def test_sensitivity_table_json_and_plot(digits_model):
    tmp, ckpt = digits_model
    art = tmp / "sens.lmhtc"
    code, out = cli("compile", ckpt, "-o", art, "--calib", tmp / "calib.npz", "--no-progress")
    assert code == 0, out
    code, out = cli("sensitivity", art, "--inputs", tmp / "test.npz", "--limit", "48", "--bits", "2",
                    "--calib", tmp / "calib.npz", "--json", tmp / "sens.json", "--plot", tmp / "sens.png", "--no-progress")
    assert code == 0, out
    report = json.loads((tmp / "sens.json").read_text())
    graphs, _ = load_artifact(art)
    layers = [n.name for n in graphs["compiled"].neuron_layers()]
    assert [r["layer"] for r in report["rows"]][:-1] == layers and len(report["rows"]) == len(layers) + 1 and report["bits"] == 2 and report["images"] == 48
    worst = min(report["rows"], key=lambda r: (r["agreement"], r["spikes_last"]))
    assert report["keep_wider"] == worst["layer"] and f"keep wider: {worst['layer']}" in out
    assert report["widest_agreement"] >= 0.97 and report["rows"][-1]["spikes_layer"] is None
    assert all(0 <= r["agreement"] <= 1 for r in report["rows"])
    assert (tmp / "sens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_one_line_error(*cli("sensitivity", art, "--inputs", tmp / "test.npz", "--bits", "1"), "--bits")


def test_mixed_precision_widens_the_most_sensitive_layers(digits_model):
    tmp, ckpt = digits_model
    art = tmp / "mixed.lmhtc"
    code, out = cli("compile", ckpt, "-o", art, "--calib", tmp / "calib.npz", "--weight-bits", "2",
                    "--mixed-precision", "0.97", "--no-progress")
    assert code == 0, out
    graphs, meta = load_artifact(art)
    mp = meta["mixed_precision"]
    assert "mixed precision:" in out and mp["met"] == (mp["agreement"] >= 0.97)
    widths = {n.name: n.weight_bits for n in graphs["integer"].topo() if n.kind in ("qconv2d", "qlinear")}
    assert set(widths.values()) <= {2, 8} and (8 in widths.values()) == bool(mp["layer_bits"])
    assert graphs["integer"].meta["quantization"]["layer_bits"] == mp["layer_bits"]
    assert_one_line_error(*cli("compile", ckpt, "-o", tmp / "m2.lmhtc", "--mixed-precision", "0.9"),
                          "--mixed-precision needs --calib")
    assert not (tmp / "m2.lmhtc").exists()
