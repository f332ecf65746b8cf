"""STBP training on the digits data: the default network, the saved checkpoint, the CLI."""
from __future__ import annotations

import json

import numpy as np
import torch
from typer.testing import CliRunner

from lmhtc.compiler.checkpoint import load_snn, read_checkpoint, read_sidecar
from lmhtc.compiler.cli import app
from lmhtc.compiler.data import load_digits_dataset
from lmhtc.compiler.training import TrainConfig, accuracy, predict, train
from lmhtc.compiler.zoo import build_snn


def test_default_train_command_reaches_95_percent_and_saves_authors_format(tmp_path):
    out = tmp_path / "model.pth"
    res = CliRunner().invoke(app, ["train", "-o", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and last.endswith(" %")
    acc = float(last.split(":")[1].strip(" %"))
    assert acc >= 95.0

    state, meta = read_checkpoint(out)
    assert {"epoch", "max_acc1"} <= set(meta) and abs(100 * meta["max_acc1"] - acc) < 0.01
    assert any(k.endswith(".mask") for k in state)
    side = json.loads(out.with_suffix(".json").read_text())
    spec = side["model_spec"]
    assert spec["arch"] == "digitsnet" and spec["levels"] == 2 and spec["timesteps"] == 2
    assert spec["recipe"] == "direct" and spec["v_init"] == 0.0 and spec["input_scale"] == 1.0
    assert spec["num_classes"] == 10 and spec["input_shape"] == [1, 8, 8]
    assert spec["normalization"]["mean"] == 0.3 and spec["normalization"]["std"] == 0.4

    # reloading from the sidecar alone (no flags) reproduces the accuracy
    model = load_snn(out, read_sidecar(out))
    test = load_digits_dataset("8").test
    assert abs(100 * accuracy(predict(model, test.x), test.y) - acc) < 0.01


def test_training_is_deterministic_for_a_seed():
    data = load_digits_dataset("8")
    small = data.train.__class__(data.train.x[:256], data.train.y[:256])
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_snn("digitsnet", 2, 2, 10, "direct", (1, 8, 8))
        train(model, small, data.test, TrainConfig(epochs=1, seed=7, progress=False))
        results.append(predict(model, data.test.x[:32]))
    assert torch.equal(results[0], results[1])


def test_training_learns_the_leak_and_tgim():
    data = load_digits_dataset("8")
    torch.manual_seed(0)
    model = build_snn("digitsnet", 2, 2, 10, "direct", (1, 8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, data.train, data.test, TrainConfig(epochs=1, progress=False))
    after = model.state_dict()
    assert not torch.equal(before["features.1.alpha"], after["features.1.alpha"])
    assert not torch.equal(before["features.1.mask"], after["features.1.mask"])
    assert torch.equal(before["features.1.v_threshold"], after["features.1.v_threshold"])  # θ is fixed


def test_digits8_split_sizes_and_normalisation():
    d = load_digits_dataset("8")
    assert d.train.x.shape == (1437, 1, 8, 8) and d.test.x.shape == (360, 1, 8, 8)
    assert np.isclose(d.train.x.min(), -0.75) and np.isclose(d.train.x.max(), 1.75)
    assert np.bincount(d.test.y).min() >= 35   # stratified
