"""The two graph phases are disjoint types: no integer node kind is a float node kind.

Integer kinds (compiler/intir*.py) and float kinds (compiler/ir.py, nir_ops.py, ...) that share a
geometry derive from one semantics-free base (``ConvBase``, ``NeuronBase``, ...), so an
``isinstance(node, Conv2d)`` never sees a ``qconv2d``; each executor refuses the other phase's
graph with a message that names a node and its kind.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import lmhtc.compiler.convert.msat_node  # noqa: F401  (register every kind before NODE_TYPES is read)
import lmhtc.compiler.intir  # noqa: F401
import lmhtc.compiler.lif_node  # noqa: F401
from lmhtc.compiler.executor import run_float
from lmhtc.compiler.intir import QConv2d, QInput, QNeuron, QReadout
from lmhtc.compiler.ir import (NODE_TYPES, Conv2d, ConvBase, Graph, Input, Linear, NeuronBase, Readout,
                               infer_shapes, summary_rows)
from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.lowering import LoweringError
from lmhtc.runtime.simulator import run_int
from lmhtc.semantics import SEMANTICS_VERSION


def _kinds(phase: str) -> list[type]:
    """The registered kinds of ``phase`` only (kinds of both phases, ``add`` and ``flatten``, excluded)."""
    other = "float" if phase == "integer" else "integer"
    return [t for t in NODE_TYPES.values() if phase in t.phases and other not in t.phases]


def test_no_integer_kind_is_a_float_kind():
    integer, floating = _kinds("integer"), _kinds("float")
    assert {"qconv2d", "qlinear", "qneuron", "qinput", "qreadout", "qconv1d", "sumpool2d"} <= {t.kind for t in integer}
    assert {"conv2d", "linear", "neuron", "input", "readout", "conv1d", "avgpool2d"} <= {t.kind for t in floating}
    bad = [(i.kind, f.kind) for i, f in itertools.product(integer, floating) if issubclass(i, f) or issubclass(f, i)]
    assert not bad, f"integer kinds derived from float kinds (or back): {bad}"


def test_shared_bases_carry_geometry_not_semantics():
    q = QConv2d("c", ["x"], weight=np.ones((2, 1, 3, 3), np.int32), bias=None, stride=(1, 1), padding=(1, 1))
    assert isinstance(q, ConvBase) and not isinstance(q, Conv2d)
    assert isinstance(QNeuron("n", ["c"]), NeuronBase)
    ig = Graph(steps=1, meta={"integer": True})
    ig.add(QInput("x", [], input_shape=(1, 4, 4), scale=1.0, bits=8))
    ig.add(q)
    ig.add(QReadout("out", ["c"], scale=np.ones(2)))
    infer_shapes(ig)                       # the base's shape rule serves both phases
    assert q.shape == (2, 4, 4) and ig.input.name == "x" and ig.readout.name == "out"
    assert summary_rows(ig)[1]["synapses"] == 2 * 16 * 9


def _float_graph() -> Graph:
    g = Graph(steps=1)
    g.add(Input("input", [], input_shape=(2,)))
    g.add(Linear("fc", ["input"], weight=np.ones((2, 2), np.float32)))
    g.add(Readout("out", ["fc"]))
    return infer_shapes(g)


def _integer_graph() -> Graph:
    ig = Graph(steps=1, meta={"integer": True, "semantics_version": SEMANTICS_VERSION})
    ig.add(QInput("input", [], input_shape=(2,), scale=1.0, bits=8))
    ig.add(QReadout("out", ["input"], scale=np.ones(2)))
    return infer_shapes(ig)


def test_float_executor_refuses_an_integer_graph_naming_the_kind():
    with pytest.raises(LoweringError, match=r"reads float graphs; this is an integer graph "
                                            r"\(node 'input' is of kind 'qinput'\)"):
        run_float(_integer_graph(), np.zeros((1, 2), np.float32))


def test_runtime_refuses_a_float_graph_naming_the_kind():
    with pytest.raises(LmhtcError, match=r"not an integer network.*\(node 'input' is of kind 'input'\)"):
        run_int(_float_graph(), np.zeros((1, 2), np.float32))
    flagged = _float_graph()                # a float graph that claims to be integer: its first float kind
    flagged.meta.update({"integer": True, "semantics_version": SEMANTICS_VERSION})
    with pytest.raises(LmhtcError, match="kind 'input'"):
        run_int(flagged, np.zeros((1, 2), np.float32))
