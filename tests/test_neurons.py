"""Neuron semantics (docs/design.md §1): hand-computed sequences, special cases, Theorem 4.4's setting."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmhtc.compiler.neurons import QCFS, IFNeuron, LMHTNeuron, TimeDistributed
from reference import lmht_reference

INF = float("inf")


def run(neuron, seq):
    """Feed a [T, n] sequence as a vector input ([T, B=1, n])."""
    x = torch.tensor(seq, dtype=torch.float32).reshape(len(seq), 1, -1)
    with torch.no_grad():
        return neuron(x).reshape(len(seq), -1).numpy()


def lmht(levels, T, theta, v_init=0.0, alpha=0.0, mask=None):
    n = LMHTNeuron(levels, T, theta, v_init)
    with torch.no_grad():
        n.alpha.fill_(alpha)
        if mask is not None:
            m = torch.tensor(mask, dtype=torch.float32)
            n.mask.copy_(m.reshape(n.mask.shape))
            n.mask_linear.copy_(m.reshape(n.mask_linear.shape))
    return n


# -- hand-computed sequences -------------------------------------------------

def test_if_neuron_soft_reset_hand_sequence():
    # θ = 1, input 0.75 every step: v = .75 → 0; 1.5 → 1 (v .5); 1.25 → 1 (v .25); 1.0 → 1 (v 0)
    out = run(IFNeuron(4, threshold=1.0), [[0.75]] * 4)
    assert out[:, 0].tolist() == [0.0, 1.0, 1.0, 1.0]


def test_lmht_L1_identity_mixing_equals_if_neuron():
    # T = 2, Ω = identity (M = +inf on the diagonal, -inf off it), λ = 1 → the vanilla IF model
    seq = [[0.75, 1.5, -0.5], [0.75, 0.25, 2.0]]
    n = lmht(1, 2, 1.0, mask=[[INF, -INF], [-INF, INF]])
    assert np.array_equal(run(n, seq), run(IFNeuron(2, 1.0), seq))
    assert run(n, seq).tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]


def test_lmht_L2_uniform_mixing_hand_sequence():
    # θ = 1, M = 0 → Ω = 1/4 everywhere; x = [3,1,1,1] → every step receives 1.5
    # v: 1.5 → 1 (v .5); 2.0 → 2 (v 0); 1.5 → 1; 2.0 → 2
    out = run(lmht(2, 4, 1.0), [[3.0], [1.0], [1.0], [1.0]])
    assert out[:, 0].tolist() == [1.0, 2.0, 1.0, 2.0]


def test_lmht_L2_causal_mixing_hand_sequence():
    # T = 2, Ω = [[1, 0], [1, 1]]: step 0 sees x0 = .5, step 1 sees x0 + x1 = 1.5 on top of v = .5
    out = run(lmht(2, 2, 1.0, mask=[[INF, -INF], [INF, INF]]), [[0.5], [1.0]])
    assert out[:, 0].tolist() == [0.0, 2.0]


def test_lmht_L4_levels_and_clipping_hand_sequence():
    # θ = 0.5, L = 4, Ω = 1/2: input 5 per step → v 5 → clip(10)=4 levels (2.0), v 3; v 8 → 2.0, v 6
    out = run(lmht(4, 2, 0.5), [[5.0, 1.5, -1.0], [5.0, 1.5, -1.0]])
    assert out.tolist() == [[2.0, 1.5, 0.0], [2.0, 1.5, 0.0]]


def test_lmht_leak_and_v_init_hand_sequence():
    # λ = 0.75 (a = ln(1/3)), θ = 1, L = 2, T = 2, Ω = 1/2, v_init 0.5, input 1 per step
    # v0 = .75·.5 + 1 = 1.375 → 1 (v .375); v1 = .75·.375 + 1 = 1.28125 → 1
    n = lmht(2, 2, 1.0, v_init=0.5, alpha=math.log(1 / 3))
    assert n.leak().item() == pytest.approx(0.75, abs=1e-7)
    out = run(n, [[1.0], [1.0]])
    assert out[:, 0].tolist() == [1.0, 1.0]
    # the leak matters: with λ = 1.5 (a → +inf) the residual grows: 1.75 → 1 (.75); 1.125+1 = 2.125 → 2
    n = lmht(2, 2, 1.0, v_init=0.5, alpha=INF)
    assert run(n, [[1.0], [1.0]])[:, 0].tolist() == [1.0, 2.0]


def test_input_scale_multiplies_the_input():
    a = lmht(2, 2, 1.0)
    a.scale = 2.0
    b = lmht(2, 2, 1.0)
    seq = [[0.3, 0.6, 1.1], [0.2, 0.9, -0.4]]
    assert np.array_equal(run(a, seq), run(b, (2 * np.array(seq)).tolist()))


# -- module vs independent reference, property-based ----------------------------

dyadic = st.integers(-64, 64).map(lambda k: k / 8.0)


@settings(max_examples=60, deadline=None)
@given(levels=st.sampled_from([1, 2, 4]), T=st.sampled_from([1, 2, 4]), theta=st.sampled_from([0.5, 1.0, 2.0]),
       v_init=st.sampled_from([0.0, 0.5]), data=st.data())
def test_uniform_lmht_matches_reference(levels, T, theta, v_init, data):
    seq = data.draw(st.lists(st.lists(dyadic, min_size=3, max_size=3), min_size=T, max_size=T))
    got = run(lmht(levels, T, theta, v_init), seq)
    want = lmht_reference(np.array(seq), theta, levels, v_init=v_init)
    assert np.array_equal(got, want)


def test_feature_map_and_vector_inputs_use_their_own_mask():
    n = lmht(2, 2, 1.0)
    with torch.no_grad():
        n.mask.copy_(torch.tensor([[INF, -INF], [-INF, INF]]).reshape(n.mask.shape))   # identity for conv
        n.mask_linear.zero_()                                                           # uniform for linear
    x = torch.tensor([1.0, 0.0])
    fmap = x.reshape(2, 1, 1, 1, 1)
    vec = x.reshape(2, 1, 1)
    with torch.no_grad():
        assert n(fmap).flatten().tolist() == [1.0, 0.0]
        assert n(vec).flatten().tolist() == [0.0, 1.0]   # .5 → 0; .5+.5 → 1


def test_mask_linear_earlier_4d_layout_loads():
    n = lmht(2, 2, 1.0)
    state = n.state_dict()
    state["mask_linear"] = torch.tensor([[0.3, -0.2], [1.0, 0.5]]).reshape(2, 2, 1, 1)
    n.load_state_dict(state, strict=True)
    assert n.mask_linear.shape == (2, 2, 1, 1, 1)
    assert n.omega(feature_map=False)[1, 0].item() == pytest.approx(2 * torch.sigmoid(torch.tensor(1.0)).item() / 2)


def test_surrogate_gradient_window():
    n = lmht(2, 1, 1.0)
    v = torch.tensor([0.4, 0.5, 1.7, 2.5, 2.6], requires_grad=True)
    n(v.reshape(1, 1, -1)).sum().backward()
    # gradient 1 on [θ/2, Lθ + θ/2] = [0.5, 2.5], else 0
    assert v.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_wrong_number_of_steps_is_rejected():
    with pytest.raises(ValueError, match="expects 2 time-steps"):
        lmht(2, 2, 1.0)(torch.zeros(3, 1, 4))


# -- Theorem 4.4's setting: uniform input, M = 0, λ = 1, v_init 0.5 → LT-level QCFS ------------

@settings(max_examples=80, deadline=None)
@given(levels=st.sampled_from([1, 2, 4]), T=st.sampled_from([1, 2, 4, 8]), theta=st.sampled_from([0.5, 1.0, 2.0]),
       values=st.lists(st.integers(-96, 160).map(lambda k: k / 16.0), min_size=1, max_size=8))
def test_uniform_input_equals_LT_level_qcfs(levels, T, theta, values):
    c = torch.tensor(values)
    neuron = lmht(levels, T, theta, v_init=0.5)
    with torch.no_grad():
        mean_out = neuron(c.reshape(1, 1, -1).repeat(T, 1, 1)).mean(0).flatten()
        # QCFS with Q = L·T levels and threshold L·θ (the neuron's largest per-step output)
        q = QCFS(levels * T, levels * theta)(c)
    assert torch.equal(mean_out, q)


def test_qcfs_hand_values():
    q = QCFS(4, 2.0)   # step 0.5, rounding to nearest, clipped to [0, 2]
    x = torch.tensor([-1.0, 0.2, 0.25, 0.74, 0.76, 1.9, 3.0])
    assert q(x).tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 2.0, 2.0]


def test_time_distributed_applies_per_step():
    lin = torch.nn.Linear(3, 2)
    td = TimeDistributed(lin)
    x = torch.randn(4, 5, 3)
    with torch.no_grad():
        assert torch.allclose(td(x), torch.stack([lin(x[t]) for t in range(4)]))
    assert list(td.state_dict()) == ["0.weight", "0.bias"]
