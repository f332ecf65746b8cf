"""The plain integer reference (tests/int_reference.py) against hand-computed numbers, and — once the runtime
exists — the runtime against the reference, spike for spike (docs/integer-semantics.md)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmhtc.compiler.intir import (GlobalSumPool, QConv2d, QGain, QInput, QLinear, QNeuron, QReadout, QTemporalMix,
                            SumPool2d)
from lmhtc.compiler.ir import Add, Flatten, Graph, infer_shapes
from int_reference import conv_cover, conv_sum, neuron, reference_run, rs, sat, temporal_mix

I64 = np.int64


def arr(*values):
    return np.array(values, dtype=I64)


# -- notation ------------------------------------------------------------------------

def test_rounding_shift_half_away_from_zero():
    a = arr(5, -5, 3, -3, -6, -5, -7, 6, 2, -2, 1, -1, 0)
    # F=1: 2.5→3, −2.5→−3, 1.5→2, −1.5→−2 (a floor shift would give −3>>1 = −2 and (−3+1)>>1 = −1)
    # F=2: −1.5→−2, −1.25→−1, −1.75→−2, 1.5→2, 0.5→1, −0.5→−1, 0.25→0, −0.25→0, 0→0
    expected_f1 = arr(3, -3, 2, -2, -3, -3, -4, 3, 1, -1, 1, -1, 0)
    expected_f2 = arr(1, -1, 1, -1, -2, -1, -2, 2, 1, -1, 0, 0, 0)
    np.testing.assert_array_equal(rs(a, 1), expected_f1)
    np.testing.assert_array_equal(rs(a, 2), expected_f2)
    np.testing.assert_array_equal(rs(a, 0), a)                       # rs(a, 0) = a
    np.testing.assert_array_equal(rs(arr(-3 * 4096, -4096 - 2048, 4096 + 2047), 12), arr(-3, -2, 1))
    assert rs(a, 1).dtype == I64


def test_rounding_shift_agrees_with_compiler_rs():
    """The compiler's closed form (a − [a<0] + 2^(F−1)) >> F is the doc's sign-magnitude formula."""
    from lmhtc.compiler.intir import rs as compiler_rs
    a = np.arange(-300, 301, dtype=I64)
    for f in range(0, 6):
        np.testing.assert_array_equal(rs(a, f), compiler_rs(a, f))


def test_saturation():
    # B=4: range [−8, 7]
    np.testing.assert_array_equal(sat(arr(-9, -8, 0, 7, 8, 100), 4), arr(-8, -8, 0, 7, 7, 7))


def test_temporal_mix_per_step_values():
    # y over 3 steps (one element): 3, −5, 2; omega in units of 2^−2
    y = arr(3, -5, 2).reshape(3, 1)
    omega = np.array([[4, 0, 0],      # I0 = rs(12, 2) = 3
                      [1, 1, 0],      # I1 = rs(3 − 5 = −2, 2) = −0.5 → −1
                      [-1, 2, 3]],    # I2 = rs(−3 − 10 + 6 = −7, 2) = −1.75 → −2
                     dtype=I64)
    np.testing.assert_array_equal(temporal_mix(y, omega, 2)[:, 0], arr(3, -1, -2))
    # frac_bits 0: plain integer mixing, I1 = 3 − 5 = −2, I2 = −3 − 10 + 6 = −7
    np.testing.assert_array_equal(temporal_mix(y, omega, 0)[:, 0], arr(12, -2, -7))


def test_neuron_saturation_counts_only_changed_values():
    class N:   # a bare qneuron: 1 channel, B = 4 (range [−8, 7]), L = 1, Θ = 3, no leak (D = 0, leak = 1)
        threshold, v_init, leak, levels, leak_frac_bits, membrane_bits = arr(3), arr(0), arr(1, 1, 1), 1, 0, 4
    # sample 0: currents 7, 0, 0 → V=7 exactly at the bound (no event), k=1 → V=4; V=4 → k=1 → 1; V=1 → k=0
    # sample 1: currents 9, −20, 1 → 9 clips to 7 (event), k=1 → 4; 4−20=−16 clips to −8 (event), k=0;
    #           −8+1 = −7, k=0
    cur = np.array([[7, 9], [0, -20], [0, 1]], dtype=I64).reshape(3, 2, 1)
    k, sats = neuron(cur, N)
    np.testing.assert_array_equal(k[:, :, 0], np.array([[1, 1], [1, 0], [0, 0]]))
    np.testing.assert_array_equal(sats, arr(0, 2))


def test_conv_cover_and_sum_with_dilation():
    # one row of 5 inputs, kernel 1×2 with dilation 2 and padding 1: out[o] = w0·x[o−1] + w1·x[o+1], 5 outputs
    x = arr(1, 2, 3, 4, 5).reshape(1, 1, 5)
    w = arr(10, 1).reshape(1, 1, 1, 2)
    out = conv_sum(x, w, (1, 1), (0, 1), (1, 2), 1, (1, 5))
    np.testing.assert_array_equal(out.reshape(-1), arr(2, 13, 24, 35, 40))
    # input 0 reached by output 1 only; inputs 1..3 by two outputs; input 4 by output 3 only
    np.testing.assert_array_equal(conv_cover((1, 5), w.shape, (1, 1), (0, 1), (1, 2), (1, 5)).reshape(-1),
                                  arr(1, 2, 2, 2, 1))


@pytest.mark.parametrize("geom", [dict(stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1),
                                  dict(stride=(1, 2), padding=(2, 0), dilation=(2, 1), groups=2),
                                  dict(stride=(3, 1), padding=(1, 2), dilation=(1, 2), groups=4)])
def test_conv_sum_matches_torch_geometry(geom):
    """Geometry check of the loop convolution against torch (small integers: float64 is exact)."""
    rng = np.random.default_rng(0)
    x = rng.integers(-4, 5, size=(2, 3, 4, 7, 6)).astype(I64)        # [steps, N, Cin, H, W]
    w = rng.integers(-9, 10, size=(4, 4 // geom["groups"], 3, 2)).astype(I64)
    ref = F.conv2d(torch.tensor(x.reshape(6, 4, 7, 6), dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
                   None, geom["stride"], geom["padding"], geom["dilation"], geom["groups"])
    out = conv_sum(x, w, geom["stride"], geom["padding"], geom["dilation"], geom["groups"], tuple(ref.shape[-2:]))
    np.testing.assert_array_equal(out.reshape(ref.shape), ref.numpy().astype(I64))


# -- a linear graph: QInput → flatten → QLinear → QTemporalMix → QNeuron (L=2) → QLinear → QReadout ---------

def linear_graph() -> Graph:
    g = Graph(steps=3)
    g.add(QInput("input", [], input_shape=(1, 1, 2), scale=0.5, bits=4))      # q = 7
    g.add(Flatten("flat", ["input"]))
    g.add(QLinear("fc", ["flat"], weight=np.array([[7, 1], [-4, -2]], np.int32), bias=arr(4, -8), shift=2))
    g.add(QTemporalMix("mix", ["fc"], omega=np.array([[4, 0, 0], [1, 1, 0], [1, 1, 1]], I64), frac_bits=2))
    g.add(QNeuron("sn", ["mix"], threshold=arr(10, 20), v_init=arr(3, 1), leak=arr(4, 2, 4), levels=2,
                  leak_frac_bits=2, membrane_bits=8))                         # 2^D = 4; V in [−128, 127]
    g.add(QLinear("head", ["sn"], weight=np.array([[1, 5], [-2, 0], [3, -1]], np.int32), bias=arr(0, 1, -1),
                  shift=1))
    g.add(QReadout("readout", ["head"], scale=np.array([0.5, 0.25, 2.0])))
    return infer_shapes(g)


def test_linear_graph_by_hand():
    g = linear_graph()
    # image 0: x/scale = [0.5, −1.5] → [1, −2];  image 1: [20, −0.4] → [7 (clipped), 0]
    x = np.array([[[[0.25, -0.75]]], [[[10.0, -0.2]]]], np.float32)
    r = reference_run(g, x)
    v = r["values"]
    assert set(v) == {"input", "flat", "fc", "mix", "sn", "head", "readout"}
    for name, val in v.items():
        assert val.dtype == I64 and val.shape == (3, 2, *g.node(name).shape), name
    np.testing.assert_array_equal(v["input"][:, :, 0, 0], np.array([[[1, -2], [7, 0]]] * 3))

    # fc: y = (W·x) << 2 + b:  image 0: [(7 − 2)·4 + 4, (−4 + 4)·4 − 8] = [24, −8]
    #                          image 1: [49·4 + 4, −28·4 − 8] = [200, −120]   (static: same at every step)
    np.testing.assert_array_equal(v["fc"], np.array([[[24, -8], [200, -120]]] * 3))

    # mix (F=2, rows sum to 4, 2, 3): I = y, rs(2y, 2), rs(3y, 2)
    #   image 0: ch0 24, 12, 18;  ch1 −8, −4, −6;   image 1: ch0 200, 100, 150;  ch1 −120, −60, −90
    np.testing.assert_array_equal(v["mix"], np.array([[[24, -8], [200, -120]], [[12, -4], [100, -60]],
                                                      [[18, -6], [150, -90]]]))

    # neuron Θ = [10, 20], v_init = [3, 1], leak = [4, 2, 4] (D=2: 4 = no change, 2 = halve), L = 2, B = 8
    # image 0 ch0: V=3 → rs(12,2)=3 (unchanged) + 24 = 27 → k=2 → 7;  rs(14,2)=3.5→4, +12 = 16 → k=1 → 6;
    #              rs(24,2)=6 (unchanged) + 18 = 24 → k=2 → residue 4.             k = 2, 1, 2
    # image 0 ch1: V=1 → 1 − 8 = −7 → k=0;  rs(−14,2) = −3.5 → −4, −4 − 4 = −8 → k=0;  −8 − 6 = −14 → k=0
    # image 1 ch0: 3 + 200 = 203 → 127 (sat) → k=2 (capped at L, though 127 ≥ 12Θ) → 107;
    #              rs(214,2) = 53.5 → 54, +100 = 154 → 127 (sat) → k=2 → 107;  107 + 150 = 257 → 127 (sat) → k=2
    # image 1 ch1: 1 − 120 = −119;  rs(−238,2) = −59.5 → −60, −60 − 60 = −120;  −120 − 90 = −210 → −128 (sat)
    np.testing.assert_array_equal(v["sn"], np.array([[[2, 0], [2, 0]], [[1, 0], [2, 0]], [[2, 0], [2, 0]]]))
    np.testing.assert_array_equal(r["spike_events"]["sn"], arr(5, 6))
    np.testing.assert_array_equal(r["saturation"]["sn"], arr(0, 4))

    # head: (W·k) << 1 + b with k = [k0, 0]: [2k0, −4k0 + 1, 6k0 − 1]
    #   k0 = 2 → [4, −7, 11];  k0 = 1 → [2, −3, 5]
    np.testing.assert_array_equal(r["outputs_int"], np.array([[[4, -7, 11], [4, -7, 11]],
                                                              [[2, -3, 5], [4, -7, 11]],
                                                              [[4, -7, 11], [4, -7, 11]]]))
    np.testing.assert_array_equal(v["readout"], r["outputs_int"])
    np.testing.assert_array_equal(r["logits_int"], np.array([[10, -17, 27], [12, -21, 33]]))
    assert r["logits_int"].dtype == I64
    np.testing.assert_array_equal(r["logits"], np.array([[10 * 0.5 / 3, -17 * 0.25 / 3, 27 * 2.0 / 3],
                                                         [12 * 0.5 / 3, -21 * 0.25 / 3, 33 * 2.0 / 3]]))

    # SOPs: head fan-out 3 per input: image 0 steps (2, 1, 2)·3, image 1 (2, 2, 2)·3. fc is analog: MACs 2×2
    assert set(r["sops"]) == {"head"}
    np.testing.assert_array_equal(r["sops"]["head"], np.array([[6, 3, 6], [6, 6, 6]]))
    assert r["macs"] == {"fc": 4}


# -- a conv graph: 1×1 conv (analog) → neurons → 3×3 conv stride 2 pad 1 groups 2 → neurons → sum-pool → linear --

def conv_graph() -> Graph:
    g = Graph(steps=2)
    g.add(QInput("input", [], input_shape=(1, 4, 4), scale=1.0, bits=8))
    g.add(QConv2d("c1", ["input"], weight=np.array([1, 2], np.int32).reshape(2, 1, 1, 1), bias=None, shift=0))
    g.add(QTemporalMix("mix1", ["c1"], omega=4096 * np.eye(2, dtype=I64), frac_bits=12))
    g.add(QNeuron("n1", ["mix1"], threshold=arr(1, 2), v_init=arr(0, 0), leak=arr(4096, 4096), levels=3))
    w2 = np.zeros((4, 1, 3, 3), np.int32)
    for co in range(4):
        w2[co] = co + 1
    g.add(QConv2d("c2", ["n1"], weight=w2, bias=arr(0, 0, 0, -5), shift=1, stride=(2, 2), padding=(1, 1),
                  groups=2))
    g.add(QTemporalMix("mix2", ["c2"], omega=np.array([[1, 0], [1, 1]], I64), frac_bits=0))
    g.add(QNeuron("n2", ["mix2"], threshold=arr(10, 20, 30, 50), v_init=arr(0, 0, 0, 0), leak=arr(4096, 4096),
                  levels=1))
    g.add(SumPool2d("pool", ["n2"], kernel=(2, 2), stride=(2, 2)))
    g.add(Flatten("flat", ["pool"]))
    g.add(QLinear("fc", ["flat"], weight=np.array([[1, -1, 2, 0], [0, 1, 0, -3]], np.int32), bias=arr(1, 0)))
    g.add(QReadout("readout", ["fc"], scale=np.array([1.0, 1.0])))
    return infer_shapes(g)


X0 = np.array([[1, 0, 2, 0],
               [0, 3, 0, 1],
               [2, 0, 0, 0],
               [0, 1, 0, 3]], np.float32)


def test_conv_graph_by_hand():
    g = conv_graph()
    assert g.node("c2").shape == (4, 2, 2) and g.node("pool").shape == (4, 1, 1)
    x1 = np.zeros((4, 4), np.float32)
    x1[1, 1], x1[2, 2] = 2.5, -2.5            # encoded 3 and −3 (half away from zero)
    x = np.stack([X0, x1])[:, None]
    r = reference_run(g, x)
    v = r["values"]
    np.testing.assert_array_equal(v["input"][1, 1, 0, 1:3, 1:3], np.array([[3, 0], [0, -3]]))

    # n1: ch0 gets x with Θ=1, ch1 gets 2x with Θ=2, L=3: k = x for x in 0..3 at both steps (no residue);
    # image 1's −3 at (2,2) leaves V at −3, then −6 (leak 4096 = 2^12: no change), no spikes
    for t in range(2):
        for c in range(2):
            np.testing.assert_array_equal(v["n1"][t, 0, c], X0.astype(I64))
            np.testing.assert_array_equal(v["n1"][t, 1, c], np.maximum(v["input"][t, 1, 0], 0))
    np.testing.assert_array_equal(r["spike_events"]["n1"], arr(2 * 2 * 13, 2 * 2 * 3))

    # c2 windows (stride 2, pad 1, 3×3) over rows/cols {0,1} and {1,2,3}: window sums of image 0
    #   W = [[1+0+0+3, 0+2+0+3+0+1], [0+3+2+0+0+1, 3+0+1+0+0+0+1+0+3]] = [[4, 6], [6, 8]]; image 1: all 3
    # weight (co+1) everywhere, groups 2 (co 0,1 read n1 ch0; co 2,3 read ch1 — equal maps), shift 1, bias −5 on co3
    c2_img0 = np.array([[[8, 12], [12, 16]], [[16, 24], [24, 32]], [[24, 36], [36, 48]], [[27, 43], [43, 59]]])
    c2_img1 = np.array([[[6, 6], [6, 6]], [[12, 12], [12, 12]], [[18, 18], [18, 18]], [[19, 19], [19, 19]]])
    for t in range(2):
        np.testing.assert_array_equal(v["c2"][t, 0], c2_img0)
        np.testing.assert_array_equal(v["c2"][t, 1], c2_img1)
    # mix2 (F=0): I0 = y, I1 = 2y
    np.testing.assert_array_equal(v["mix2"][1], 2 * v["mix2"][0])

    # n2, Θ = [10, 20, 30, 50], L=1. image 0, t0: y ≥ Θ except (0,0) of co0..2 and all but (1,1) of co3;
    #   t1: V + 2y ≥ Θ everywhere (e.g. co3 (0,0): 27 + 54 = 81). image 1: t0 none (6<10, 12<20, 18<30, 19<50);
    #   t1: 6+12=18 ≥ 10, 12+24=36 ≥ 20, 18+36=54 ≥ 30, 19+38=57 ≥ 50 → all fire
    t0_img0 = np.array([[[0, 1], [1, 1]]] * 3 + [[[0, 0], [0, 1]]])
    np.testing.assert_array_equal(v["n2"][0, 0], t0_img0)
    np.testing.assert_array_equal(v["n2"][1, 0], np.ones((4, 2, 2)))
    np.testing.assert_array_equal(v["n2"][0, 1], np.zeros((4, 2, 2)))
    np.testing.assert_array_equal(v["n2"][1, 1], np.ones((4, 2, 2)))
    np.testing.assert_array_equal(r["spike_events"]["n2"], arr(10 + 16, 0 + 16))
    np.testing.assert_array_equal(r["saturation"]["n1"], arr(0, 0))
    np.testing.assert_array_equal(r["saturation"]["n2"], arr(0, 0))

    # pool sums per channel: image 0 t0 [3, 3, 3, 1], t1 [4, 4, 4, 4]; image 1 t0 zeros, t1 fours
    np.testing.assert_array_equal(v["flat"][:, 0], np.array([[3, 3, 3, 1], [4, 4, 4, 4]]))
    np.testing.assert_array_equal(v["flat"][:, 1], np.array([[0, 0, 0, 0], [4, 4, 4, 4]]))
    # fc = W·p + [1, 0]:  [3−3+6+1, 3−3] = [7, 0];  [4−4+8+1, 4−12] = [9, −8];  zeros → [1, 0]
    np.testing.assert_array_equal(r["outputs_int"], np.array([[[7, 0], [1, 0]], [[9, -8], [9, -8]]]))
    np.testing.assert_array_equal(r["logits_int"], np.array([[16, -8], [10, -8]]))

    # SOPs of c2: fan-out = Cout/groups (2) × cover, cover = outer([1,2,1,1], [1,2,1,1]) — the padded top/left
    # border row/col is reached by one window only, row/col 1 by two (both windows overlap there).
    #   image 0: Σ x·cover = (1+2) + (3·4 + 1·2) + 2 + (1·2 + 3) = 24 per channel → 2 channels × 2 × 24 = 96
    #   image 1: only x=3 at (1,1), cover 4 → 2 × 2 × 12 = 48 (the −3 at (2,2) made no spike)
    # SOPs of fc: pooled counts × 2 outputs: image 0 (10·2, 16·2), image 1 (0, 32)
    assert set(r["sops"]) == {"c2", "fc"}
    np.testing.assert_array_equal(r["sops"]["c2"], np.array([[96, 96], [48, 48]]))
    np.testing.assert_array_equal(r["sops"]["fc"], np.array([[20, 32], [0, 32]]))
    # c1 is fed by the analog input: Cout/groups × Cin × kh × kw × Hout × Wout = 2 × 1 × 1 × 1 × 16
    assert r["macs"] == {"c1": 32}


def test_cover_at_padded_border():
    # 3×3 kernel, stride 2, padding 1 on a 4×4 map → 2×2 outputs, windows over rows {−1,0,1} and {1,2,3}
    cover = conv_cover((4, 4), (4, 1, 3, 3), (2, 2), (1, 1), (1, 1), (2, 2))
    np.testing.assert_array_equal(cover, np.outer([1, 2, 1, 1], [1, 2, 1, 1]))
    # stride 1, padding 1: corners reached by 4 outputs, edges by 6, the interior by 9
    cover = conv_cover((4, 4), (1, 1, 3, 3), (1, 1), (1, 1), (1, 1), (4, 4))
    np.testing.assert_array_equal(cover, np.outer([2, 3, 3, 2], [2, 3, 3, 2]))


def test_gain_add_and_global_sum_pool():
    # input → 1×1 conv (analog) → mix → neuron (L=2) ─┬→ 1×1 conv ─┐
    #                                                  └→ qgain ─────┴→ add → mix → neuron → global sum → flatten → fc
    g = Graph(steps=2)
    g.add(QInput("input", [], input_shape=(1, 2, 2), scale=1.0))
    g.add(QConv2d("c0", ["input"], weight=np.array([1, 1], np.int32).reshape(2, 1, 1, 1), bias=None))
    g.add(QTemporalMix("m0", ["c0"], omega=np.eye(2, dtype=I64), frac_bits=0))
    g.add(QNeuron("n0", ["m0"], threshold=arr(1, 2), v_init=arr(0, 0), leak=arr(4096, 4096), levels=2))
    g.add(QConv2d("c1", ["n0"], weight=np.array([[1, 0], [0, -1]], np.int32).reshape(2, 2, 1, 1), bias=None))
    g.add(QGain("gain", ["n0"], gain=np.array([3, -2], np.int32), shift=1))
    g.add(Add("add", ["c1", "gain"]))
    g.add(QTemporalMix("m1", ["add"], omega=np.eye(2, dtype=I64), frac_bits=0))
    g.add(QNeuron("n1", ["m1"], threshold=arr(100, 100), v_init=arr(0, 0), leak=arr(4096, 4096), levels=1))
    g.add(GlobalSumPool("gp", ["n1"]))
    g.add(Flatten("flat", ["gp"]))
    g.add(QLinear("fc", ["flat"], weight=np.array([[1, 1]], np.int32), bias=None))
    g.add(QReadout("readout", ["fc"], scale=np.array([1.0])))
    infer_shapes(g)
    x = np.array([[[[1, 2], [3, 0]]]], np.float32)
    r = reference_run(g, x)
    v = r["values"]
    # n0 ch0 (Θ=1, L=2): x = [1,2,3,0] → t0 k = [1,2,2,0] (3 leaves residue 1), t1 V = [1,2,1+3,0] → [1,2,2,0]
    # n0 ch1 (Θ=2, L=2): t0 V = [1,2,3,0] → k = [0,1,1,0], residue [1,0,1,0]; t1 V = [2,2,4,0] → [1,1,2,0]
    np.testing.assert_array_equal(v["n0"][:, 0, 0].reshape(2, 4), np.array([[1, 2, 2, 0], [1, 2, 2, 0]]))
    np.testing.assert_array_equal(v["n0"][:, 0, 1].reshape(2, 4), np.array([[0, 1, 1, 0], [1, 1, 2, 0]]))
    # gain: (3·k0) << 1 = 6·k0 and (−2·k1) << 1 = −4·k1; c1 = [k0, −k1]; add = [7·k0, −5·k1]
    np.testing.assert_array_equal(v["gain"][:, 0, 0], 6 * v["n0"][:, 0, 0])
    np.testing.assert_array_equal(v["gain"][:, 0, 1], -4 * v["n0"][:, 0, 1])
    np.testing.assert_array_equal(v["add"][:, 0, 0], 7 * v["n0"][:, 0, 0])
    np.testing.assert_array_equal(v["add"][:, 0, 1], -5 * v["n0"][:, 0, 1])
    # global sum pool of n1 (nothing reaches Θ=100): zeros, shape (2,1,1)
    assert v["gp"].shape == (2, 1, 2, 1, 1) and not v["gp"].any()
    # SOPs: c1 fan-out Cout = 2 per input: (Σ k over both channels)·2 = t0 (5+2)·2 = 14, t1 (5+4)·2 = 18;
    #       gain fan-out 1: 7, 9;  fc fan-out 1 on zero counts: 0, 0
    np.testing.assert_array_equal(r["sops"]["c1"], np.array([[14, 18]]))
    np.testing.assert_array_equal(r["sops"]["gain"], np.array([[7, 9]]))
    np.testing.assert_array_equal(r["sops"]["fc"], np.array([[0, 0]]))
    assert r["macs"] == {"c0": 2 * 1 * 1 * 1 * 4}
    np.testing.assert_array_equal(r["spike_events"]["n0"], arr(5 + 5 + 2 + 4))


def test_grouped_analog_conv_macs_and_values():
    # input (2,3,3) → 2×2 conv, groups 2, Cout 4 (co 0,1 read channel 0; co 2,3 channel 1), no padding → (4,2,2)
    g = Graph(steps=2)
    g.add(QInput("input", [], input_shape=(2, 3, 3), scale=1.0))
    w = np.array([1, -1, 2, 3], np.int32).reshape(4, 1, 1, 1) * np.ones((4, 1, 2, 2), np.int32)
    g.add(QConv2d("c0", ["input"], weight=w, bias=arr(0, 1, 0, -1), shift=0, groups=2))
    g.add(QTemporalMix("m0", ["c0"], omega=np.eye(2, dtype=I64), frac_bits=0))
    g.add(QNeuron("n0", ["m0"], threshold=arr(1, 1, 1, 1), v_init=arr(0, 0, 0, 0), leak=arr(4096, 4096)))
    g.add(Flatten("flat", ["n0"]))
    g.add(QLinear("fc", ["flat"], weight=np.ones((1, 16), np.int32), bias=None))
    g.add(QReadout("readout", ["fc"], scale=np.array([1.0])))
    infer_shapes(g)
    x = np.zeros((1, 2, 3, 3), np.float32)
    x[0, 0] = np.arange(9).reshape(3, 3)          # 2×2 window sums: [[8, 12], [20, 24]]
    x[0, 1] = 1                                     # window sums 4
    r = reference_run(g, x)
    c0 = r["values"]["c0"][0, 0]
    np.testing.assert_array_equal(c0[0], np.array([[8, 12], [20, 24]]))
    np.testing.assert_array_equal(c0[1], np.array([[-7, -11], [-19, -23]]))
    np.testing.assert_array_equal(c0[2], np.full((2, 2), 8))
    np.testing.assert_array_equal(c0[3], np.full((2, 2), 11))
    # MACs = Cout/groups × Cin × kh × kw × Hout × Wout = 2 × 2 × 2 × 2 × 2 × 2 = 64 (= 16 outputs × 4 taps)
    assert r["macs"] == {"c0": 64}
    assert set(r["sops"]) == {"fc"}


# =====================================================================================================================
# CROSS-CHECK: the runtime against this reference. Skipped until runtime/simulator.py and
# compiler/passes/quantize.py exist; then it must hold spike for spike.
# =====================================================================================================================

def _quantize(quantize_mod, compiled):
    params = inspect.signature(quantize_mod.quantize).parameters
    if "weight_bits" in params:
        return quantize_mod.quantize(compiled, weight_bits=8)
    return quantize_mod.quantize(compiled, quantize_mod.QuantConfig(weight_bits=8))


@pytest.mark.parametrize("reparam", [True, False])
@pytest.mark.parametrize("seed,levels", [(0, 2), (1, 2), (2, 3)])
def test_runtime_matches_reference(seed, levels, reparam):
    simulator = pytest.importorskip("lmhtc.runtime.simulator")
    quantize_mod = pytest.importorskip("lmhtc.compiler.passes.quantize")
    from lmhtc.compiler.frontends import trace_to_ir
    from lmhtc.compiler.pipeline import compile_graphs
    from nets import TinyResNet, randomize

    model = randomize(TinyResNet(levels, 2, channels=3, size=6, in_ch=2), seed)
    compiled = compile_graphs(trace_to_ir(model, (2, 6, 6)), reparam=reparam)["compiled"]
    int_graph = _quantize(quantize_mod, compiled)
    x = np.random.default_rng(seed).normal(size=(3, 2, 6, 6)).astype(np.float32)

    ref = reference_run(int_graph, x)
    names = {n.name for n in int_graph.topo()}
    res = simulator.run_int(int_graph, x, batch_size=2, capture=set(names))

    for name in names:       # every node's integer sequence
        np.testing.assert_array_equal(np.asarray(res.captured[name]), ref["values"][name], err_msg=name)
    neurons = [n.name for n in int_graph.topo() if n.kind == "qneuron"]
    for i, name in enumerate(neurons):
        counts = np.asarray(res.captured[name]).reshape(int_graph.steps, len(x), -1).sum(axis=(0, 2))
        np.testing.assert_array_equal(counts, ref["spike_events"][name], err_msg=name)
        np.testing.assert_array_equal(np.asarray(res.saturation)[:, i], ref["saturation"][name], err_msg=name)
        if hasattr(res, "spike_counts"):
            np.testing.assert_array_equal(np.asarray(res.spike_counts)[:, i], ref["spike_events"][name],
                                          err_msg=name)
    np.testing.assert_array_equal(res.outputs_int, ref["outputs_int"])
    np.testing.assert_array_equal(res.logits_int, ref["logits_int"])
    total_sops = sum(s.sum(axis=1) for s in ref["sops"].values())
    np.testing.assert_array_equal(np.asarray(res.sops), total_sops)
    if hasattr(res, "macs"):
        np.testing.assert_array_equal(np.asarray(res.macs), np.full(len(x), sum(ref["macs"].values())))
    # the networks must actually exercise the comparison
    assert sum(int(s.sum()) for s in ref["spike_events"].values()) > 0


def test_runtime_and_onnx_int_match_reference_at_a_large_negative_exponent():
    """Widest weights and input with 24-bit membranes: the stem's exponent is about −27, so its sums before
    the rounding right shift need ~50 bits while its outputs fit 32. Every kernel must hold the pre-shift
    sums (a runtime that cast them to the output's int32 wrapped and silenced the stem)."""
    import dataclasses

    import onnxruntime as ort

    from lmhtc.compiler.frontends import trace_to_ir
    from lmhtc.compiler.passes.quantize import QuantConfig, quantize
    from lmhtc.compiler.pipeline import compile_graphs
    from lmhtc.runtime.simulator import run_int
    from lmhtc.targets.onnx_int import export_int_onnx
    from nets import TinyResNet, randomize

    model = randomize(TinyResNet(2, 2, channels=3, size=6, in_ch=2), 0)
    compiled = compile_graphs(trace_to_ir(model, (2, 6, 6)), reparam=True)["compiled"]
    g = quantize(compiled, dataclasses.replace(QuantConfig.widest(), membrane_bits=24))
    stem = next(n for n in g.topo() if n.kind == "qconv2d")
    assert stem.shift < -20 and stem.acc_bound > 2 ** 40       # the case this test is about
    x = np.random.default_rng(0).normal(size=(3, 2, 6, 6)).astype(np.float32)
    ref = reference_run(g, x)
    names = [n.name for n in g.topo()]
    for fused in (True, False):
        res = run_int(g, x, batch_size=2, capture=set(names), fused=fused)
        for name in names:
            np.testing.assert_array_equal(np.asarray(res.captured[name]), ref["values"][name], err_msg=name)
    assert sum(int(s.sum()) for s in ref["spike_events"].values()) > 0
    sess = ort.InferenceSession(export_int_onnx(g).SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(["logits_int"], {"x": x})[0], ref["logits_int"])
