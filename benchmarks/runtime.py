"""Integer runtime and float ONNX vs the PyTorch float LM-HT model, ResNet-18 on digits 3×32×32.

Measured in the same run on the same inputs: throughput (images/s, SOP/s) and
latency at batch 1 and 64 of the bit-accurate runtime (``lmhtc simulate
--mode int``'s engine), of onnxruntime on the exported float ONNX model
(``lmhtc export --target onnx``) and on the integer one (``--target onnx-int``) and of the authors' network in PyTorch (eval
mode, float32); then the compile time and peak memory of ``lmhtc compile``.
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


def bench_runtime(console) -> None:
    from lmhtc.compiler.artifact import load_artifact
    from lmhtc.compiler.checkpoint import load_snn, resolve_spec
    from lmhtc.runtime.simulator import run_int

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
    model = load_snn(ckpt, resolve_spec(ckpt, "resnet18", 2, 2, "direct", 10))
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
                        f"vs PyTorch float LM-HT (T = 2), {torch.get_num_threads()} threads, same inputs")
    for col in ("batch", "engine", "images/s", "latency (ms/batch)", "SOP/s", "speed vs PyTorch"):
        table.add_column(col, justify="right")
    for batch in (1, 64):
        xb = x[:batch]
        xt = torch.from_numpy(xb)
        with torch.no_grad():
            t_torch = time_call(lambda: model(xt), min_seconds=3.0)
        sops = run_int(qgraph, xb, batch_size=batch).sops.mean()
        t_int = time_call(lambda: run_int(qgraph, xb, batch_size=batch), min_seconds=3.0)
        t_ort = time_call(lambda: sess.run(["logits"], {"x": xb}), min_seconds=3.0)
        t_ort_int = time_call(lambda: sess_int.run(["logits_int"], {"x": xb}), min_seconds=3.0)
        table.add_row(str(batch), "PyTorch float", f"{batch / t_torch:.1f}", f"{1000 * t_torch:.1f}", "", "1.00")
        table.add_row(str(batch), "onnxruntime float (L·T steps)", f"{batch / t_ort:.1f}", f"{1000 * t_ort:.1f}",
                      "", f"{t_torch / t_ort:.2f}")
        table.add_row(str(batch), "onnxruntime integer (bit-exact)", f"{batch / t_ort_int:.1f}",
                      f"{1000 * t_ort_int:.1f}", f"{sops * batch / t_ort_int:.3g}", f"{t_torch / t_ort_int:.2f}")
        table.add_row(str(batch), "lmhtc int runtime", f"{batch / t_int:.1f}", f"{1000 * t_int:.1f}",
                      f"{sops * batch / t_int:.3g}", f"{t_torch / t_int:.2f}", end_section=True)
    console.print(table)
    mem = Table(title="lmhtc compile of ResNet-18 (fold BN, reparameterize, 8-bit integer lowering, 64 calib images)")
    mem.add_column("wall time (s)", justify="right")
    mem.add_column("peak memory (MiB)", justify="right")
    mem.add_row(f"{compile_s:.1f}", f"{compile_mib:.0f}")
    console.print(mem)
