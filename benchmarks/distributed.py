"""Dask scale-out vs the in-process loop: the integer runtime on ResNet-18 digits 3×32×32, same shards.

Measured in one run on the same 128 test images in shards of 16 (8 shards), one torch thread per process:
images/s in-process, on a LocalCluster of 1 worker and of 2 workers (cluster already started and the
artifact loaded: the start-up is reported separately); each the best of two runs. The Dask overhead per
shard is measured where compute is negligible: an untrained digitsnet (1×8×8) on 64 shards of one image,
(1-worker time − in-process time) / 64 — both compute the same shards one after another, so the difference
is what Dask adds (submitting, reading the slice on the worker, sending the record back). Every run's
record is checked equal to the in-process one.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from benchmarks.common import FIXTURES

IMAGES, BATCH = 128, 16


def _same(a: dict, b: dict) -> bool:
    return all(np.array_equal(v, b[k]) if isinstance(v, np.ndarray) else v == b[k] for k, v in a.items())


def _tiny(tmp: Path) -> tuple[Path, Path]:
    """An untrained digitsnet artifact and 64 digits images: shards whose compute is negligible."""
    from lmhtc.compiler.artifact import save_artifact
    from lmhtc.compiler.data import load_digits_dataset
    from lmhtc.compiler.frontends import trace_to_ir
    from lmhtc.compiler.passes.quantize import quantize
    from lmhtc.compiler.pipeline import compile_graphs
    from lmhtc.compiler.zoo import build_snn

    torch.manual_seed(0)
    graphs = compile_graphs(trace_to_ir(build_snn("digitsnet", 2, 2, 10, "direct", (1, 8, 8)), (1, 8, 8)))
    graphs["integer"] = quantize(graphs["compiled"])
    save_artifact(tmp / "tiny.lmhtc", graphs)
    np.savez(tmp / "tiny.npz", x=load_digits_dataset("8").test.x[:64])
    return tmp / "tiny.lmhtc", tmp / "tiny.npz"


def _best(fn, reps: int = 2):
    """(result, best wall time of ``reps`` calls)."""
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def bench_distributed(console) -> None:
    from benchmarks.runtime import _compile
    from lmhtc.compiler.distributed import artifact_ref, dask_client, preflight, run_job
    from lmhtc.compiler.jobs import Simulate
    from lmhtc.compiler.sources import open_inputs

    torch.set_num_threads(1)
    job = Simulate("int", "integer")
    source = open_inputs(FIXTURES / "digits32_test.npz", IMAGES)
    shards = -(-IMAGES // BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(tmp) / "r18.lmhtc"
        _compile(FIXTURES / "resnet18_digits_L2_T2.pth", art)
        ref = artifact_ref(art)
        tiny_art, tiny_x = _tiny(Path(tmp))
        tiny_ref, tiny_src = artifact_ref(tiny_art), open_inputs(tiny_x)
        run_job(job, ref, source.limited(BATCH), BATCH)                   # warm-up: load the artifact
        (base, _), local_s = _best(lambda: run_job(job, ref, source, BATCH))
        (tiny_base, _), tiny_local = _best(lambda: run_job(job, tiny_ref, tiny_src, 1))
        rows = [("in-process", local_s, "-", True)]
        for n in (1, 2):
            t0 = time.perf_counter()
            with dask_client(workers=n) as client:
                preflight(client, ref, source)
                preflight(client, tiny_ref, tiny_src)
                startup = time.perf_counter() - t0
                (rec, _), seconds = _best(lambda: run_job(job, ref, source, BATCH, client=client))
                if n == 1:
                    (tiny_rec, _), tiny_dask = _best(lambda: run_job(job, tiny_ref, tiny_src, 1, client=client))
            rows.append((f"--workers {n}", seconds, f"{startup:.1f}", _same(base, rec)))
    table = Table(title=f"Dask scale-out: integer runtime, ResNet-18 digits 3x32x32, {IMAGES} images in "
                        f"{shards} shards of {BATCH}, 1 torch thread per process")
    for col in ("run", "wall time (s)", "images/s", "vs in-process", "cluster start-up (s)", "identical"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, seconds, startup, same in rows:
        table.add_row(name, f"{seconds:.2f}", f"{IMAGES / seconds:.1f}", f"{local_s / seconds:.2f}x", startup,
                      str(same))
    console.print(table)
    overhead = (tiny_dask - tiny_local) / len(tiny_src)
    console.print(f"Dask overhead per shard (untrained digitsnet, 64 shards of 1 image, 1 worker vs in-process: "
                  f"{tiny_dask:.2f} s vs {tiny_local:.2f} s, identical: {_same(tiny_base, tiny_rec)}): "
                  f"{1e3 * overhead:.1f} ms", highlight=False)
