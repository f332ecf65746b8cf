"""The executable integer semantics (lmhtc.semantics) and every backend against it, op by op, on shared cases."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import int_reference as ref
import semantics_cases as cases
from lmhtc import semantics
from lmhtc.compiler.intir import QInput, QNeuron, QTemporalMix, rs as intir_rs
from lmhtc.runtime import simulator
from lmhtc.runtime.neuron import rs as runtime_rs
from lmhtc.runtime.neuron import run_neuron
from lmhtc.targets import onnx_int
from lmhtc.targets.onnx_common import IR_VERSION, OPSET

I64 = np.int64


# -- the definition itself: hand values and the independent test reference -------------------------

def test_rs_rounds_half_away_from_zero():
    a = np.array([5, 6, 7, -5, -6, -7, 2, -2], I64)
    np.testing.assert_array_equal(semantics.rs(a, 2), [1, 2, 2, -1, -2, -2, 1, -1])   # 1.25, 1.5, 1.75, ±0.5 → ±1
    np.testing.assert_array_equal(semantics.rs(a, 0), a)
    np.testing.assert_array_equal(semantics.exp_shift(a, 3), a * 8)
    np.testing.assert_array_equal(semantics.saturate(np.array([-200, 127, 128]), 8), [-128, 127, 127])
    np.testing.assert_array_equal(semantics.encode_input(np.array([0.5, -0.5, 1.49, 300.0]), 1.0, 8), [1, -1, 1, 127])


def test_neuron_step_multi_level_soft_reset_and_saturation():
    v, k, clipped = semantics.neuron_step(np.array([0, 5, 100]), np.array([7, 2, 100]), 1 << 12, 12,
                                          np.array([3, 3, 3]), 2, 8)
    np.testing.assert_array_equal(k, [2, 2, 2])                 # 7 ≥ 2·3; 7 ≥ 6; 127 (clipped 200) ≥ 6
    np.testing.assert_array_equal(v, [1, 1, 121])
    np.testing.assert_array_equal(clipped, [False, False, True])


@pytest.mark.parametrize("a,f", cases.RS)
def test_semantics_rs_equals_the_independent_reference(a, f):
    np.testing.assert_array_equal(semantics.rs(a, f), ref.rs(a, f))


@pytest.mark.parametrize("a,bits", cases.SATURATE)
def test_semantics_saturate_equals_the_independent_reference(a, bits):
    np.testing.assert_array_equal(semantics.saturate(a, bits), ref.sat(a, bits))


@pytest.mark.parametrize("y,omega,f", cases.MIX)
def test_semantics_temporal_mix_equals_the_independent_reference(y, omega, f):
    np.testing.assert_array_equal(semantics.temporal_mix(y, omega, f), ref.temporal_mix(y[:, :, None], omega, f)[:, :, 0])


@pytest.mark.parametrize("case", cases.NEURON)
def test_semantics_neuron_equals_the_independent_reference(case):
    node = _qneuron(case)
    k, sat = cases.neuron_reference(case)
    rk, rsat = ref.neuron(case["current"], node)
    np.testing.assert_array_equal(k, rk)
    np.testing.assert_array_equal(sat, rsat)


# -- the runtime's torch kernels ------------------------------------------------------------------

@pytest.mark.parametrize("a,f", cases.RS)
def test_runtime_rs(a, f):
    np.testing.assert_array_equal(intir_rs(torch.from_numpy(a.copy()), f).numpy(), semantics.rs(a, f))
    np.testing.assert_array_equal(runtime_rs(torch.from_numpy(a.copy()), f).numpy(), semantics.rs(a, f))
    small = a[np.abs(a) < 2 ** 30]                     # the int32 path, where the value and 2^(F−1) fit
    if f < 30:
        np.testing.assert_array_equal(runtime_rs(torch.from_numpy(small.astype(np.int32)), f).numpy(),
                                      semantics.rs(small, f))


@pytest.mark.parametrize("a,e", cases.EXP_SHIFT)
def test_runtime_exp_shift(a, e):
    np.testing.assert_array_equal(simulator._exp_shift(torch.from_numpy(a.copy()), e).numpy(), semantics.exp_shift(a, e))


@pytest.mark.parametrize("x,scale,bits", cases.ENCODE)
def test_runtime_encode_input(x, scale, bits):
    node = QInput("x", shape=(len(x),), scale=scale, bits=bits)
    got = simulator._encode_input(torch.from_numpy(x[None]), node)[0].numpy()
    np.testing.assert_array_equal(got, semantics.encode_input(x, scale, bits))


@pytest.mark.parametrize("y,omega,f", cases.MIX)
def test_runtime_temporal_mix(y, omega, f):
    got = runtime_rs(simulator._mix(omega, torch.from_numpy(y)), f).numpy()
    np.testing.assert_array_equal(got, semantics.temporal_mix(y, omega, f))


@pytest.mark.parametrize("case", cases.NEURON)
def test_runtime_neuron(case):
    """Both of the runtime's neuron loops (int32 where a membrane bound proves no saturation, else int64)."""
    node = _qneuron(case)
    rk, rsat = cases.neuron_reference(case)
    for bound in (None, int(np.abs(case["current"]).max())):
        k, sat = run_neuron(torch.from_numpy(case["current"]), node, 1, False, torch.from_numpy(case["theta"]),
                            torch.from_numpy(case["v_init"]), cur_bound=bound)
        np.testing.assert_array_equal(k.numpy(), rk)
        np.testing.assert_array_equal(sat.numpy(), rsat)


# -- the integer ONNX emitter's op patterns, in onnxruntime and in onnx's reference evaluator -------

def _run_onnx(build, inputs: dict[str, np.ndarray], expected: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The op pattern ``build`` emits, run by onnxruntime and by onnx's reference evaluator."""
    b = onnx_int._IntBuilder()
    outs = build(b)
    outs = outs if isinstance(outs, list) else [outs]
    assert len(outs) == len(expected)
    names = [f"out{i}" for i in range(len(expected))]
    for o, n in zip(outs, names):
        b.op("Identity", [o], "out", out=n)
    vi = [helper.make_tensor_value_info(k, TensorProto.DOUBLE if v.dtype == np.float64 else
                                        TensorProto.FLOAT if v.dtype == np.float32 else TensorProto.INT64, v.shape)
          for k, v in inputs.items()]
    vo = [helper.make_tensor_value_info(n, TensorProto.INT64, e.shape) for n, e in zip(names, expected)]
    model = helper.make_model(helper.make_graph(b.nodes, "op", vi, vo, initializer=b.inits),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [sess.run(names, inputs), ReferenceEvaluator(model).run(names, inputs)]


@pytest.mark.parametrize("a,f", cases.RS)
def test_onnx_rs(a, f):
    want = semantics.rs(a, f)
    for got in _run_onnx(lambda b: b.rs("a", f, "rs"), {"a": a}, [want]):
        np.testing.assert_array_equal(got[0], want)


@pytest.mark.parametrize("a,e", cases.EXP_SHIFT)
def test_onnx_exp_shift(a, e):
    want = semantics.exp_shift(a, e)
    for got in _run_onnx(lambda b: b.exp_shift("a", e, "e"), {"a": a}, [want]):
        np.testing.assert_array_equal(got[0], want)


@pytest.mark.parametrize("x,scale,bits", cases.ENCODE)
def test_onnx_encode_input(x, scale, bits):
    node = QInput("x", shape=(len(x),), scale=scale, bits=bits)
    want = semantics.encode_input(x, scale, bits)[None]
    for got in _run_onnx(lambda b: onnx_int._encode_input(b, node), {"x": x[None]}, [want]):
        np.testing.assert_array_equal(got[0], want)


@pytest.mark.parametrize("y,omega,f", cases.MIX)
def test_onnx_temporal_mix(y, omega, f):
    node = QTemporalMix("mix", omega=omega, frac_bits=f)
    steps = len(y)
    inputs = {f"y{t}": y[t] for t in range(steps)}
    want = semantics.temporal_mix(y, omega, f)
    for got in _run_onnx(lambda b: onnx_int._mix(b, node, list(inputs), steps), inputs, list(want)):
        np.testing.assert_array_equal(np.stack(got), want)


@pytest.mark.parametrize("case", cases.NEURON)
def test_onnx_neuron(case):
    node = _qneuron(case)
    steps = len(case["current"])
    inputs = {f"i{t}": case["current"][t] for t in range(steps)}
    rk, _ = cases.neuron_reference(case)
    for got in _run_onnx(lambda b: onnx_int._neuron(b, node, list(inputs), steps), inputs, list(rk)):
        np.testing.assert_array_equal(np.stack(got), rk)


def _qneuron(case: dict) -> QNeuron:
    return QNeuron("sn", shape=(case["current"].shape[-1],), threshold=case["theta"], levels=case["levels"],
                   leak=case["leak"], v_init=case["v_init"], leak_frac_bits=case["leak_frac_bits"],
                   membrane_bits=case["membrane_bits"])
