"""NIR import/export: snnTorch networks through ``lmhtc import-nir`` spike for spike, round trips, refusals."""
from __future__ import annotations

import copy
import json

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
from lmhtc.runtime.simulator import run_int
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


def synaptic_mlp(reset, seed=0):
    """Linear → Synaptic → Linear → Synaptic (snnTorch exports Synaptic as NIR CubaLIF)."""
    fc1, fc2 = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)
    _dyadic_(fc1, seed)
    _dyadic_(fc2, seed + 1, scale=2)

    def syn(n, output=False):
        return snn.Synaptic(alpha=torch.full((n,), 0.75), beta=torch.full((n,), BETA), threshold=torch.ones(n),
                            init_hidden=True, reset_mechanism=reset, reset_delay=False, output=output)
    return torch.nn.Sequential(fc1, syn(8), fc2, syn(3, output=True)), (4,)


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
    leakies = {i: m for i, m in enumerate(net) if isinstance(m, (snn.Leaky, snn.Synaptic))}
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


def onnx_agrees(tmp_path, art, x, exact: bool) -> None:
    """``export --target onnx`` of ``art``, run by onnxruntime on ``x`` (float32), against the float executor:
    the float rule (argmax of the mean over steps agrees, |d| <= 1e-3·(1 + |ref|) at every step) and, where
    every value is dyadic (``exact``), the same outputs bit for bit."""
    import onnxruntime as ort

    out = tmp_path / "float.onnx"
    code, text = cli("export", art, "--target", "onnx", "-o", out)
    assert code == 0, text
    graph = load_artifact(art)[0]["compiled"]
    x = np.asarray(x, np.float32)
    ref = run_float(graph, x).outputs
    if graph.input.encoding == "sequence" and x.ndim == len(graph.input.input_shape) + 1:
        x = np.ascontiguousarray(np.broadcast_to(x, (graph.steps, *x.shape)))   # the model takes steps
    got, = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["outputs"], {"x": x})
    assert got.shape == ref.shape and np.all(np.abs(got - ref) <= 1e-3 * (1 + np.abs(ref)))
    assert np.array_equal(got.mean(0).argmax(-1), ref.mean(0).argmax(-1))
    assert not exact or np.array_equal(got, ref)


@pytest.mark.parametrize("build", [mlp, convnet, synaptic_mlp])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_spikes_equal_at_every_step_and_layer(tmp_path, build, reset):
    net, shape = build(reset)
    _, art = import_net(tmp_path, net, shape, reset)
    graph = load_artifact(art)[0]["compiled"]
    lifs = graph.nodes_of(LIFNeuron)
    assert len(lifs) == 2 and all(n.reset == reset and n.reset_timing == "snntorch" for n in lifs)
    assert all((n.alpha is not None) == (build is synaptic_mlp) for n in lifs)
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
        theta = torch.as_tensor(node.threshold, dtype=u.dtype)
        at_theta += int((u == theta).sum())
        beyond += int((u > 2 * theta).sum())
        plain = copy.copy(node)
        plain.reset_timing = "same-step"
        same = np.array_equal(lif_dynamics(cur, plain, params)[0].numpy(), s.numpy())
        if node is lifs[0]:
            assert same == (reset == "zero"), reset
    assert at_theta > 0 and beyond > 0
    onnx_agrees(tmp_path, art, x, exact=True)


def test_round_trip_import_export_read(tmp_path):
    net, shape = mlp("subtract", seed=3)
    model, art = import_net(tmp_path, net, shape, "subtract")
    code, out = cli("inspect", art)
    assert code == 0 and "snntorch dialect" in out and "β 0.875" in out, out
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

    model = randomize(TinyResNet(1, 3, residual=True, batchnorm=False), 5)     # the residual add: two edges
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


def generic_graph(rng):
    """Conv2d → LIF (v_leak, v_reset ≠ 0) → SumPool2d → Scale → Flatten → Affine (+ a second edge: summed) → IF:
    (nodes, edges, their parameters)."""
    w = rng.integers(-4, 5, size=(2, 1, 3, 3)) / 4
    tau, r, v_leak, th, v_reset = 4e-3, 2.0, 0.25, 1.0, -0.5
    fc = rng.integers(-4, 5, size=(3, 8)) / 4
    skip = rng.integers(-2, 3, size=(3, 8)) / 4
    scale = np.array([1.0, 0.5]).reshape(2, 1, 1) * np.ones((2, 2, 2))
    full = lambda v: np.full((2, 4, 4), v, np.float32)   # noqa: E731
    nodes = {"input": nir.Input({"input": np.array([1, 4, 4])}),
             "conv": nir.Conv2d((4, 4), w.astype(np.float32), 1, 1, 1, 1, np.zeros(2, np.float32)),
             "lif": nir.LIF(full(tau), full(r), full(v_leak), full(th), full(v_reset)),
             "pool": nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
             "scale": nir.Scale(scale.astype(np.float32)),
             "flat": nir.Flatten({"input": np.array([2, 2, 2])}, 0, -1),
             "fc": nir.Linear(fc.astype(np.float32)), "skip": nir.Linear(skip.astype(np.float32)),
             "if": nir.IF(np.full(3, 500, np.float32), np.full(3, 0.5, np.float32), np.zeros(3, np.float32)),
             "output": nir.Output({"output": np.array([3])})}
    edges = [("input", "conv"), ("conv", "lif"), ("lif", "pool"), ("pool", "scale"), ("scale", "flat"),
             ("flat", "fc"), ("flat", "skip"), ("fc", "if"), ("skip", "if"), ("if", "output")]
    return nodes, edges, dict(w=w, tau=tau, r=r, v_leak=v_leak, th=th, v_reset=v_reset, fc=fc, skip=skip,
                              scale=scale)


def test_generic_dialect_follows_forward_euler(tmp_path):
    """The generic graph (``generic_graph``), imported with --dialect generic --dt, against NIR's equations
    stepped by forward Euler in numpy float64."""
    rng = np.random.default_rng(4)
    nodes, edges, p = generic_graph(rng)
    w, tau, r, v_leak, th, v_reset, fc, skip, scale = (p[k] for k in ("w", "tau", "r", "v_leak", "th", "v_reset",
                                                                       "fc", "skip", "scale"))
    nir.write(tmp_path / "g.nir", nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    dt = 1e-3
    code, out = cli("import-nir", tmp_path / "g.nir", "--dialect", "generic", "--dt", dt, "-o", tmp_path / "g.lmhtc",
                    "--no-progress")
    assert code == 0, out
    graph = load_artifact(tmp_path / "g.lmhtc")[0]["compiled"]
    x = (rng.integers(0, 17, size=(STEPS, 5, 1, 4, 4)) / 4).astype(np.float64)
    got = run_float(graph, x, dtype=torch.float64).outputs

    conv = torch.nn.functional.conv2d(torch.as_tensor(x.reshape(-1, 1, 4, 4)), torch.as_tensor(w), padding=1)
    cur = conv.numpy().reshape(STEPS, 5, 2, 4, 4)
    v, v2, ref = np.zeros((5, 2, 4, 4)), np.zeros((5, 3)), []
    for t in range(STEPS):
        v = v + dt / tau * (v_leak - v + r * cur[t])          # τ dv/dt = (v_leak − v) + R·I
        s = (v > th).astype(np.float64)
        v = np.where(s > 0, v_reset, v)
        pooled = s.reshape(5, 2, 2, 2, 2, 2).sum(axis=(3, 5)) * scale
        i2 = pooled.reshape(5, 8) @ (fc + skip).T
        v2 = v2 + dt * 500 * i2                                # dv/dt = R·I
        s2 = (v2 > 0.5).astype(np.float64)
        v2 = np.where(s2 > 0, 0.0, v2)
        ref.append(s2)
    ref = np.stack(ref)
    assert 0 < ref.sum() < ref.size            # dt/τ = 1/4 and dt·R = 1/2: every value is exact, so any
    assert np.array_equal(got, ref)            # order of the float64 operations gives these spikes
    onnx_agrees(tmp_path, tmp_path / "g.lmhtc", x, exact=True)
    # export: the same nodes and edges (the two edges into "if" stay two edges, no extra sum node)
    code, out = cli("export", tmp_path / "g.lmhtc", "--target", "nir", "-o", tmp_path / "back.nir")
    assert code == 0, out
    back = nir.read(tmp_path / "back.nir")
    assert set(back.nodes) == set(nodes) and set(back.edges) == set(edges)
    assert all(type(back.nodes[k]) is type(nodes[k]) for k in nodes)


def test_every_target_exports_and_runs_the_lif_kind(tmp_path):
    """Float ONNX lowers lif (per-step sequence inputs too: verify float,onnx agrees), and the integer targets
    lower it (tests/test_nir_int.py) and export and run it."""
    net, shape = mlp("zero")
    _, art = import_net(tmp_path, net, shape, "zero")
    x, seq = tmp_path / "x.npz", tmp_path / "seq.npz"
    np.savez(x, x=inputs(shape)[0])
    np.savez(seq, x=inputs(shape, seed=2))
    code, out = cli("verify", art, "--inputs", seq, "--targets", "float,onnx", "--no-progress")
    assert code == 0 and "100.00 %" in out, out
    for args, made in [(("export", art, "--target", "onnx", "-o", tmp_path / "m.onnx"), tmp_path / "m.onnx"),
                       (("export", art, "--target", "onnx-int", "-o", tmp_path / "i.onnx"), tmp_path / "i.onnx"),
                       (("export", art, "--target", "lava", "-o", tmp_path / "lava"), tmp_path / "lava" / "run.py"),
                       (("simulate", art, "--inputs", x, "--mode", "int", "-o", tmp_path / "o.npz", "--no-progress"),
                        tmp_path / "o.npz")]:
        code, out = cli(*args)
        assert code == 0 and made.exists(), out


def test_simulate_takes_a_per_step_sequence(tmp_path):
    net, shape = mlp("subtract", seed=7)
    _, art = import_net(tmp_path, net, shape, "subtract")
    x = inputs(shape, seed=2)
    np.savez(tmp_path / "seq.npz", x=x, y=np.zeros(x.shape[1], np.int64))
    code, out = cli("simulate", art, "--inputs", tmp_path / "seq.npz", "--limit", 5, "-o", tmp_path / "o.npz",
                    "--no-progress")
    assert code == 0, out
    with np.load(tmp_path / "o.npz") as f:
        outputs, counts = f["outputs"], f["spike_counts"]
    ref = run_snntorch(net, x[:, :5])
    assert outputs.shape == (STEPS, 5, 3) and np.array_equal(outputs, ref[3])   # the Output node, per step
    assert counts.shape == (5, 2) and np.array_equal(counts[:, 1], ref[3].sum(axis=(0, 2)))
    np.savez(tmp_path / "short.npz", x=x[:5])
    assert_one_line_error(*cli("simulate", art, "--inputs", tmp_path / "short.npz", "-o", tmp_path / "p.npz"),
                          "5 steps", "runs 16")


def test_sinabs_dialect_multispike_and_floor(tmp_path):
    """sinabs: LIF with α = exp(−1/τ) (τ in steps), IF floored at −θ, both MultiSpike with subtract reset."""
    n = 4
    tau = np.array([2.0, 4.0, 8.0, 16.0])
    nodes = {"input": nir.Input({"input": np.array([n])}), "w": _affine(n),
             "lif": nir.LIF(tau.astype(np.float32), np.ones(n, np.float32), np.zeros(n, np.float32),
                            np.full(n, 0.75, np.float32), np.zeros(n, np.float32)),
             "w2": nir.Affine(-np.eye(n, dtype=np.float32), np.full(n, 1.5, np.float32)),
             "if": nir.IF(np.ones(n, np.float32), np.ones(n, np.float32), np.zeros(n, np.float32)),
             "output": nir.Output({"output": np.array([n])})}
    edges = [("input", "w"), ("w", "lif"), ("lif", "w2"), ("w2", "if"), ("if", "output")]
    nir.write(tmp_path / "s.nir", _graph(nodes, edges))
    code, out = cli("import-nir", tmp_path / "s.nir", "--dialect", "sinabs", "-o", tmp_path / "s.lmhtc", "--no-progress")
    assert code == 0, out
    graph = load_artifact(tmp_path / "s.lmhtc")[0]["compiled"]
    x = np.random.default_rng(3).uniform(0, 2.5, size=(STEPS, 3, n))
    run = run_float(graph, x, dtype=torch.float64, capture={"lif"})
    alpha = np.exp(-1 / tau.astype(np.float32).astype(np.float64))
    v, v2, s1, s2 = np.zeros((3, n)), np.zeros((3, n)), [], []
    for t in range(STEPS):
        v = alpha * v + x[t]
        s = np.where(v > 0, np.trunc(v / 0.75), 0)
        v = v - s * 0.75
        v2 = v2 + (1.5 - s)
        z = np.where(v2 > 0, np.trunc(v2), 0)
        v2 = np.maximum(v2 - z, -1.0)
        s1.append(s), s2.append(z)
    s1, s2 = np.stack(s1), np.stack(s2)
    floored = copy.deepcopy(graph)
    floored.node("if").v_min = None
    assert s1.max() >= 2 and (s2 > 0).any()            # several spikes in one step; the floor matters:
    assert not np.array_equal(run_float(floored, x, dtype=torch.float64).outputs, s2)
    assert np.array_equal(run.captured["lif"], s1)
    assert np.array_equal(run.outputs, s2)
    onnx_agrees(tmp_path, tmp_path / "s.lmhtc", x, exact=False)


def test_norse_dialect_matches_norse(tmp_path):
    """Norse (if installed: 1.1.0 builds from its sdist) runs the same LIF graph to the same spikes."""
    norse = pytest.importorskip("norse.torch")
    n = 6
    rng = np.random.default_rng(8)
    nodes = {"input": nir.Input({"input": np.array([n])}),
             "w": nir.Affine(rng.normal(size=(n, n)).astype(np.float32), rng.normal(size=n).astype(np.float32)),
             "lif": nir.LIF(np.linspace(2e-3, 2e-2, n).astype(np.float32), np.ones(n, np.float32),
                            np.full(n, 0.3, np.float32), np.ones(n, np.float32), np.zeros(n, np.float32)),
             "output": nir.Output({"output": np.array([n])})}
    graph = _graph(nodes, [("input", "w"), ("w", "lif"), ("lif", "output")])
    nir.write(tmp_path / "n.nir", graph)
    code, out = cli("import-nir", tmp_path / "n.nir", "--dialect", "norse", "--dt", 1e-3, "-o", tmp_path / "n.lmhtc",
                    "--no-progress")
    assert code == 0, out
    x = rng.uniform(0, 6, size=(STEPS, 8, n)).astype(np.float32)   # continuous: no membrane lands on θ exactly
    got = run_float(load_artifact(tmp_path / "n.lmhtc")[0]["compiled"], x).outputs
    module, state, ref = norse.from_nir(nir.read(tmp_path / "n.nir"), dt=1e-3), None, []
    with torch.no_grad():
        for t in range(STEPS):
            o, state = module(torch.as_tensor(x[t]), state)
            ref.append(o.numpy())
    ref = np.stack(ref)
    assert 0 < ref.sum() < ref.size and np.array_equal(got, ref)


def test_threshold_and_leaky_integrator_readout(tmp_path):
    """Threshold (stateless v > θ) and LI (non-spiking: its membrane is the output), generic dialect."""
    n, dt, tau, r, v_leak = 3, 0.125, 0.5, 2.0, 0.5     # dt/τ = 1/4: every value below is exact
    rng = np.random.default_rng(5)
    w1, w2 = rng.integers(-4, 5, size=(n, n)) / 4, rng.integers(-4, 5, size=(2, n)) / 4
    nodes = {"input": nir.Input({"input": np.array([n])}), "w1": nir.Linear(w1.astype(np.float32)),
             "th": nir.Threshold(np.full(n, 0.5, np.float32)), "w2": nir.Linear(w2.astype(np.float32)),
             "li": nir.LI(np.full(2, tau, np.float32), np.full(2, r, np.float32), np.full(2, v_leak, np.float32)),
             "output": nir.Output({"output": np.array([2])})}
    edges = [("input", "w1"), ("w1", "th"), ("th", "w2"), ("w2", "li"), ("li", "output")]
    nir.write(tmp_path / "t.nir", _graph(nodes, edges))
    code, out = cli("import-nir", tmp_path / "t.nir", "--dialect", "generic", "--dt", dt, "-o", tmp_path / "t.lmhtc",
                    "--no-progress")
    assert code == 0, out
    graph = load_artifact(tmp_path / "t.lmhtc")[0]["compiled"]
    x = rng.integers(-8, 9, size=(STEPS, 4, n)) / 8
    got = run_float(graph, x, dtype=torch.float64)
    v, ref = np.zeros((4, 2)), []
    for t in range(STEPS):
        s = (x[t] @ w1.T > 0.5).astype(np.float64)
        v = v + dt / tau * (v_leak - v + r * (s @ w2.T))
        ref.append(v)
    assert np.array_equal(got.outputs, np.stack(ref)) and np.ptp(got.outputs) > 0
    assert got.spike_counts.shape == (4, 1)            # the Threshold layer spikes; the LI does not
    onnx_agrees(tmp_path, tmp_path / "t.lmhtc", x, exact=True)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0625, 0.9990234375, width=32), st.floats(0.25, 4.0, width=32))
def test_snntorch_dialect_export_then_import_is_the_identity(beta, theta):
    """After one import, export → import returns the same float32 β and input scale (β → τ → β is idempotent)."""
    from lmhtc.compiler.frontends.nir_dialects import export_params, make_dialect, neuron_params

    d = make_dialect("snntorch", None, "subtract")
    dt = np.float32(1e-4)
    first = _lif(2)
    first.tau = np.full(2, dt / (np.float32(1) - np.float32(beta)), np.float32)   # what snnTorch's export writes
    first.r = first.tau / dt
    first.v_threshold = np.full(2, theta, np.float32)
    node = LIFNeuron("n", [], shape=(2,), **neuron_params(d, first, "n"))
    kind, arrays = export_params(d, node)
    again = getattr(nir, kind)(**{k: np.asarray(v, np.float32) for k, v in arrays.items()})
    back = neuron_params(d, again, "n")
    for key in ("beta", "bias", "threshold", "v_reset"):
        assert np.array_equal(back[key], getattr(node, key)), key
    # the importer computes the scale r·dt/τ in float32; for some τ no float32 r gives it back exactly
    # (found by hypothesis: β = 0.5178274512290955). Exact wherever such an r exists, else within one ulp.
    tau32, s32 = np.float32(again.tau[0]), np.float32(node.scale[0])
    r0 = s32 * tau32 / dt
    near = [r0] + [np.nextafter(r0, np.float32(sign * np.inf)) for sign in (-1, 1)]
    if any(np.float32(r * dt / tau32) == s32 for r in near):
        assert np.array_equal(back["scale"], node.scale)
    else:
        assert np.all(np.abs(np.float32(back["scale"][0]) - s32) <= np.spacing(s32)), back["scale"]


def test_conv1d_graph_imports_runs_and_round_trips(tmp_path):
    rng = np.random.default_rng(6)
    w = (rng.integers(-4, 5, size=(3, 2, 3)) / 4).astype(np.float32)
    b = (rng.integers(-2, 3, size=3) / 4).astype(np.float32)
    nodes = {"input": nir.Input({"input": np.array([2, 10])}),
             "conv": nir.Conv1d(10, w, 2, 1, 1, 1, b),
             "if": nir.IF(np.ones((3, 5), np.float32), np.ones((3, 5), np.float32), np.zeros((3, 5), np.float32)),
             "output": nir.Output({"output": np.array([3, 5])})}
    nir.write(tmp_path / "c.nir", _graph(nodes, [("input", "conv"), ("conv", "if"), ("if", "output")]))
    code, out = cli("import-nir", tmp_path / "c.nir", "--dialect", "snntorch", "-o", tmp_path / "c.lmhtc", "--no-progress")
    assert code == 0, out
    graph = load_artifact(tmp_path / "c.lmhtc")[0]["compiled"]
    x = (rng.integers(0, 9, size=(6, 2, 10)) / 8).astype(np.float64)       # static: the same input at every step
    got = run_float(graph, x, dtype=torch.float64).outputs
    cur = torch.nn.functional.conv1d(torch.as_tensor(x), torch.as_tensor(w, dtype=torch.float64),
                                     torch.as_tensor(b, dtype=torch.float64), stride=2, padding=1).numpy()
    v, ref = np.zeros_like(cur), []
    for _ in range(STEPS):                      # IF: v += x; spike v > 1; zero reset (snnTorch's rule)
        v = v + cur
        s = (v > 1).astype(np.float64)
        v = np.where(s > 0, 0.0, v)
        ref.append(s)
    assert np.array_equal(got, np.stack(ref)) and 0 < got.sum() < got.size
    code, out = cli("export", tmp_path / "c.lmhtc", "--target", "nir", "-o", tmp_path / "c2.nir")
    assert code == 0, out
    back = nir.read(tmp_path / "c2.nir")
    assert type(back.nodes["conv"]).__name__ == "Conv1d" and np.array_equal(back.nodes["conv"].weight, w)
    assert type(back.nodes["if"]).__name__ == "IF"
    onnx_agrees(tmp_path, tmp_path / "c.lmhtc", x, exact=True)
    # the cost passes count a conv1d through its 2-D view: MACs = Cout·(Cin/groups)·k·L_out at every step
    # (an imported Input is a sequence); the integer graph's SOPs are the IF's spikes (its readout gain)
    np.savez(tmp_path / "x.npz", x=x.astype(np.float32))
    for mode in ("float", "int"):
        code, out = cli("report", tmp_path / "c.lmhtc", "--inputs", tmp_path / "x.npz", "--mode", mode, "--json",
                        tmp_path / f"{mode}.json", "--no-progress")
        assert code == 0, out
    totals = {m: json.loads((tmp_path / f"{m}.json").read_text())["totals"] for m in ("float", "int")}
    assert totals["float"]["macs_per_image"] == totals["int"]["macs_per_image"] == 3 * 2 * 3 * 5 * STEPS
    spikes = run_int(load_artifact(tmp_path / "c.lmhtc")[0]["integer"], x).spike_counts.astype(np.int64)
    assert spikes.sum() > 0 and totals["int"]["sops_per_image"] == pytest.approx(spikes.sum(1).mean(), rel=1e-12)


def test_report_counts_sops_of_an_imported_network(tmp_path):
    """SOPs from the cost passes = an independent count: every spike of the conv-layer LIF reaches one pooled
    position and from there the Linear's 3 outputs (3 SOPs); the last LIF feeds no synapse."""
    import json

    net, shape = convnet("subtract")
    _, art = import_net(tmp_path, net, shape, "subtract")
    x = np.random.default_rng(1).uniform(0, 2, size=(8, *shape)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    code, out = cli("report", art, "--inputs", tmp_path / "x.npz", "--mode", "float", "--json", tmp_path / "r.json",
                    "--no-progress")
    assert code == 0, out
    doc = json.loads((tmp_path / "r.json").read_text())
    graph = load_artifact(art)[0]["compiled"]
    counts = run_float(graph, x).spike_counts.astype(np.int64)      # [N, 2 layers]
    assert counts[:, 0].sum() > 0
    assert doc["totals"]["sops_per_image"] == pytest.approx(3 * counts[:, 0].mean(), rel=1e-12)
    # the integer graph: the same rule, plus one SOP per last-layer spike (its readout gain, fan-out 1)
    code, out = cli("report", art, "--inputs", tmp_path / "x.npz", "--mode", "int", "--json", tmp_path / "i.json",
                    "--no-progress")
    assert code == 0, out
    int_counts = run_int(load_artifact(art)[0]["integer"], x).spike_counts.astype(np.int64)
    assert json.loads((tmp_path / "i.json").read_text())["totals"]["sops_per_image"] == \
        pytest.approx((3 * int_counts[:, 0] + int_counts[:, 1]).mean(), rel=1e-12)


def _eye_affine():
    return nir.Affine(np.eye(3, dtype=np.float32), np.zeros(3, np.float32))


def _lif3(tau=1e-3, th=1.0):
    return nir.LIF(np.full(3, tau, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32),
                   np.full(3, th, np.float32), np.zeros(3, np.float32))


@pytest.mark.parametrize("mid, fragments", [
    ({"a": nir.Affine(np.full((3, 3), np.nan, np.float32), np.zeros(3, np.float32))}, ("'a'", "non-finite")),
    ({"a": nir.Affine(np.ones((3, 4), np.float32), np.zeros(3, np.float32))}, ("not a readable NIR file",)),
    ({"a": _eye_affine(), "l": _lif3(tau=-1.0)}, ("'l'", "LIF", "tau")),
    ({"a": _eye_affine(), "l": _lif3(tau=np.nan)}, ("'l'", "LIF", "tau")),
    ({"a": _eye_affine(), "l": _lif3(th=0.0)}, ("'l'", "threshold")),
    ({"p": nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))}, ("'p'", "feature map")),
])
def test_malformed_nir_graphs_are_one_line_errors(tmp_path, mid, fragments):
    keys = list(mid)
    nodes = {"input": nir.Input({"input": np.array([3])}), **mid, "output": nir.Output({"output": np.array([3])})}
    edges = [("input", keys[0])] + list(zip(keys, keys[1:])) + [(keys[-1], "output")]
    nir.write(tmp_path / "bad.nir", _graph(nodes, edges))
    code, out = cli("import-nir", tmp_path / "bad.nir", "--dialect", "generic", "--dt", 1e-4, "-o", tmp_path / "b.lmhtc")
    assert_one_line_error(code, out, "bad.nir", *fragments)
    assert not (tmp_path / "b.lmhtc").exists()


def test_report_on_a_sequence_counts_multispike_events(tmp_path):
    """report --mode float on a per-step sequence: a sinabs LIF emits several spikes per step, each an event
    that reaches the next Linear's 3 outputs."""
    import json

    n = 4
    nodes = {"input": nir.Input({"input": np.array([n])}), "w": _affine(n),
             "lif": nir.LIF(np.full(n, 4.0, np.float32), np.ones(n, np.float32), np.zeros(n, np.float32),
                            np.full(n, 0.5, np.float32), np.zeros(n, np.float32)),
             "w2": nir.Affine(np.ones((3, n), np.float32), np.zeros(3, np.float32)),
             "output": nir.Output({"output": np.array([3])})}
    nir.write(tmp_path / "s.nir", _graph(nodes, [("input", "w"), ("w", "lif"), ("lif", "w2"), ("w2", "output")]))
    code, out = cli("import-nir", tmp_path / "s.nir", "--dialect", "sinabs", "-o", tmp_path / "s.lmhtc", "--no-progress")
    assert code == 0, out
    x = np.random.default_rng(2).uniform(0, 2, size=(STEPS, 10, n)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    code, out = cli("report", tmp_path / "s.lmhtc", "--inputs", tmp_path / "x.npz", "--mode", "float", "--limit", 6,
                    "--json", tmp_path / "r.json", "--no-progress")
    assert code == 0, out
    doc = json.loads((tmp_path / "r.json").read_text())
    run = run_float(load_artifact(tmp_path / "s.lmhtc")[0]["compiled"], x[:, :6], capture={"lif"})
    counts = run.spike_counts[:, 0].astype(np.int64)
    assert doc["images"] == 6 and run.captured["lif"].max() >= 2
    assert doc["totals"]["sops_per_image"] == pytest.approx(3 * counts.mean(), rel=1e-12)


def test_input_shape_flag(tmp_path):
    net, shape = mlp("zero")
    model = tmp_path / "m.nir"
    nir.write(model, export_to_nir(net, torch.zeros(shape)))
    code, out = cli("import-nir", model, "--dialect", "snntorch", "--input-shape", "4", "-o", tmp_path / "a.lmhtc",
                    "--no-progress")
    assert code == 0, out
    assert load_artifact(tmp_path / "a.lmhtc")[0]["compiled"].input.input_shape == (4,)
    assert_one_line_error(*cli("import-nir", model, "--dialect", "snntorch", "--input-shape", "5",
                               "-o", tmp_path / "b.lmhtc"), "'0'", "expects 4 input features")
    assert_one_line_error(*cli("import-nir", model, "--dialect", "snntorch", "--input-shape", "4,x",
                               "-o", tmp_path / "b.lmhtc"), "--input-shape")
    assert_one_line_error(*cli("import-nir", model, "--dialect", "snntorch", "--steps", 0,
                               "-o", tmp_path / "b.lmhtc"), "--steps")
    assert not (tmp_path / "b.lmhtc").exists()


def test_generic_cubalif_follows_forward_euler(tmp_path):
    """CubaLIF, generic dialect: the synaptic current is stepped first, then the membrane integrates it."""
    n, dt, tau_syn, tau_mem, w_in, r, th = 3, 0.125, 0.5, 0.25, 2.0, 1.0, 1.0   # dt/τ = 1/4, 1/2: exact values
    full = lambda v: np.full(n, v, np.float32)   # noqa: E731
    nodes = {"input": nir.Input({"input": np.array([n])}), "w": _affine(n),
             "cuba": nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(r), v_leak=full(0),
                                 v_threshold=full(th), v_reset=full(-0.25), w_in=full(w_in)),
             "output": nir.Output({"output": np.array([n])})}
    nir.write(tmp_path / "c.nir", _graph(nodes, [("input", "w"), ("w", "cuba"), ("cuba", "output")]))
    code, out = cli("import-nir", tmp_path / "c.nir", "--dialect", "generic", "--dt", dt, "-o", tmp_path / "c.lmhtc",
                    "--no-progress")
    assert code == 0, out
    x = np.random.default_rng(9).integers(0, 9, size=(STEPS, 5, n)) / 8
    got = run_float(load_artifact(tmp_path / "c.lmhtc")[0]["compiled"], x, dtype=torch.float64).outputs
    i, v, ref = np.zeros((5, n)), np.zeros((5, n)), []
    for t in range(STEPS):
        i = i + dt / tau_syn * (-i + w_in * x[t])          # τ_syn dI/dt = −I + w_in·S
        v = v + dt / tau_mem * (0 - v + r * i)             # τ_mem dv/dt = (v_leak − v) + R·I
        s = (v > th).astype(np.float64)
        v = np.where(s > 0, -0.25, v)
        ref.append(s)
    ref = np.stack(ref)
    assert 0 < ref.sum() < ref.size and np.array_equal(got, ref)
    onnx_agrees(tmp_path, tmp_path / "c.lmhtc", x, exact=True)
