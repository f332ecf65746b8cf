"""Integer runtime and float ONNX vs the PyTorch float LM-HT model, ResNet-18 on digits 3×32×32.

Measured in the same run on the same inputs and thread count: throughput
(images/s, SOP/s, spike events/s) and latency at batch 1 and 64 of the
bit-accurate runtime (``lmhtc simulate --mode int``'s engine), of onnxruntime
on the exported float ONNX model (``lmhtc export --target onnx``) and on the
integer one (``--target onnx-int``), and of two PyTorch float LM-HT networks:
the zoo model (eval mode) and the minimal independent reference of
``benchmarks/torch_ref.py`` (checked to compute the same function); speeds are
relative to the faster of the two. Then a per-stage time profile of the
reference and the runtime, and the compile time and peak memory of
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


def _runtime_stage_times(graph, layer_times: dict[str, float]) -> dict[tuple[str, str], float]:
    """Runtime node times grouped as the PyTorch reference's: (stage, synapse | neuron | other)."""
    from benchmarks.torch_ref import stage_of

    out: dict[tuple[str, str], float] = {}
    for node in graph.topo():
        part = {"qconv2d": "synapse", "qlinear": "synapse", "qgain": "synapse", "qtemporal_mix": "neuron",
                "qneuron": "neuron"}.get(node.kind, "other")
        key = (stage_of(node.name) if part != "other" else "all", part)
        out[key] = out.get(key, 0.0) + layer_times.get(node.name, 0.0)
    return out


def bench_runtime(console) -> None:
    from lmhtc.compiler.artifact import load_artifact
    from lmhtc.compiler.checkpoint import load_snn, read_checkpoint, resolve_spec
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
    sess = ort.InferenceSession(export_float_onnx(graphs["compiled"]).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    sess_int = ort.InferenceSession(export_int_onnx(qgraph).SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
    table = Table(title=f"ResNet-18 digits 3x32x32: bit-accurate integer runtime (L·T = {qgraph.steps} steps) "
                        f"vs PyTorch float LM-HT (T = 2), {torch.get_num_threads()} threads, same inputs; "
                        f"speed relative to the faster PyTorch reference")
    for col in ("batch", "engine", "images/s", "latency (ms/batch)", "SOP/s", "events/s", "speed vs PyTorch"):
        table.add_column(col, justify="right")
    profiles = {}
    for batch in (1, 64):
        xb = x[:batch]
        xt = torch.from_numpy(xb)
        with torch.no_grad():
            t_zoo = time_call(lambda: model(xt), min_seconds=3.0)
            t_ref = time_call(lambda: ref(xt), min_seconds=3.0)
        first = run_int(qgraph, xb, batch_size=batch)
        sops, events = first.sops.mean(), first.spike_counts.sum(1).mean()
        t_int = time_call(lambda: run_int(qgraph, xb, batch_size=batch), min_seconds=3.0)
        t_ort = time_call(lambda: sess.run(["logits"], {"x": xb}), min_seconds=3.0)
        t_ort_int = time_call(lambda: sess_int.run(["logits_int"], {"x": xb}), min_seconds=3.0)
        t_torch = min(t_zoo, t_ref)
        rows = [("PyTorch float, zoo model (eval)", t_zoo, False), ("PyTorch float, minimal reference", t_ref, False),
                ("onnxruntime float (L·T steps)", t_ort, False), ("onnxruntime integer (bit-exact)", t_ort_int, True),
                ("lmhtc int runtime (bit-exact)", t_int, True)]
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
                           {k: v / reps for k, v in _runtime_stage_times(qgraph, layer_times).items()})
        ref.times = None
    console.print(table)
    for batch, (ref_t, rt_t) in profiles.items():
        prof = Table(title=f"Per-stage time (ms per batch of {batch}): PyTorch minimal reference vs lmhtc int runtime "
                           f"(synapse: conv/linear/gain(+BN); neuron: T-GIM + neuron loop)")
        for col in ("stage", "PyTorch synapse", "PyTorch neuron", "runtime synapse", "runtime neuron"):
            prof.add_column(col, justify="right")
        for stage in ("stem", "layer1", "layer2", "layer3", "layer4", "fc"):
            prof.add_row(stage, *(f"{1000 * d.get((stage, part), 0.0):.1f}" for d, part in
                                  ((ref_t, "synapse"), (ref_t, "neuron"), (rt_t, "synapse"), (rt_t, "neuron"))))
        prof.add_row("other (add, pool, flatten, input)", "", "", f"{1000 * rt_t.get(('all', 'other'), 0.0):.1f}", "")
        prof.add_row("total, all parts (in each engine's first column)", f"{1000 * sum(ref_t.values()):.1f}", "",
                     f"{1000 * sum(rt_t.values()):.1f}", "",
                     end_section=True)
        console.print(prof)
    mem = Table(title="lmhtc compile of ResNet-18 (fold BN, reparameterize, 8-bit integer lowering, 64 calib images)")
    mem.add_column("wall time (s)", justify="right")
    mem.add_column("peak memory (MiB)", justify="right")
    mem.add_row(f"{compile_s:.1f}", f"{compile_mib:.0f}")
    console.print(mem)
