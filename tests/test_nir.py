"""NIR import/export: snnTorch networks through ``lmhtc import-nir`` spike for spike, round trips, refusals."""
from __future__ import annotations

import copy

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_one_line_error, cli
from lmhtc.compiler.artifact import graphs_equal, load_artifact, save_artifact
from lmhtc.compiler.executor import _Params, neuron_dynamics, run_float
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.lif_node import LIFNeuron, lif_dynamics
from lmhtc.compiler.pipeline import compile_graphs
from nets import TinyResNet, randomize

snn = pytest.importorskip("snntorch")
from snntorch.export_nir import export_to_nir  # noqa: E402

STEPS = 16
BETA = 0.875


def _leaky(shape, reset, output=False):
    """A snnTorch Leaky with per-neuron β and θ (a scalar exports an LIF of empty shape that NIR rejects)."""
    return snn.Leaky(beta=torch.full(shape, BETA), threshold=torch.ones(shape), init_hidden=True,
                     reset_mechanism=reset, reset_delay=False, output=output)


def _dyadic_(module, seed, scale=4):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randint(-scale, scale + 1, p.shape, generator=g) / scale)


def mlp(reset, seed=0):
    fc1, fc2 = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)
    _dyadic_(fc1, seed)
    _dyadic_(fc2, seed + 1, scale=2)
    return torch.nn.Sequential(fc1, _leaky((8,), reset), fc2, _leaky((3,), reset, output=True)), (4,)


def convnet(reset, seed=0):
    conv, fc = torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Linear(8, 3)
    _dyadic_(conv, seed)
    _dyadic_(fc, seed + 1, scale=2)
    # Flatten(start_dim=-3) flattens one sample (export_to_nir traces one, without the batch dimension) and a batch
    return torch.nn.Sequential(conv, _leaky((2, 4, 4), reset), torch.nn.AvgPool2d(2), torch.nn.Flatten(-3), fc,
                               _leaky((3,), reset, output=True)), (1, 4, 4)


def run_snntorch(net, x):
    """Per-step spikes of every Leaky of ``net`` on ``x`` [steps, N, ...]: {module index: [steps, N, ...]}."""
    import snntorch.utils

    snntorch.utils.reset(net)
    leakies = {i: m for i, m in enumerate(net) if isinstance(m, snn.Leaky)}
    seen = {i: [] for i in leakies}
    hooks = [m.register_forward_hook(lambda m, a, out, i=i: seen[i].append(out[0] if isinstance(out, tuple) else out))
             for i, m in leakies.items()]
    with torch.no_grad():
        for t in range(x.shape[0]):
            net(torch.as_tensor(x[t]))
    for h in hooks:
        h.remove()
    return {i: torch.stack(v).numpy() for i, v in seen.items()}


def inputs(shape, seed=0, n=16):
    """Dyadic input currents in [0, 2.5], so membranes land exactly on θ and go beyond 2θ."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 21, size=(STEPS, n, *shape)) / 8).astype(np.float32)


def import_net(tmp_path, net, shape, reset, name="m"):
    model = tmp_path / f"{name}.nir"
    nir.write(model, export_to_nir(net, torch.zeros(shape)))
    art = tmp_path / f"{name}.lmhtc"
    code, out = cli("import-nir", model, "--dialect", "snntorch", "--reset", reset, "-o", art, "--no-progress")
    assert code == 0, out
    return model, art


@pytest.mark.parametrize("build", [mlp, convnet])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_spikes_equal_at_every_step_and_layer(tmp_path, build, reset):
    net, shape = build(reset)
    _, art = import_net(tmp_path, net, shape, reset)
    graph = load_artifact(art)[0]["compiled"]
    lifs = graph.nodes_of(LIFNeuron)
    assert len(lifs) == 2 and all(n.reset == reset and n.reset_timing == "snntorch" for n in lifs)
    x = inputs(shape)
    currents = {n.inputs[0] for n in lifs}
    run = run_float(graph, x, capture={n.name for n in lifs} | currents)
    ref = run_snntorch(net, x)
    for node, i in zip(lifs, sorted(ref)):
        assert np.array_equal(run.captured[node.name], ref[i]), (node.name, reset)
    assert run.spike_counts.sum() == sum(r.sum() for r in ref.values())
    # not vacuous: membranes reach θ exactly and beyond 2θ, and the plain rule "v > θ, then reset" differs
    # from snnTorch with subtract reset (the double-reset correction) and agrees with it with zero reset
    params = _Params(torch.float32, "cpu")
    at_theta = beyond = 0
    for node in lifs:
        cur = torch.as_tensor(run.captured[node.inputs[0]])
        s, u = lif_dynamics(cur, node, params)
        at_theta += int((u == 1).sum())
        beyond += int((u > 2).sum())
        plain = copy.copy(node)
        plain.reset_timing = "same-step"
        same = np.array_equal(lif_dynamics(cur, plain, params)[0].numpy(), s.numpy())
        if node is lifs[0]:
            assert same == (reset == "zero"), reset
    assert at_theta > 0 and beyond > 0


def test_round_trip_import_export_read(tmp_path):
    net, shape = mlp("subtract", seed=3)
    model, art = import_net(tmp_path, net, shape, "subtract")
    back = tmp_path / "back.nir"
    code, out = cli("export", art, "--target", "nir", "-o", back)
    assert code == 0, out
    a, b = nir.read(model), nir.read(back)
    assert set(a.nodes) == set(b.nodes) and set(a.edges) == set(b.edges)
    for key in a.nodes:
        assert type(a.nodes[key]) is type(b.nodes[key]), key
        for f in ("weight", "bias", "v_threshold", "v_reset", "v_leak"):
            if hasattr(a.nodes[key], f):
                assert np.array_equal(getattr(a.nodes[key], f), getattr(b.nodes[key], f)), (key, f)
        for f in ("tau", "r"):
            if hasattr(a.nodes[key], f):
                assert np.allclose(getattr(a.nodes[key], f), getattr(b.nodes[key], f), rtol=1e-6), (key, f)
    assert b.metadata["dialect"] == "snntorch" and b.metadata["reset"] == "subtract"
    # the metadata restores dialect and reset: the re-imported graph is the same graph, with the same spikes
    art2 = tmp_path / "back.lmhtc"
    code, out = cli("import-nir", back, "-o", art2, "--no-progress")
    assert code == 0, out
    g1, g2 = load_artifact(art)[0]["compiled"], load_artifact(art2)[0]["compiled"]
    g2.meta = g1.meta
    assert graphs_equal(g1, g2)
    x = inputs(shape, seed=1)
    assert np.array_equal(run_float(g1, x).outputs, run_float(g2, x).outputs)


def test_if_network_without_tgim_exports_and_runs_the_same(tmp_path):
    """A single-level IR network (IF neurons, θ-valued outputs) goes to NIR as LIF → Scale(θ) and back exactly."""
    from lmhtc.compiler.ir import Neuron, TemporalMix

    model = randomize(TinyResNet(1, 3, residual=False, batchnorm=False), 5)
    graph = compile_graphs(trace_to_ir(model, (2, 8, 8)), reparam=False)["compiled"]
    for mix in graph.nodes_of(TemporalMix):
        graph.remove_passthrough(mix.name)
    for n in graph.nodes_of(Neuron):
        n.leak = np.full(graph.steps, 0.75)
    art, back = tmp_path / "if.lmhtc", tmp_path / "if.nir"
    save_artifact(art, {"source": graph, "compiled": graph})
    code, out = cli("export", art, "--target", "nir", "-o", back)
    assert code == 0, out
    code, out = cli("import-nir", back, "--steps", graph.steps, "-o", tmp_path / "if2.lmhtc", "--no-progress")
    assert code == 0, out
    again = load_artifact(tmp_path / "if2.lmhtc")[0]["compiled"]
    x = np.random.default_rng(0).normal(size=(5, 2, 8, 8)).astype(np.float32)
    a, b = run_float(graph, x, dtype=torch.float64), run_float(again, x, dtype=torch.float64)
    assert np.array_equal(a.outputs, b.outputs) and np.array_equal(a.spike_counts, b.spike_counts)
    assert a.spike_counts.sum() > 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-24, 40), min_size=6, max_size=6), st.sampled_from([1.0, 0.5, 0.75]))
def test_lif_kind_with_ge_and_subtract_is_the_ir_neuron(current, beta):
    """lif (v ≥ θ, subtract, same step) equals the IR's single-level soft-reset neuron on any input."""
    cur = torch.tensor(current, dtype=torch.float64).reshape(6, 1, 1) / 8
    one = np.ones(1)
    node = LIFNeuron("n", [], shape=(1,), beta=beta * one, scale=one, bias=0 * one, threshold=one, v_reset=0 * one,
                     reset="subtract", compare=">=")
    s, _ = lif_dynamics(cur, node, _Params(torch.float64, "cpu"))
    ref = neuron_dynamics(cur, 1.0, 1, torch.full((6,), beta, dtype=torch.float64), 0.0, 1.0)
    assert torch.equal(s, ref)


# -- refusals --------------------------------------------------------------------------------------------

def _graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _affine(n):
    return nir.Affine(np.eye(n, dtype=np.float32), np.zeros(n, np.float32))


def _lif(n):
    return nir.LIF(tau=np.full(n, 8e-4, np.float32), r=np.full(n, 8.0, np.float32), v_leak=np.zeros(n, np.float32),
                   v_threshold=np.ones(n, np.float32), v_reset=np.zeros(n, np.float32))


def test_unsupported_node_is_refused_naming_it(tmp_path):
    g = _graph({"input": nir.Input({"input": np.array([2])}), "d": nir.Delay(np.ones(2, np.float32)),
                "output": nir.Output({"output": np.array([2])})}, [("input", "d"), ("d", "output")])
    nir.write(tmp_path / "d.nir", g)
    code, out = cli("import-nir", tmp_path / "d.nir", "--dialect", "snntorch", "-o", tmp_path / "d.lmhtc")
    assert_one_line_error(code, out, "'d'", "Delay")
    assert not (tmp_path / "d.lmhtc").exists()


def test_cyclic_graph_is_refused(tmp_path):
    g = _graph({"input": nir.Input({"input": np.array([2])}), "w": _affine(2), "lif": _lif(2),
                "rec": _affine(2), "output": nir.Output({"output": np.array([2])})},
               [("input", "w"), ("w", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")])
    nir.write(tmp_path / "rec.nir", g)
    code, out = cli("import-nir", tmp_path / "rec.nir", "--dialect", "snntorch", "-o", tmp_path / "r.lmhtc")
    assert_one_line_error(code, out, "cycle", "LIF")


def test_lmht_artifact_to_nir_names_tgim(tmp_path):
    graph = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 1), (2, 8, 8)), reparam=False)["compiled"]
    art = tmp_path / "lmht.lmhtc"
    save_artifact(art, {"source": graph, "compiled": graph})
    code, out = cli("export", art, "--target", "nir", "-o", tmp_path / "x.nir")
    assert_one_line_error(code, out, "T-GIM", "NIR 1.0")
    assert not (tmp_path / "x.nir").exists()


def test_bad_flags_and_files(tmp_path):
    net, shape = mlp("zero")
    model = tmp_path / "m.nir"
    nir.write(model, export_to_nir(net, torch.zeros(shape)))
    assert_one_line_error(*cli("import-nir", model, "-o", tmp_path / "a"), "--dialect")
    assert_one_line_error(*cli("import-nir", model, "--dialect", "generic", "-o", tmp_path / "a"), "--dt")
    assert_one_line_error(*cli("import-nir", model, "--dialect", "brian", "-o", tmp_path / "a"), "brian")
    assert_one_line_error(*cli("import-nir", model, "--dialect", "snntorch", "--reset", "soft", "-o", tmp_path / "a"),
                          "--reset")
    assert_one_line_error(*cli("import-nir", tmp_path / "none.nir", "--dialect", "snntorch", "-o", tmp_path / "a"),
                          "none.nir")
    (tmp_path / "junk.nir").write_bytes(b"not hdf5")
    assert_one_line_error(*cli("import-nir", tmp_path / "junk.nir", "--dialect", "snntorch", "-o", tmp_path / "a"),
                          "junk.nir")
    assert not (tmp_path / "a").exists()
