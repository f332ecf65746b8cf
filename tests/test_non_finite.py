"""Non-finite outputs (issue #18): a float graph whose activations overflow float32 is refused by simulate,
verify, report and the Python API with one line naming the file and the first layer where NaN/Inf appears."""
from __future__ import annotations

import numpy as np
import pytest

import lmhtc
from lmhtc.compiler.artifact import save_artifact
from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.finite import first_non_finite_node
from lmhtc.compiler.ir import Add, Flatten, Graph, Input, Linear, Neuron, Readout, finalize
from conftest import assert_one_line_error, cli


def _overflowing_graph() -> Graph:
    """input → flatten → (fc_analog; spikes → fc_spikes) → add → readout, weights of fc_analog up to 1e12 (the
    validator's bound): inputs of 1e30 (finite float32) overflow fc_analog, inputs of 1 do not. A neuron
    bounds what it passes on (levels·θ), so an overflow needs analog values; the spiking path gives the
    cost passes of ``report`` their SOPs. The rows of fc_analog differ by 10 % so that the finite logits have
    one argmax (equal rows give ties that float32 kernels break differently: SIMD tails round apart)."""
    g = Graph(steps=2)
    g.add(Input(name="input", input_shape=(1, 8, 8)))
    g.add(Flatten(name="flatten", inputs=["input"]))
    g.add(Neuron(name="spikes", inputs=["flatten"], threshold=1.0, levels=1, leak=np.ones(2)))
    g.add(Linear(name="fc_analog", inputs=["flatten"], weight=np.linspace(1e12, 1e11, 10, dtype=np.float32)[:, None]
                 * np.ones((1, 64), np.float32)))
    g.add(Linear(name="fc_spikes", inputs=["spikes"], weight=np.ones((10, 64), np.float32)))
    g.add(Add(name="sum", inputs=["fc_analog", "fc_spikes"]))
    g.add(Readout(name="readout", inputs=["sum"]))
    return finalize(g)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nonfinite")
    art = save_artifact(tmp / "big.lmhtc", {"compiled": _overflowing_graph()})
    np.savez(tmp / "x.npz", x=np.full((3, 1, 8, 8), 1e30, np.float32))
    np.savez(tmp / "small.npz", x=np.ones((3, 1, 8, 8), np.float32))
    return tmp, art


def test_first_non_finite_node_is_the_layer_that_overflows():
    g = _overflowing_graph()
    assert first_non_finite_node(g, np.full((2, 1, 8, 8), 1e30, np.float32)).name == "fc_analog"
    assert first_non_finite_node(g, np.ones((2, 1, 8, 8), np.float32)) is None


@pytest.mark.parametrize("command", [
    ["simulate", "--mode", "float", "-o", "{out}.npz", "--no-progress"],
    ["verify", "--targets", "float,onnx", "--json", "{out}.json", "--no-progress"],
    ["verify", "--targets", "onnx,float", "--no-progress"],
    ["report", "--mode", "float", "--json", "{out}.json", "--no-progress"],
])
def test_cli_names_the_first_non_finite_layer(files, tmp_path, command):
    tmp, art = files
    out = tmp_path / "out"
    args = [a.format(out=out) for a in command]
    code, text = cli(args[0], art, "--inputs", tmp / "x.npz", *args[1:])
    assert_one_line_error(code, text, "are not finite", "layer 'fc_analog' (linear)")
    assert str(art.name) in text      # every command names the file
    if args[0] == "verify":           # and verify also the target whose run overflowed
        assert "target '" in text
    assert not list(tmp_path.iterdir())
    code, text = cli(args[0], art, "--inputs", tmp / "small.npz", *args[1:])     # finite: runs
    assert code == 0, text


def test_api_names_the_file_and_layer(files):
    tmp, art = files
    a = lmhtc.load(art)
    x = np.full((2, 1, 8, 8), 1e30, np.float32)
    for call in (lambda: a.simulate(x, mode="float"), lambda: a.verify(x, ["float", "onnx"]),
                 lambda: a.report(x, mode="float")):
        with pytest.raises(LmhtcError) as err:
            call()
        assert str(art) in str(err.value) and "layer 'fc_analog' (linear)" in str(err.value), str(err.value)
    assert a.verify(np.ones((2, 1, 8, 8), np.float32), ["float", "onnx"])[0]["argmax_agreement"] == 1.0
