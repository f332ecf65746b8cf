"""Bad input: one clear line naming the file or key, exit status 2, nothing executed, no partial output."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lmhtc.compiler.checkpoint import read_checkpoint
from lmhtc.compiler.cli import app
from conftest import HYBRID_RESNET20, RESNET18, assert_one_line_error

RESNET18_FLAGS = ["--arch", "resnet18", "-L", "2", "-T", "2", "--limit", "2", "--no-progress"]


def evaluate(path, *flags):
    res = CliRunner().invoke(app, ["evaluate", str(path), *flags])
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def resnet18_state(fixtures):
    return read_checkpoint(RESNET18)


def save(tmp_path, name, state, meta=None):
    path = tmp_path / name
    torch.save({"model": state, **(meta or {})}, path)
    return path


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(4096))
    assert_one_line_error(*evaluate(junk, *RESNET18_FLAGS), str(junk), "not a PyTorch checkpoint")
    text = tmp_path / "notes.pth"
    text.write_text("hello, I am not a model\n")
    assert_one_line_error(*evaluate(text, *RESNET18_FLAGS), str(text), "not a PyTorch checkpoint")


def test_missing_file(tmp_path):
    assert_one_line_error(*evaluate(tmp_path / "nope.pth", *RESNET18_FLAGS), "nope.pth", "no such file")


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    assert_one_line_error(*evaluate(path, *RESNET18_FLAGS), "expected a dict")
    path = tmp_path / "nomodel.pth"
    torch.save({"epoch": 3, "weights": {"a": 1}}, path)
    assert_one_line_error(*evaluate(path, *RESNET18_FLAGS), "no state_dict", "epoch")


def test_wrong_architecture(fixtures):
    code, out = evaluate(RESNET18, "--arch", "resnet34", "-L", "2", "-T", "2", "--limit", "2")
    assert_one_line_error(code, out, str(RESNET18), "does not match --arch resnet34", "missing keys: layer1.2.")


def test_wrong_recipe_for_hybrid_checkpoint(fixtures):
    code, out = evaluate(HYBRID_RESNET20, "--arch", "resnet20", "-L", "2", "-T", "2", "--limit", "2")
    assert_one_line_error(code, out, "resnet20", "no 'direct' recipe")


def test_wrong_timesteps_names_the_mask(fixtures):
    code, out = evaluate(RESNET18, "--arch", "resnet18", "-L", "2", "-T", "3", "--limit", "2")
    assert_one_line_error(code, out, "sn1.mask has shape (2, 2, 1, 1, 1, 1)", "T=2 time-steps, not 3")


def test_missing_and_extra_keys(tmp_path, resnet18_state):
    state, meta = resnet18_state
    missing = {k: v for k, v in state.items() if k != "layer2.1.conv1.1.running_var"}
    assert_one_line_error(*evaluate(save(tmp_path, "missing.pth", missing, meta), *RESNET18_FLAGS),
                          "missing keys: layer2.1.conv1.1.running_var")
    extra = dict(state, **{"head.weight": torch.zeros(3)})
    assert_one_line_error(*evaluate(save(tmp_path, "extra.pth", extra, meta), *RESNET18_FLAGS),
                          "unexpected keys: head.weight")


def test_wrong_shape_names_the_key(tmp_path, resnet18_state):
    state, meta = resnet18_state
    bad = dict(state, **{"fc.0.weight": torch.zeros(7, 512)})
    assert_one_line_error(*evaluate(save(tmp_path, "shape.pth", bad, meta), *RESNET18_FLAGS),
                          "fc.0.weight has shape (7, 512)", "expects (10, 512)")


def test_nan_weights_name_the_key(tmp_path, resnet18_state):
    state, meta = resnet18_state
    w = state["layer3.0.conv2.0.weight"].clone()
    w[0, 0, 0, 0] = float("nan")
    bad = dict(state, **{"layer3.0.conv2.0.weight": w})
    assert_one_line_error(*evaluate(save(tmp_path, "nan.pth", bad, meta), *RESNET18_FLAGS),
                          "layer3.0.conv2.0.weight contains NaN")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit(marker)}, path,
               _use_new_zipfile_serialization=(container == "zip"))
    assert not marker.exists()
    # the real console script, in a fresh process
    lmhtc = Path(sys.executable).with_name("lmhtc")
    proc = subprocess.run([str(lmhtc), "evaluate", str(path), "--arch", "digitsnet", "-L", "2", "-T", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "refused" in lines[0], proc.stderr
    assert str(path) in lines[0]
    assert not marker.exists(), "the pickle's code ran"


def test_bad_train_flags_leave_no_output(tmp_path):
    out = tmp_path / "m.pth"
    res = CliRunner().invoke(app, ["train", "--input-shape", "3,16,16", "-o", str(out)])
    assert_one_line_error(res.exit_code, res.output, "--input-shape", "no digits form")
    res = CliRunner().invoke(app, ["train", "--arch", "alexnet", "-o", str(out)])
    assert_one_line_error(res.exit_code, res.output, "unknown architecture 'alexnet'")
    assert list(tmp_path.iterdir()) == []


def test_sidecar_contradicting_flags(tmp_path, fixtures):
    from lmhtc.compiler.checkpoint import ModelSpec, save_checkpoint
    from lmhtc.compiler.zoo import build_snn

    model = build_snn("digitsnet", 2, 2, 10, "direct", (1, 8, 8))
    path = save_checkpoint(tmp_path / "m.pth", model, ModelSpec("digitsnet", 2, 2, input_shape=(1, 8, 8)))
    code, out = evaluate(path, "-T", "4")
    assert_one_line_error(code, out, "--timesteps 4 contradicts its sidecar")
