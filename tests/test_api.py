"""The Python API (lmhtc.compile / load / Artifact) and the one-namespace package layout."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import lmhtc
from lmhtc.compiler.errors import LmhtcError
from conftest import HYBRID_RESNET20, REPO, cli

R20 = dict(arch="resnet20", levels=2, timesteps=2, recipe="hybrid")
R20_FLAGS = ["--arch", "resnet20", "-L", "2", "-T", "2", "--recipe", "hybrid"]


@pytest.fixture(scope="module")
def compiled(fixtures, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    with np.load(fixtures / "digits32_calib.npz") as f:
        calib = f["x"][:16]
    with np.load(fixtures / "digits32_test.npz") as f:
        x, y = f["x"][:12], f["y"][:12]
    np.savez(tmp / "calib.npz", x=calib)
    np.savez(tmp / "x.npz", x=x, y=y)
    art = lmhtc.compile(HYBRID_RESNET20, **R20, calib=calib)
    return tmp, art, x, y


def test_api_simulate_equals_the_cli(compiled):
    tmp, art, x, y = compiled
    assert set(art.graphs) == {"source", "compiled", "integer"} and not art.notes
    path = art.save(tmp / "api.lmhtc")
    run = lmhtc.load(path).simulate(x, mode="int")
    code, out = cli("simulate", path, "--inputs", tmp / "x.npz", "-o", tmp / "cli.npz", "--mode", "int",
                    "--no-progress")
    assert code == 0, out
    with np.load(tmp / "cli.npz") as f:
        assert set(f.files) == set(run.arrays())
        for key in ("logits_int", "outputs_int", "spike_counts", "sops", "macs", "saturation"):
            np.testing.assert_array_equal(run.arrays()[key], f[key], err_msg=key)
    # the CLI's own compile gives the same integer network as the API's
    code, out = cli("compile", HYBRID_RESNET20, "-o", tmp / "cli.lmhtc", *R20_FLAGS, "--calib", tmp / "calib.npz",
                    "--no-progress")
    assert code == 0, out
    np.testing.assert_array_equal(lmhtc.load(tmp / "cli.lmhtc").simulate(x, mode="int").logits_int, run.logits_int)
    assert run.logits_int.dtype == np.int64 and (run.logits.argmax(1) == y).mean() >= 0.75


def test_api_float_mode_export_verify_and_report(compiled):
    tmp, art, x, _ = compiled
    ref = art.simulate(x[:4], mode="float", graph="source", batch_size=4)
    assert ref.logits_int is None and ref.outputs.shape[1] == 4 and "sops" not in ref.arrays()
    onnx_path = art.export("onnx-int", tmp / "m.onnx")
    assert onnx_path.is_file() and onnx_path.stat().st_size > 0
    pairs = art.verify(x[:4], targets=["int", "onnx-int"])
    assert len(pairs) == 1 and pairs[0]["bit_exact"] and pairs[0]["required_bit_exact"]
    rec = art.report(x[:4])
    assert rec["mode"] == "int" and rec["totals"]["sops_per_image"] > 0
    with pytest.raises(LmhtcError, match="no float graph 'integer'"):
        art.simulate(x, mode="float", graph="integer")


def test_python_api_example_runs(fixtures, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python_api.py"), str(HYBRID_RESNET20), *R20_FLAGS,
         "--inputs", str(fixtures / "digits32_test.npz"), "--calib", str(fixtures / "digits32_calib.npz"),
         "--limit", "8", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "int vs onnx-int: bit-exact True" in proc.stdout, proc.stdout
    assert (tmp_path / "out" / "model.lmhtc").is_file() and (tmp_path / "out" / "model_int.onnx").is_file()


def test_wheel_holds_only_the_lmhtc_package(tmp_path):
    src = tmp_path / "src"      # build from a copy: setuptools writes build/ next to the project
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "out", "*.egg-info",
                                                             "__pycache__", ".hypothesis", ".pytest_cache"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel, = tmp_path.glob("lmhtc-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"lmhtc", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"lmhtc/api.py", "lmhtc/compiler/cli.py", "lmhtc/runtime/simulator.py",
            "lmhtc/targets/lava/run_template.py", "lmhtc/compiler/energy_models/45nm.json"} <= names


def test_importing_lmhtc_loads_no_torch():
    code = "import sys, lmhtc, lmhtc.targets.lava; assert 'torch' not in sys.modules; print(lmhtc.__version__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == lmhtc.__version__, proc.stderr


@pytest.mark.parametrize("kwargs, flags, message", [
    (dict(reparam="front"), ["--reparam", "front"], "--reparam must be one of"),
    (dict(weight_bits=1), ["--weight-bits", "1"], "weight"),
    (dict(weight_bits=4, mixed_precision=0.9), ["--weight-bits", "4", "--mixed-precision", "0.9"],
     "--mixed-precision needs --calib"),
])
def test_api_and_cli_refuse_options_alike(tmp_path, kwargs, flags, message):
    """The option policy is the pipeline's (window schedule, quantize options, mixed precision): the API and
    the command line refuse the same options with the same one-line message, before any work."""
    with pytest.raises(LmhtcError, match=message) as exc:
        lmhtc.compile(HYBRID_RESNET20, **R20, **kwargs)
    code, out = cli("compile", HYBRID_RESNET20, "-o", tmp_path / "m.lmhtc", *R20_FLAGS, *flags)
    assert code == 2 and str(exc.value).splitlines()[0] in out and not (tmp_path / "m.lmhtc").exists()
