"""`lmhtc compile / inspect / simulate / exactness` end to end on the authors' fixtures (≤ 64 images)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmhtc.compiler.checkpoint import ModelSpec, save_checkpoint
from lmhtc.compiler.zoo import build_snn
from conftest import HYBRID_RESNET20, RESNET18, agreement_stats, assert_one_line_error, cli

N = 64
R18 = ["--arch", "resnet18", "--levels", "2", "--timesteps", "2", "--recipe", "direct", "--num-classes", "10"]
R20 = ["--arch", "resnet20", "--levels", "2", "--timesteps", "2", "--recipe", "hybrid", "--num-classes", "10"]


def ok(*args):
    code, out = cli(*args)
    assert code == 0, out
    return out


@pytest.fixture(scope="module")
def subset(tmp_path_factory, fixtures):
    path = tmp_path_factory.mktemp("data") / "test64.npz"
    with np.load(fixtures / "digits32_test.npz") as f:
        np.savez(path, x=f["x"][:N], y=f["y"][:N])
    return path


@pytest.fixture(scope="module")
def r18_artifact(tmp_path_factory, fixtures):
    path = tmp_path_factory.mktemp("art") / "r18.lmhtc"
    ok("compile", RESNET18, "-o", path, *R18, "--reparam", "uniform", "--no-progress")   # vs reparam_out
    return path


def simulate(artifact, inputs, tmp_path, *extra):
    out = tmp_path / "sim.npz"
    ok("simulate", artifact, "--inputs", inputs, "-o", out, "--mode", "float", "--no-progress", *extra)
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def test_resnet18_reparameterized_matches_authors_reparam_out(r18_artifact, subset, fixtures, tmp_path):
    res = simulate(r18_artifact, subset, tmp_path)
    assert set(res) == {"logits", "outputs", "spike_counts", "layer_names"}
    assert res["outputs"].shape == (4, N, 10) and res["logits"].shape == (N, 10)
    assert res["spike_counts"].shape == (N, 17) and res["layer_names"][0] == "sn1"
    assert np.allclose(res["logits"], res["outputs"].mean(0), atol=1e-6)
    with np.load(fixtures / "resnet18_digits_L2_T2_golden.npz") as g:
        stats = agreement_stats(res["outputs"], g["reparam_out"][:, :N])
    print("resnet18 reparameterized vs golden reparam_out:", stats)
    assert stats["argmax_agreement"] >= 0.995
    assert stats["mean_abs_diff"] < 0.05 and stats["within_tol"] >= 0.8


def test_resnet18_no_reparam_matches_lmht_out(subset, fixtures, tmp_path):
    art = tmp_path / "r18_mht.lmhtc"
    ok("compile", RESNET18, "-o", art, *R18, "--no-reparam", "--no-progress")
    res = simulate(art, subset, tmp_path)
    assert res["outputs"].shape == (2, N, 10)
    with np.load(fixtures / "resnet18_digits_L2_T2_golden.npz") as g:
        stats = agreement_stats(res["outputs"], g["lmht_out"][:, :N])
    print("resnet18 --no-reparam vs golden lmht_out:", stats)
    assert stats["argmax_agreement"] >= 0.995 and stats["mean_abs_diff"] < 0.05


def test_hybrid_resnet20_no_reparam_matches_lmht_out_and_reparam_reports_exactness(subset, fixtures, tmp_path):
    art = tmp_path / "r20_mht.lmhtc"
    ok("compile", HYBRID_RESNET20, "-o", art, *R20, "--no-reparam", "--no-progress")
    res = simulate(art, subset, tmp_path)
    with np.load(fixtures / "hybrid_resnet20_digits_Q8_L2_T2_golden.npz") as g:
        stats = agreement_stats(res["outputs"], g["lmht_out"][:, :N])
    print("hybrid resnet20 --no-reparam vs golden lmht_out:", stats)
    assert stats["argmax_agreement"] >= 0.995 and stats["within_tol"] >= 0.95

    art2 = tmp_path / "r20.lmhtc"
    out = ok("compile", HYBRID_RESNET20, "-o", art2, *R20, "--check", subset, "--check-limit", "8", "--no-progress")
    assert "reparameterization exactness (exact schedule, L=2, 8 images)" in out
    assert "conv1.2" in out and "of (neuron, window) spike counts equal the M-HT levels" in out
    code, out = cli("exactness", art2, "--inputs", subset, "--limit", "4", "--json", tmp_path / "ex.json",
                    "--no-progress")
    assert code == 0, out
    report = json.loads((tmp_path / "ex.json").read_text())
    assert report["images"] == 4 and len(report["layers"]) == 19 and 0.9 <= report["fraction"] <= 1.0
    assert all(0 <= layer["fraction"] <= 1 for layer in report["layers"])


def test_inspect_prints_the_layer_table(r18_artifact):
    out = ok("inspect", r18_artifact)
    assert "resnet18 (direct recipe), compiled graph, 4 steps, reparameterized" in out
    for word in ("node", "kind", "shape", "neurons", "synapses", "threshold", "leak schedule", "layer4.1.sn2",
                 "conv2d", "temporal_mix", "64x32x32"):
        assert word in out, word
    out = ok("inspect", r18_artifact, "--graph", "source")
    assert "M-HT neurons" in out


def test_zoo_checkpoint_compiles_from_its_sidecar(tmp_path):
    torch.manual_seed(0)
    model = build_snn("digitsnet", 2, 2, 10, "direct", (1, 8, 8))
    ckpt = save_checkpoint(tmp_path / "m.pth", model, ModelSpec("digitsnet", 2, 2, input_shape=(1, 8, 8)))
    art = tmp_path / "m.lmhtc"
    ok("compile", ckpt, "-o", art, "--no-progress")
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    res = simulate(art, tmp_path / "x.npz", tmp_path)
    assert res["outputs"].shape == (4, 5, 10) and res["spike_counts"].shape == (5, 3)


# -- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, fragments", [
    (["--arch", "resnet99", "-L", "2", "-T", "2"], ["unknown architecture 'resnet99'"]),
    (["--arch", "resnet18", "-L", "2", "-T", "4"], ["sn1.mask has shape (2, 2, 1, 1, 1, 1)", "T=2 time-steps, not 4"]),
    (["--arch", "resnet18", "-L", "4", "-T", "2"], ["sn1.v_threshold is 1", "L=4", "trained with L=2"]),
    (["--arch", "resnet18", "-L", "2", "-T", "2", "--input-shape", "1,32,32"], ["conv1.weight has shape (64, 3, 3, 3)"]),
    (["--arch", "resnet18", "-L", "2", "-T", "2", "--input-shape", "3,32"], ["--input-shape must be three"]),
    (["--arch", "resnet18", "-T", "2"], ["give --arch, --levels and --timesteps (missing --levels)"]),
])
def test_compile_bad_flags(flags, fragments, tmp_path, fixtures):
    out = tmp_path / "never.lmhtc"
    assert_one_line_error(*cli("compile", RESNET18, "-o", out, *flags), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_compile_refuses_maxpool_on_spikes(tmp_path):
    model = build_snn("resnet18-imagenet", 2, 2, 10, "direct", (3, 64, 64))
    ckpt = save_checkpoint(tmp_path / "in.pth", model, ModelSpec("resnet18-imagenet", 2, 2, input_shape=(3, 64, 64)))
    art = tmp_path / "in.lmhtc"
    assert_one_line_error(*cli("compile", ckpt, "-o", art), "node 'maxpool.0' (maxpool2d) applies a non-linear operation",
                   "--no-reparam")
    assert not art.exists()
    ok("compile", ckpt, "-o", art, "--no-reparam", "--no-progress")   # as trained, it compiles
    assert art.exists()


def test_damaged_artifacts_are_named(r18_artifact, subset, tmp_path):
    truncated = tmp_path / "cut.lmhtc"
    truncated.write_bytes(r18_artifact.read_bytes()[:100_000])
    assert_one_line_error(*cli("inspect", truncated), str(truncated), "truncated")
    out = tmp_path / "sim.npz"
    assert_one_line_error(*cli("simulate", truncated, "--inputs", subset, "-o", out), "truncated")
    assert not out.exists()


def test_simulate_bad_inputs_leave_no_output(r18_artifact, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((2, 1, 8, 8), np.float32))
    out = tmp_path / "o.npz"
    assert_one_line_error(*cli("simulate", r18_artifact, "--inputs", bad, "-o", out), "(1, 8, 8)", "expects (3, 32, 32)")
    np.savez(bad, images=np.zeros((2, 3, 32, 32), np.float32))
    assert_one_line_error(*cli("simulate", r18_artifact, "--inputs", bad, "-o", out), "no array 'x'")
    assert_one_line_error(*cli("simulate", r18_artifact, "--inputs", bad, "-o", out, "--mode", "fast"),
                          "--mode must be float or int")
    assert not out.exists()
