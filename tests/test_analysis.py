"""The shared analyses (compiler/analysis/): one function each, called by the passes, the runtime and the
emitters; the window plan is an annotation written by the ``plan_windows`` pass and checked by the
integer validator."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmhtc.compiler.analysis.cover import conv_cover
from lmhtc.compiler.analysis.ranges import value_bounds
from lmhtc.compiler.analysis.windows import planned_windows, window_plan
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.ir import IRError, validate_integer
from lmhtc.compiler.passes.manager import PassContractError, run_passes
from lmhtc.compiler.passes.quantize import QuantConfig
from lmhtc.compiler.pipeline import compile_graphs, lower_integer
from lmhtc.runtime import simulator
from lmhtc.runtime.simulator import _program, run_int
from lmhtc.targets import onnx_int
from nets import TinyResNet, randomize


@pytest.fixture(scope="module")
def uniform_int():
    graph = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 0), (2, 8, 8)), schedule="uniform")["compiled"]
    q, _ = lower_integer(graph, QuantConfig())
    return graph, q


def test_the_lowering_writes_the_window_plan_and_the_runtime_reads_it(uniform_int):
    _, q = uniform_int
    assert q.meta["window_plan"] == window_plan(q) and max(q.meta["window_plan"].values()) > 1
    assert _program(q, "cpu").windows == q.meta["window_plan"]
    old = q.copy()                          # an artifact from before the pass: the plan is computed
    del old.meta["window_plan"]
    assert planned_windows(old) == window_plan(q)
    x = np.random.default_rng(0).normal(size=(3, 2, 8, 8)).astype(np.float32)
    assert np.array_equal(run_int(q, x).outputs_int, run_int(old, x).outputs_int)


def test_a_tampered_window_plan_is_refused(uniform_int):
    _, q = uniform_int
    name = next(n for n, lw in q.meta["window_plan"].items() if lw > 1)
    bad = q.copy()
    bad.meta["window_plan"][name] = 1
    with pytest.raises(IRError, match=f"node '{name}': window plan 1 is not"):
        validate_integer(bad)
    missing = q.copy()
    missing.meta["window_plan"].pop(name)
    with pytest.raises(IRError, match="window plan names"):
        validate_integer(missing)


def test_plan_windows_is_a_pass_with_a_contract(uniform_int):
    graph, q = uniform_int
    with pytest.raises(PassContractError, match="plan_windows.*integer"):
        run_passes(graph, [("plan_windows", {})])
    bare = q.copy()
    del bare.meta["window_plan"]
    assert run_passes(bare, [("plan_windows", {})]).meta["window_plan"] == q.meta["window_plan"]


def test_one_function_per_analysis_is_what_every_caller_uses():
    assert simulator.window_plan is window_plan and onnx_int.value_bounds is value_bounds
    from lmhtc.compiler.cost import fanout

    assert fanout.conv_cover is conv_cover


def test_conv_cover_counts_windows():
    # a 3x3 kernel, stride 1, padding 1 on 4x4: corners are covered by 4 windows, edges by 6, inside by 9
    cover = conv_cover((4, 4), (4, 4), (3, 3), (1, 1), (1, 1))
    assert cover[0, 0] == 4 and cover[0, 1] == 6 and cover[1, 1] == 9


def test_synapse_sum_bounds_is_the_acc_bound_the_quantizer_stores_and_the_validator_requires(uniform_int):
    """One per-channel rule per synaptic kind: a grouped conv sums |w| over its own group's channels times
    their input range; the quantizer's stored acc_bound is that bound's maximum for the input ranges it
    saw, and the validator refuses one unit less (it recomputes the bound with the same function)."""
    from lmhtc.compiler.analysis.ranges import synapse_sum_bounds
    from lmhtc.compiler.intir import QConv2d, QGain, QLinear
    w = np.array([[[[1, -2]]], [[[3, 0]]], [[[-1, -1]]], [[[0, 4]]]], dtype=np.int32)   # [4, 1, 1, 2], 2 groups
    conv = QConv2d("c", ["x"], weight=w, groups=2)
    assert list(synapse_sum_bounds(conv, np.array([5, 7]))) == [15, 15, 14, 28]
    assert list(synapse_sum_bounds(conv, 2)) == [6, 6, 4, 8]
    lin = QLinear("l", ["x"], weight=np.array([[1, -2], [0, 3]], dtype=np.int32))
    assert list(synapse_sum_bounds(lin, np.array([2.0, 10.0]))) == [22, 30]
    assert list(synapse_sum_bounds(QGain("g", ["x"], gain=np.array([-3, 2], dtype=np.int32)), np.array([4, 4]))) == [12, 8]
    with pytest.raises(ValueError, match="integer-valued"):
        synapse_sum_bounds(lin, np.array([0.5, 1.0]))
    _, q = uniform_int
    node = next(n for n in q.topo() if n.kind == "qconv2d" and q.node(n.inputs[0]).kind == "qneuron")
    levels = q.node(node.inputs[0]).levels
    assert node.acc_bound == int(synapse_sum_bounds(node, levels).max())
    bad = q.copy()
    bad.node(node.name).acc_bound -= 1
    with pytest.raises(IRError, match="acc_bound"):
        validate_integer(bad)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 62), st.integers(0, 62), st.integers(1, 3), st.integers(1, 4), st.integers(0, 2 ** 32 - 1))
def test_synapse_sum_bounds_int64_path_equals_python_integers(wbits, mbits, cin, k, seed):
    """The int64 fast path and the Python-integer path give the same per-channel bounds, up to and past
    the point where int64 would wrap (there the Python-integer path must take over)."""
    from lmhtc.compiler.analysis import ranges
    from lmhtc.compiler.intir import QConv2d, QLinear

    rng = np.random.default_rng(seed)
    w = rng.integers(-(2 ** wbits) + 1, 2 ** wbits, size=(2, cin, k, k), dtype=np.int64)
    m = rng.integers(0, 2 ** mbits + 1, size=cin, dtype=np.int64)
    bounds = []
    for node, mm in ((QConv2d("c", ["x"], weight=w), m), (QLinear("l", ["x"], weight=w.reshape(2, -1)),
                                                          np.repeat(m, k * k))):
        exact = ranges.python_int_sum_bounds(node, mm)
        got = ranges.synapse_sum_bounds(node, mm)
        assert got.dtype == object and list(got) == list(exact)
        assert list(ranges.synapse_sum_bounds(node, int(mm.max()))) == list(ranges.python_int_sum_bounds(node, int(mm.max())))
        bounds.append(list(got))
    assert bounds[0] == bounds[1]      # the conv's tap-by-tap sums are the flattened linear's sums


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([np.int8, np.int16, np.int32]), st.booleans(), st.integers(1, 3), st.integers(0, 2 ** 32 - 1))
def test_synapse_sum_bounds_of_narrow_integer_weights_equal_python_integers(dtype, most_negative, cin, seed):
    """Weights stored as int8-int32 (the quantizer writes int32) take |w| in their own width; the bounds
    equal the Python-integer path's, also with the width's most negative value (whose |·| overflows it)."""
    from lmhtc.compiler.analysis import ranges
    from lmhtc.compiler.intir import QConv2d, QGain, QLinear

    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    w = rng.integers(info.min, info.max, size=(3, cin, 3, 3), endpoint=True, dtype=dtype)
    if most_negative:
        w.flat[rng.integers(w.size)] = info.min
    m = rng.integers(0, 2 ** 20, size=cin, dtype=np.int64)
    for node, mm in ((QConv2d("c", ["x"], weight=w), m), (QLinear("l", ["x"], weight=w.reshape(3, -1)),
                                                          np.repeat(m, 9)),
                     (QGain("g", ["x"], gain=w[:, 0, 0, 0].copy()), m[:1].repeat(3))):
        assert list(ranges.synapse_sum_bounds(node, mm)) == list(ranges.python_int_sum_bounds(node, mm))


def test_sum_tree_walks_in_the_two_named_orders():
    """((a + b) + c): FIRST_INPUT_FIRST gives a, b, c (Lava's port order), LAST_INPUT_FIRST the mirror image
    c, b, a (the quantizer's leaf order, whose first conv/linear leaf carries the bias); the adds and the walk
    follow the same order, and a node that is no add is its own one-leaf tree."""
    from lmhtc.compiler.analysis.groups import FIRST_INPUT_FIRST, LAST_INPUT_FIRST, sum_tree
    from lmhtc.compiler.ir import Add, Graph, Input, Linear
    g = Graph(steps=1)
    g.add(Input("x", [], input_shape=(2,)))
    for n in "abc":
        g.add(Linear(n, ["x"], weight=np.ones((2, 2), np.float32)))
    g.add(Add("ab", ["a", "b"]))
    g.add(Add("abc", ["ab", "c"]))
    first = sum_tree(g, "abc", FIRST_INPUT_FIRST)
    last = sum_tree(g, "abc", LAST_INPUT_FIRST)
    assert (first.adds, first.leaves, first.walk) == (["abc", "ab"], ["a", "b", "c"], ["abc", "ab", "a", "b", "c"])
    assert (last.adds, last.leaves, last.walk) == (["abc", "ab"], ["c", "b", "a"], ["abc", "c", "ab", "b", "a"])
    assert sum_tree(g, "a", FIRST_INPUT_FIRST).leaves == ["a"] and not sum_tree(g, "a", LAST_INPUT_FIRST).adds
    with pytest.raises(ValueError, match="order"):
        sum_tree(g, "abc", "topological")


def test_row_window_tells_the_schedules_apart():
    """The rows of a T-GIM matrix: equal within each window (uniform), only each window's first row
    non-zero (exact), or neither; a graph without reparameterization has no windows."""
    from lmhtc.compiler.analysis.windows import row_window
    from lmhtc.compiler.ir import Graph
    g = Graph(steps=4, meta={"reparam_levels": 2})
    uniform = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3], [0, 0, 3, 3]])
    exact = np.array([[4, 4, 0, 0], [0, 0, 0, 0], [1, 1, 5, 5], [0, 0, 0, 0]])
    assert row_window(g, uniform) == (2, False) and row_window(g, exact) == (2, True)
    mixed = exact.copy()
    mixed[3, 0] = 1
    assert row_window(g, mixed) == (1, False)
    assert row_window(Graph(steps=4), uniform) == (1, False)
    assert row_window(Graph(steps=3, meta={"reparam_levels": 2}), np.ones((3, 3), int)) == (1, False)
