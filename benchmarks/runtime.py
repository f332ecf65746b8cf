"""Integer runtime and float ONNX vs the PyTorch float LM-HT model, ResNet-18 on digits 3×32×32.

Measured in the same run on the same inputs and thread count: throughput
(images/s, SOP/s, spike events/s) and latency at batch 1 and 64 of the
bit-accurate runtime (``lmhtc simulate --mode int``'s engine), of onnxruntime
on the exported float ONNX model (``lmhtc export --target onnx``) and on the
integer one (``--target onnx-int``), and of two PyTorch float LM-HT networks:
the zoo model (eval mode) and the minimal independent reference of
``benchmarks/torch_ref.py`` (checked to compute the same function); speeds are
relative to the faster of the two. The runtime is timed with its fused
mix + neuron kernel (when it builds here) and with its torch kernels
(``fused=False``). Engines are timed interleaved, best of ``ROUNDS`` rounds
(each round the mean over at least ``ROUND_S`` seconds); the thread count is
torch's (``OMP_NUM_THREADS=1`` for one thread). Then a per-layer time table
(each neuron layer with the synaptic nodes feeding it) and a per-stage table of
the reference and the runtime, and the compile time and peak memory of
``lmhtc compile``.
"""
from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from benchmarks.common import FIXTURES, time_call


def _compile(ckpt: Path, out: Path) -> tuple[float, float]:
    """Wall time (s) and peak resident memory (MiB) of `lmhtc compile` in a fresh process."""
    cmd = [sys.executable, "-m", "lmhtc.compiler.cli", "compile", str(ckpt), "-o", str(out), "--arch", "resnet18",
           "-L", "2", "-T", "2", "--calib", str(FIXTURES / "digits32_calib.npz"), "--calib-limit", "64",
           "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


ROUNDS = 3
ROUND_S = 1.0
PARTS = {"qconv2d": "synapse", "qlinear": "synapse", "qgain": "synapse", "add": "synapse",
         "qtemporal_mix": "neuron", "qneuron": "neuron"}


def _unit(graph, name: str) -> str:
    """The neuron layer a runtime node feeds (its first consumer chain's first qneuron), or ``fc``."""
    node = graph.node(name)
    while node.kind != "qneuron":
        cons = graph.consumers(node.name)
        if not cons or node.kind == "qreadout":
            return "fc"
        node = cons[0]
    return node.name


def _runtime_layer_times(graph, layer_times: dict[str, float]) -> dict[tuple[str, str], float]:
    """Runtime node times grouped as the PyTorch reference's: (neuron unit, synapse | neuron), and
    ("other", "other") for the rest (input encoding, pooling, flatten, readout)."""
    out: dict[tuple[str, str], float] = {}
    for node in graph.topo():
        part = PARTS.get(node.kind, "other")
        key = (_unit(graph, node.name), part) if part != "other" else ("other", "other")
        out[key] = out.get(key, 0.0) + layer_times.get(node.name, 0.0)
    return out


def _best_of(fns: dict, rounds: int = ROUNDS) -> dict[str, float]:
    """Seconds per call of each engine: interleaved rounds (each the mean over ≥ ROUND_S s), best round."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            best[k] = min(best[k], time_call(fn, min_seconds=ROUND_S))
    return best


def _by_stage(times: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    from benchmarks.torch_ref import stage_of

    out: dict[tuple[str, str], float] = {}
    for (unit, part), t in times.items():
        key = (stage_of(unit) if unit != "other" else "all", part)
        out[key] = out.get(key, 0.0) + t
    return out


def bench_runtime(console) -> None:
    from lmhtc.compiler.artifact import load_artifact
    from lmhtc.compiler.checkpoint import load_snn, read_checkpoint, resolve_spec
    from lmhtc.runtime import fused
    from lmhtc.runtime.simulator import run_int

    from benchmarks.torch_ref import RefResNet18

    ckpt = FIXTURES / "resnet18_digits_L2_T2.pth"
    if not ckpt.is_file():
        console.print(f"[red]skipped: {ckpt} not found (set LMHTC_FIXTURES)")
        return
    x = np.load(FIXTURES / "digits32_test.npz")["x"]
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(tmp) / "r18.lmhtc"
        compile_s, compile_mib = _compile(ckpt, art)
        graphs, _ = load_artifact(art)
    qgraph = graphs["integer"]
    spec = resolve_spec(ckpt, "resnet18", 2, 2, "direct", 10)
    model = load_snn(ckpt, spec)
    ref = RefResNet18(read_checkpoint(ckpt)[0], spec.levels, spec.timesteps, spec.v_init)
    with torch.no_grad():
        xt = torch.from_numpy(x[:64])
        za, zb = model(xt), ref(xt)
    if not torch.equal(za.mean(0).argmax(-1), zb.mean(0).argmax(-1)) or \
            not bool(((za - zb).abs() <= 1e-3 * (1 + zb.abs())).all()):
        raise SystemExit("benchmarks/torch_ref.py does not compute the zoo model's function (float rule)")
    import onnxruntime as ort

    from lmhtc.targets.onnx_float import export_float_onnx
    from lmhtc.targets.onnx_int import export_int_onnx

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    # the engines share one process on a 2-core machine: an idle session's spinning pool threads would take
    # the cores of the engine being timed (measured: integer ONNX 1.5–1.7 s with spinning, 1.0–1.15 s without,
    # same run), so neither onnxruntime session spins between operators
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(export_float_onnx(graphs["compiled"]).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    from lmhtc.targets.onnx_int import default_products

    # both exact product kinds of the integer model (export --products): which is faster depends on the CPU
    sess_int = {kind: ort.InferenceSession(export_int_onnx(qgraph, products=kind).SerializeToString(), opts,
                                           providers=["CPUExecutionProvider"]) for kind in ("uint8", "float")}
    here = default_products()
    kernel_note = "fused kernel built" if fused.available() else f"fused kernel unavailable: {fused.build_error()}"
    table = Table(title=f"ResNet-18 digits 3x32x32: bit-accurate integer runtime (L·T = {qgraph.steps} steps) "
                        f"vs PyTorch float LM-HT (T = 2), {torch.get_num_threads()} threads, same inputs, "
                        f"best of {ROUNDS} interleaved rounds; speed relative to the faster PyTorch reference "
                        f"({kernel_note})")
    for col in ("batch", "engine", "images/s", "latency (ms/batch)", "SOP/s", "events/s", "speed vs PyTorch"):
        table.add_column(col, justify="right")
    profiles = {}
    for batch in (1, 64):
        xb = x[:batch]
        xt = torch.from_numpy(xb)
        first = run_int(qgraph, xb, batch_size=batch)
        plain = run_int(qgraph, xb, batch_size=batch, fused=False)
        for field in ("logits_int", "spike_counts", "saturation", "sops_by_layer_step"):
            if not np.array_equal(getattr(first, field), getattr(plain, field)):
                raise SystemExit(f"runtime: fused and torch kernels differ in {field}")
        for kind, session in sess_int.items():
            if not np.array_equal(session.run(["logits_int"], {"x": xb})[0], first.logits_int):
                raise SystemExit(f"integer ONNX ({kind} products) differs from the runtime in logits_int")
        sops, events = first.sops.mean(), first.spike_counts.sum(1).mean()
        with torch.no_grad():
            t = _best_of({"zoo": lambda: model(xt), "ref": lambda: ref(xt),
                          "int": lambda: run_int(qgraph, xb, batch_size=batch),
                          "int_torch": lambda: run_int(qgraph, xb, batch_size=batch, fused=False),
                          "ort": lambda: sess.run(["logits"], {"x": xb}),
                          **{f"ort_{k}": (lambda k=k: sess_int[k].run(["logits_int"], {"x": xb})) for k in sess_int}})
        t_torch = min(t["zoo"], t["ref"])
        rows = [("PyTorch float, zoo model (eval)", t["zoo"], False),
                ("PyTorch float, minimal reference", t["ref"], False),
                ("onnxruntime float (L·T steps)", t["ort"], False),
                *((f"onnxruntime integer, {k} products{' (export default here)' if k == here else ''}",
                   t[f"ort_{k}"], True) for k in sess_int),
                ("lmhtc int runtime, torch kernels (fused=False)", t["int_torch"], True),
                ("lmhtc int runtime (bit-exact)", t["int"], True)]
        for i, (name, t, spiking) in enumerate(rows):
            table.add_row(str(batch), name, f"{batch / t:.1f}", f"{1000 * t:.1f}",
                          f"{sops * batch / t:.3g}" if spiking else "", f"{events * batch / t:.3g}" if spiking else "",
                          f"{t_torch / t:.2f}", end_section=i == len(rows) - 1)
        layer_times: dict[str, float] = {}
        reps = 3
        for _ in range(reps):
            run_int(qgraph, xb, batch_size=batch, layer_times=layer_times)
        ref.times = {}
        with torch.no_grad():
            for _ in range(reps):
                ref(xt)
        profiles[batch] = ({k: v / reps for k, v in ref.times.items()},
                           {k: v / reps for k, v in _runtime_layer_times(qgraph, layer_times).items()})
        ref.times = None
    console.print(table)
    units = [n.name for n in qgraph.topo() if n.kind == "qneuron"] + ["fc"]
    for batch, (ref_t, rt_t) in profiles.items():
        _print_layer_table(console, batch, units, ref_t, rt_t)
    for batch, (ref_l, rt_l) in profiles.items():
        ref_t, rt_t = _by_stage(ref_l), _by_stage(rt_l)
        prof = Table(title=f"Per-stage time (ms per batch of {batch}): PyTorch minimal reference vs lmhtc int runtime "
                           f"(synapse: conv/linear/gain(+BN); neuron: T-GIM + neuron loop)")
        for col in ("stage", "PyTorch synapse", "PyTorch neuron", "runtime synapse", "runtime neuron"):
            prof.add_column(col, justify="right")
        for stage in ("stem", "layer1", "layer2", "layer3", "layer4", "fc"):
            prof.add_row(stage, *(f"{1000 * d.get((stage, part), 0.0):.1f}" for d, part in
                                  ((ref_t, "synapse"), (ref_t, "neuron"), (rt_t, "synapse"), (rt_t, "neuron"))))
        prof.add_row("other (pool, flatten, input, readout)", "", "", f"{1000 * rt_t.get(('all', 'other'), 0.0):.1f}", "")
        prof.add_row("total, all parts (in each engine's first column)", f"{1000 * sum(ref_t.values()):.1f}", "",
                     f"{1000 * sum(rt_t.values()):.1f}", "",
                     end_section=True)
        console.print(prof)
    mem = Table(title="lmhtc compile of ResNet-18 (fold BN, reparameterize, 8-bit integer lowering, 64 calib images)")
    mem.add_column("wall time (s)", justify="right")
    mem.add_column("peak memory (MiB)", justify="right")
    mem.add_row(f"{compile_s:.1f}", f"{compile_mib:.0f}")
    console.print(mem)


def _print_layer_table(console, batch: int, units: list[str], ref_t: dict, rt_t: dict) -> None:
    """Per neuron layer (with the synaptic nodes that feed it): PyTorch reference vs runtime, ms per batch."""
    prof = Table(title=f"Per-layer time (ms per batch of {batch}): PyTorch minimal reference vs lmhtc int runtime "
                       f"(synapse: conv(+BN)/gain/add feeding the layer; neuron: T-GIM + neuron steps)")
    for col in ("layer", "PyTorch synapse", "PyTorch neuron", "runtime synapse", "runtime neuron", "PyTorch / runtime"):
        prof.add_column(col, justify="right")
    for unit in units:
        ref_s, ref_n = ref_t.get((unit, "synapse"), 0.0), ref_t.get((unit, "neuron"), 0.0)
        rt_s, rt_n = rt_t.get((unit, "synapse"), 0.0), rt_t.get((unit, "neuron"), 0.0)
        ratio = (ref_s + ref_n) / (rt_s + rt_n) if rt_s + rt_n else float("nan")
        prof.add_row(unit, *(f"{1000 * v:.2f}" for v in (ref_s, ref_n, rt_s, rt_n)), f"{ratio:.2f}")
    prof.add_row("other (pool, flatten, input, readout)", "", "", f"{1000 * rt_t.get(('other', 'other'), 0.0):.2f}",
                 "", "")
    tot_ref, tot_rt = sum(ref_t.values()), sum(rt_t.values())
    prof.add_row("total", f"{1000 * tot_ref:.1f}", "", f"{1000 * tot_rt:.1f}", "", f"{tot_ref / tot_rt:.2f}",
                 end_section=True)
    console.print(prof)
