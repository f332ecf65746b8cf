"""`lmhtc compile` of the ResNet-18 fixture: wall time and peak memory of the whole process, next to the cost
of importing torch alone, and where the time and memory go (targets: < 5 s, < 1 GB).

Each figure comes from a fresh process (peak resident set size from ``getrusage``, as ``/usr/bin/time -v``
reports it): the import-only process first, then the compile (the children's peak is a running maximum).
The stage table runs the same pipeline in one more fresh process and reports after each stage its
cumulative wall time and its current and peak RSS.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.table import Table

from benchmarks.common import FIXTURES

TARGET_S, TARGET_MIB = 5.0, 1000.0
CKPT = FIXTURES / "resnet18_digits_L2_T2.pth"

# the stage profile: the compile command's pipeline, stage by stage, in a fresh interpreter
_STAGES = r"""
import json, resource, sys, time
t0 = time.perf_counter()
rows = []
def mark(stage):
    with open("/proc/self/statm") as f:
        cur = int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20
    rows.append([stage, time.perf_counter() - t0, cur, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024])
import torch
mark("import torch")
import numpy as np
from lmhtc.compiler.artifact import save_artifact
from lmhtc.compiler.checkpoint import resolve_spec
from lmhtc.compiler.passes.quantize import QuantConfig
from lmhtc.compiler.pipeline import compile_checkpoint, lower_integer
mark("import lmhtc")
ckpt, calib, out = sys.argv[1:4]
spec = resolve_spec(ckpt, "resnet18", 2, 2, "direct", 10)
graphs = compile_checkpoint(ckpt, spec)
mark("checkpoint -> IR, fold BN, reparameterize")
with np.load(calib) as f:
    x = f["x"][:64]
graphs["integer"], _ = lower_integer(graphs["compiled"], QuantConfig(), x)
mark("calibrate (64 images) + integer lowering")
save_artifact(out, graphs, {})
mark("save artifact")
print(json.dumps(rows))
"""


def _fresh(cmd: list[str]) -> tuple[float, float, str]:
    """Wall time (s), the children's peak RSS so far (MiB) and stdout of ``cmd`` run to completion."""
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, done.stdout


def bench_compile(console) -> None:
    if not CKPT.is_file():
        console.print(f"[red]skipped: {CKPT} not found (set LMHTC_FIXTURES)")
        return
    calib = FIXTURES / "digits32_calib.npz"
    torch_s, torch_mib, _ = _fresh([sys.executable, "-c", "import torch"])
    with tempfile.TemporaryDirectory() as tmp:
        compile_s, compile_mib, _ = _fresh([
            sys.executable, "-m", "lmhtc.compiler.cli", "compile", str(CKPT), "-o", str(Path(tmp) / "r18.lmhtc"),
            "--arch", "resnet18", "-L", "2", "-T", "2", "--calib", str(calib), "--calib-limit", "64",
            "--no-progress"])
        _, _, out = _fresh([sys.executable, "-c", _STAGES, str(CKPT), str(calib), str(Path(tmp) / "s.lmhtc")])
    table = Table(title="lmhtc compile, ResNet-18 fixture (fold BN, reparameterize, 8-bit integer lowering "
                        "calibrated on 64 images), whole process")
    for col in ("process", "wall time (s)", "peak RSS (MiB)", "target"):
        table.add_column(col, justify="right")
    table.add_row("python -c 'import torch'", f"{torch_s:.1f}", f"{torch_mib:.0f}", "")
    table.add_row("lmhtc compile", f"{compile_s:.1f}", f"{max(compile_mib, torch_mib):.0f}",
                  f"< {TARGET_S:.0f} s, < {TARGET_MIB:.0f} MiB: "
                  f"{'met' if compile_s < TARGET_S and compile_mib < TARGET_MIB else 'not met'}")
    console.print(table)
    stages = Table(title="lmhtc compile by stage (one fresh process; cumulative time, RSS after the stage)")
    for col in ("stage", "time (s)", "stage time (s)", "RSS (MiB)", "peak RSS (MiB)"):
        stages.add_column(col, justify="right")
    last = 0.0
    for stage, t, cur, peak in json.loads(out.strip().splitlines()[-1]):
        stages.add_row(stage, f"{t:.1f}", f"{t - last:.1f}", f"{cur:.0f}", f"{peak:.0f}")
        last = t
    console.print(stages)
