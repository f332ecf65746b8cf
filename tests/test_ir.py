"""IR: shape inference, validation that names the offending node, frontend coverage, float executor."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lmhtc.compiler.executor import run_float
from lmhtc.compiler.frontends import FrontendError, trace_to_ir
from lmhtc.compiler.ir import (Add, Conv2d, Flatten, Graph, Input, IRError, Linear, Neuron, Readout, TemporalMix,
                         finalize, infer_shapes, receives_spikes, validate)
from lmhtc.compiler.neurons import QCFS, IFNeuron, LMHTNeuron, TimeDistributed, repeat_steps
from lmhtc.compiler.zoo import build_snn
from nets import TinyResNet, randomize


def small_graph(steps=2) -> Graph:
    g = Graph(steps=steps)
    g.add(Input("input", [], input_shape=(1, 4, 4)))
    g.add(Conv2d("conv", ["input"], weight=np.ones((2, 1, 3, 3), np.float32), bias=None, padding=(1, 1)))
    g.add(TemporalMix("mix", ["conv"], omega=np.eye(steps)))
    g.add(Neuron("sn", ["mix"], threshold=1.0, levels=2, leak=np.ones(steps)))
    g.add(Flatten("flat", ["sn"]))
    g.add(Linear("fc", ["flat"], weight=np.ones((3, 32), np.float32), bias=np.zeros(3, np.float32)))
    g.add(Readout("out", ["fc"]))
    return g


@pytest.mark.parametrize("share", [False, True])
def test_graph_copy_shares_arrays_only_when_asked(share):
    g = finalize(small_graph())
    c = g.copy(share_arrays=share)
    for name in ("conv", "mix", "sn", "fc"):
        for key, arr in g.node(name).arrays().items():
            other = getattr(c.node(name), key)
            assert (other is arr) == share and np.array_equal(other, arr)
    c.node("fc").inputs.append("x")          # everything else is the copy's own
    c.meta["x"] = 1
    c.node("sn").threshold = 5.0
    assert g.node("fc").inputs == ["flat"] and "x" not in g.meta and g.node("sn").threshold == 1.0


def test_the_traced_graph_holds_copies_of_the_module_parameters():
    model = randomize(TinyResNet(2, 2), 1)
    g = trace_to_ir(model, (2, 8, 8))
    conv = next(n for n in g.topo() if isinstance(n, Conv2d))
    before = conv.weight.copy()
    assert conv.weight.dtype == np.float32 and conv.weight.flags.writeable
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert np.array_equal(conv.weight, before)


def test_shape_inference():
    g = infer_shapes(small_graph())
    assert [n.shape for n in g.topo()] == [(1, 4, 4), (2, 4, 4), (2, 4, 4), (2, 4, 4), (32,), (3,), (3,)]


@pytest.mark.parametrize("mutate, message", [
    (lambda g: setattr(g.node("fc"), "weight", np.ones((3, 31), np.float32)), "node 'fc' (linear): expects 31 input features"),
    (lambda g: setattr(g.node("conv"), "weight", np.ones((2, 3, 3, 3), np.float32)), "node 'conv' (conv2d): expects 3 input channels"),
    (lambda g: setattr(g.node("mix"), "omega", np.eye(3)), "node 'mix' (temporal_mix): omega is (3, 3)"),
    (lambda g: setattr(g.node("sn"), "leak", np.ones(5)), "node 'sn' (neuron): leak schedule"),
    (lambda g: setattr(g.node("sn"), "threshold", 0.0), "node 'sn' (neuron): threshold must be > 0"),
    (lambda g: setattr(g.node("fc"), "bias", np.full(3, np.nan, np.float32)), "node 'fc' (linear): parameter 'bias' has non-finite"),
])
def test_validator_names_the_offending_node(mutate, message):
    g = small_graph()
    mutate(g)
    with pytest.raises(IRError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(g)


def test_validator_structure_errors():
    g = small_graph()
    g.add(Add("bad_add", ["conv", "flat"]))
    with pytest.raises(IRError, match="node 'bad_add' \\(add\\): adds tensors of different shapes"):
        validate(g)
    g = small_graph()
    g.node("fc").inputs = ["nowhere"]
    with pytest.raises(IRError, match="node 'fc' .*input 'nowhere' does not exist"):
        validate(g)


def test_receives_spikes_analysis():
    g = small_graph()
    assert not receives_spikes(g, "mix") and receives_spikes(g, "fc")


def test_executor_hand_computed():
    # one input pixel → weight 1.5 → Ω identity → 2-level neuron θ=1: 1.5 → level 1 (v .5), 1.5+.5=2 → level 2
    g = Graph(steps=2)
    g.add(Input("input", [], input_shape=(1,)))
    g.add(Linear("fc", ["input"], weight=np.array([[1.5]], np.float32), bias=None))
    g.add(TemporalMix("mix", ["fc"], omega=np.eye(2)))
    g.add(Neuron("sn", ["mix"], threshold=1.0, levels=2, leak=np.ones(2)))
    g.add(Readout("out", ["sn"]))
    finalize(g)
    r = run_float(g, np.ones((1, 1), np.float32))
    assert r.outputs[:, 0, 0].tolist() == [1.0, 2.0]
    assert r.logits[0, 0] == 1.5 and r.spike_counts.tolist() == [[3]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fx_frontend_and_executor_match_the_pytorch_module(seed):
    model = randomize(TinyResNet(2, 3), seed).double()
    graph = trace_to_ir(model, (2, 8, 8))
    x = np.random.default_rng(seed).normal(size=(6, 2, 8, 8))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = run_float(graph, x, dtype=torch.float64).outputs
    assert got.shape == ref.shape == (3, 6, 3)
    assert np.allclose(got, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("arch, shape", [("digitsnet", (1, 8, 8)), ("vgg11", (3, 32, 32)),
                                         ("resnet19", (3, 32, 32)), ("cifarnet", (3, 32, 32))])
def test_zoo_architectures_lower_and_run_like_pytorch(arch, shape):
    torch.manual_seed(0)
    model = build_snn(arch, 2, 2, 10, "direct", shape).eval()
    for m in model.modules():   # non-trivial BN statistics and time mixing
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.running_mean.normal_(0, 0.2)
        if isinstance(m, LMHTNeuron):
            m.mask.data.normal_()
            m.mask_linear.data.normal_()
            m.alpha.data.normal_()
    model = model.double()
    graph = trace_to_ir(model, shape)
    x = torch.randn(2, *shape, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.allclose(run_float(graph, x.numpy(), dtype=torch.float64).outputs, ref, rtol=1e-9, atol=1e-9)


def test_if_neurons_lower_with_identity_mixing():
    model = build_snn("vgg11", 1, 3).eval()
    graph = trace_to_ir(model, (3, 32, 32))
    mix = graph.node("layer1.1.tgim")
    assert np.array_equal(mix.omega, np.eye(3)) and graph.node("layer1.1").levels == 1


class _WithRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.T = 2
        self.conv = TimeDistributed(nn.Conv2d(1, 2, 3))
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(repeat_steps(x, self.T)))


class _WithGelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.T = 2
        self.body = TimeDistributed(nn.Conv2d(1, 2, 3), nn.GELU())
        self.sn = LMHTNeuron(2, 2)

    def forward(self, x):
        return self.sn(self.body(repeat_steps(x, self.T)))


class _WithQCFS(nn.Module):
    def __init__(self):
        super().__init__()
        self.T = 2
        self.conv = TimeDistributed(nn.Conv2d(1, 2, 3))
        self.q = QCFS()

    def forward(self, x):
        return self.q(self.conv(repeat_steps(x, self.T)))


class _WrongSteps(nn.Module):
    def __init__(self):
        super().__init__()
        self.T = 2
        self.conv = TimeDistributed(nn.Conv2d(1, 2, 3))
        self.sn = IFNeuron(3)

    def forward(self, x):
        return self.sn(self.conv(repeat_steps(x, self.T)))


@pytest.mark.parametrize("module, message", [
    (_WithRelu, "act: unsupported module ReLU"),
    (_WithGelu, "body.1: unsupported module GELU"),
    (_WithQCFS, "q: QCFS activation in an SNN"),
    (_WrongSteps, "sn: neuron runs 3 time-steps, the model runs 2"),
])
def test_unsupported_modules_are_reported_by_name(module, message):
    with pytest.raises(FrontendError, match=message):
        trace_to_ir(module(), (1, 6, 6))


def test_spike_emitters_are_declared_per_kind():
    """analysis/spikes.py is driven by ``emits_spikes``: exactly the neuron kinds of both phases declare it,
    and each of them is an elementwise non-linear node (what ``is_spiking`` used to test)."""
    import lmhtc.compiler.artifact  # noqa: F401 (registers every node kind the loader knows: qneuron, lif, ...)
    import lmhtc.compiler.convert.msat_node  # noqa: F401 (registers msat_neuron)
    from lmhtc.compiler.ir import NODE_TYPES
    emitters = {k for k, cls in NODE_TYPES.items() if cls.emits_spikes}
    assert {"neuron", "qneuron", "lif", "qlif", "msat_neuron"} <= emitters
    for k in emitters:
        assert NODE_TYPES[k].elementwise and not NODE_TYPES[k].linear, k
    for k, cls in NODE_TYPES.items():
        if cls.elementwise and not cls.linear:
            assert cls.emits_spikes, k
