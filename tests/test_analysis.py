"""The shared analyses (compiler/analysis/): one function each, called by the passes, the runtime and the
emitters; the window plan is an annotation written by the ``plan_windows`` pass and checked by the
integer validator."""
from __future__ import annotations

import numpy as np
import pytest

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
