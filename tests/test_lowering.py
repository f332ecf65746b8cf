"""Lowering tables and the target registry: every target covers its phase's node kinds; a kind a target
lacks fails naming the kind and the target, before anything runs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from lmhtc.compiler import lowering
from lmhtc.compiler.executor import run_float
from lmhtc.compiler.intir import QInput, QNeuron, QReadout
from lmhtc.compiler.ir import NODE_TYPES, Graph, Input, Linear, Neuron, Node, Readout, TemporalMix, register_node_type
from lmhtc.compiler.lowering import LoweringError
from lmhtc.compiler.verify import VerifyError, check_runnable
from lmhtc.runtime.simulator import IntegerGraphError, run_int


def test_every_target_covers_every_kind_of_its_phase():
    lowering.check_tables()
    assert lowering.names(phase="integer") == ["int", "onnx-int", "lava"]
    assert lowering.names(exportable=True) == ["onnx", "onnx-int", "lava", "nir"]
    assert lowering.names(runnable=True) == ["float", "int", "onnx", "onnx-int", "lava"]
    assert {"qconv2d", "qneuron", "add", "flatten"} <= lowering.kinds_of_phase("integer")
    assert "conv2d" not in lowering.kinds_of_phase("integer") and "qconv2d" not in lowering.kinds_of_phase("float")


@pytest.fixture
def toy_kinds():
    """Two node kinds no target knows: one of the float phase, one of the integer phase."""
    @dataclass
    class Toy(Node):
        kind = "toy_float"
        elementwise = True

    @dataclass
    class QToy(Node):
        kind = "toy_int"
        phases = frozenset({"integer"})
        elementwise = True

    register_node_type(Toy)
    register_node_type(QToy)
    yield Toy, QToy
    del NODE_TYPES["toy_float"], NODE_TYPES["toy_int"]


def _float_graph(toy) -> Graph:
    g = Graph(steps=2)
    g.add(Input("input", [], input_shape=(3,)))
    g.add(Linear("fc", ["input"], weight=np.eye(3, dtype=np.float32), bias=None))
    g.add(toy("toy", ["fc"]))
    g.add(Neuron("sn", ["toy"], threshold=1.0, leak=np.ones(2)))
    g.add(Readout("out", ["sn"]))
    return g


def _int_graph(toy) -> Graph:
    g = Graph(steps=2, meta={"integer": True, "semantics_version": 1})
    g.add(QInput("input", [], input_shape=(3,), scale=0.5, bits=8))
    g.add(toy("toy", ["input"]))
    g.add(QNeuron("sn", ["toy"], threshold=np.ones(3, np.int64), levels=1, leak=np.full(2, 4096, np.int64),
                  v_init=np.zeros(3, np.int64)))
    g.add(QReadout("out", ["sn"], scale=np.ones(3)))
    return g


def test_a_new_kind_fails_in_every_target_naming_kind_and_target(toy_kinds, tmp_path):
    toy, qtoy = toy_kinds
    with pytest.raises(LoweringError) as info:
        lowering.check_tables()
    for target in ("float", "onnx", "nir"):
        assert f"target {target!r} has no lowering for node kind 'toy_float'" in str(info.value)
    for target in ("int", "onnx-int", "lava"):
        assert f"target {target!r} has no lowering for node kind 'toy_int'" in str(info.value)

    fg, ig = _float_graph(toy), _int_graph(qtoy)
    x = np.ones((2, 3), np.float32)
    with pytest.raises(LoweringError, match="target 'float' has no lowering for node kind 'toy_float' \\(node 'toy'\\)"):
        run_float(fg, x)
    with pytest.raises(IntegerGraphError, match="target 'int' has no lowering for node kind 'toy_int'"):
        run_int(ig, x)
    graphs = {"compiled": fg, "integer": ig}
    for target, kind in (("onnx", "toy_float"), ("onnx-int", "toy_int"), ("lava", "toy_int")):
        with pytest.raises(VerifyError, match=f"target '{target}' has no lowering for node kind '{kind}'"):
            check_runnable(target, graphs)
    from lmhtc.compiler.pipeline import export_model

    with pytest.raises(Exception, match="target 'onnx-int' has no lowering for node kind 'toy_int'"):
        export_model(graphs, {}, "onnx-int", tmp_path / "m.onnx", "art")
    with pytest.raises(Exception, match="target 'lava' has no lowering for node kind 'toy_int'"):
        export_model(graphs, {}, "lava", tmp_path / "lava", "art")
    assert not any(tmp_path.iterdir())                     # refused before anything was written


def test_targets_refuse_the_other_phase():
    g = Graph(steps=1)
    g.add(Input("input", [], input_shape=(2,)))
    g.add(Readout("out", ["input"]))
    with pytest.raises(LoweringError, match="target 'int' reads integer graphs; this is a float graph"):
        lowering.check_lowerable(g, "int")
    ig = Graph(steps=1, meta={"integer": True, "semantics_version": 1})
    ig.add(QInput("input", [], input_shape=(2,), scale=1.0, bits=8))
    ig.add(QReadout("out", ["input"], scale=np.ones(2)))
    with pytest.raises(LoweringError, match="target 'float' reads float graphs; this is an integer graph"):
        run_float(ig, np.zeros((1, 2), np.float32))


# -- pass contracts: requirements checked before a pass, a lint after it -------------------------

def test_validators_do_not_change_the_graph_and_name_stale_shapes():
    from lmhtc.compiler.ir import finalize, validate

    g = finalize(_float_graph(lambda name, inputs: Neuron(name, inputs, threshold=1.0, leak=np.ones(2))))
    before = [(n.name, n.shape) for n in g.topo()]
    validate(g)
    assert [(n.name, n.shape) for n in g.topo()] == before
    g.node("fc").weight = np.ones((4, 3), np.float32)                 # changes fc's output shape
    with pytest.raises(Exception, match="node 'fc' \\(linear\\): stored shape \\(3,\\) is not the inferred \\(4,\\)"):
        validate(g)


def test_pass_runner_checks_requirements_and_guarantees():
    from lmhtc.compiler.ir import finalize
    from lmhtc.compiler.passes.manager import Pass, PassContractError, get_pass, properties, run_passes

    g = finalize(_mix_neuron_graph())
    assert properties(g) == {"float", "bn_free", "shaped"}
    out = run_passes(g, [("fold_batchnorm", {}), ("reparameterize", {"schedule": "exact"})])
    assert "reparameterized" in properties(out)
    q = run_passes(out, [("quantize", {})])
    assert properties(q) >= {"integer", "shaped"}
    with pytest.raises(PassContractError, match="pass 'reparameterize' requires a graph that is float"):
        get_pass("reparameterize")(q)
    broken = Pass("drops_shapes", lambda graph: _unshaped(graph), frozenset({"float"}), frozenset({"shaped"}))
    with pytest.raises(Exception, match="stored shape None"):
        broken(g)                                                       # the lint after the pass catches it


def test_the_runner_lints_each_pass_result_once_and_a_direct_call_lints_its_own(monkeypatch):
    """Run by the pass runner, ``quantize``'s own ``finalize`` leaves the lint to the runner: the result is
    validated once. Called directly, the pass validates its result itself; a bad result made inside a
    runner's pass (after its finalize) is still refused by the runner's lint."""
    from lmhtc.compiler import ir
    from lmhtc.compiler.passes.manager import Pass, run_passes
    from lmhtc.compiler.passes.quantize import quantize

    g = ir.finalize(_mix_neuron_graph())
    seen, real = [], ir.validate_integer
    monkeypatch.setattr(ir, "validate_integer", lambda graph: seen.append(graph) or real(graph))
    q = run_passes(g, [("quantize", {})])
    assert len(seen) == 1 and seen[0] is q
    seen.clear()
    direct = quantize(g)
    assert len(seen) == 1 and seen[0] is direct and not ir.RUNNER_LINTS.get()

    def quantize_then_damage(graph):
        out = quantize(graph)
        out.node("sn").threshold = np.zeros_like(out.node("sn").threshold)     # Θ = 0: not a valid qneuron
        return out

    bad = Pass("damages", quantize_then_damage, frozenset({"float"}), frozenset({"integer"}))
    with pytest.raises(Exception, match="node 'sn'"):
        bad(g)


def _mix_neuron_graph() -> Graph:
    """input → fc → T-GIM → 2-level neuron → head → readout (float, not finalized)."""
    g = Graph(steps=2)
    g.add(Input("input", [], input_shape=(3,)))
    g.add(Linear("fc", ["input"], weight=np.eye(3, dtype=np.float32), bias=None))
    g.add(TemporalMix("mix", ["fc"], omega=np.eye(2)))
    g.add(Neuron("sn", ["mix"], threshold=1.0, levels=2, leak=np.ones(2)))
    g.add(Linear("head", ["sn"], weight=np.ones((2, 3), np.float32), bias=None))
    g.add(Readout("out", ["head"]))
    return g


def _unshaped(graph):
    out = graph.copy()
    out.node("fc").shape = None
    return out
