"""Lava target vs the integer runtime, hybrid ResNet-20 on digits 3×32×32, same network, same run.

The network is the fixture compiled with the hybrid recipe and lowered to 8-bit
integers (64 calibration images). The same test images go through
``lmhtc.runtime.simulator.run_int`` (batch 1 and batch N, on one torch thread and on the default
number: on a shared 2-core machine the second thread often only spins) and through ``run_lava``
(``Loihi2SimCfg(select_tag="fixed_pt")``, images streamed one every L·T steps;
fast = the vectorised model of Lava's Conv, stock = Lava's own scipy model),
and the integers are checked equal. Lava's time includes building the
processes, forking one OS process per Lava process and stopping them; the
marginal row subtracts two Lava runs of different batch size, leaving the
per-image cost of the streamed pipeline.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from rich.table import Table

from benchmarks.common import FIXTURES, time_call


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_lava(console, n_small: int = 4, n_large: int = 16) -> None:
    from lmhtc.compiler.checkpoint import resolve_spec
    from lmhtc.compiler.passes.quantize import QuantConfig, quantize
    from lmhtc.compiler.pipeline import compile_checkpoint
    from lmhtc.runtime.simulator import run_int
    from lmhtc.targets.lava import run_lava
    from lmhtc.targets.lava.lowering import lower_to_lava, resource_totals

    ckpt = FIXTURES / "hybrid_resnet20_digits_Q8_L2_T2.pth"
    if not ckpt.is_file():
        console.print(f"[red]skipped: {ckpt} not found (set LMHTC_FIXTURES)")
        return
    graphs = compile_checkpoint(ckpt, resolve_spec(ckpt, "resnet20", 2, 2, "hybrid", 10))
    calib = np.load(FIXTURES / "digits32_calib.npz")["x"][:64]
    graph = quantize(graphs["compiled"], QuantConfig(), calib=calib)
    x = np.load(FIXTURES / "digits32_test.npz")["x"][:n_large]
    desc = lower_to_lava(graph)
    totals = resource_totals(desc)

    threads = torch.get_num_threads()
    runtime = {}        # (torch threads, batch) → seconds per image
    for n_threads in sorted({1, threads}):
        torch.set_num_threads(n_threads)
        runtime[n_threads, 1] = time_call(lambda: [run_int(graph, x[i:i + 1], batch_size=1) for i in range(n_small)],
                                          min_seconds=3.0) / n_small
        runtime[n_threads, n_large] = time_call(lambda: run_int(graph, x, batch_size=n_large),
                                                min_seconds=3.0) / n_large
    torch.set_num_threads(threads)
    base = runtime[1, 1]
    names = {n.name for n in graph.topo() if n.kind == "qneuron"}
    ref = run_int(graph, x, capture=names, windows=False)
    small, t_small = _timed(lambda: run_lava(graph, x[:n_small]))
    large, t_large = _timed(lambda: run_lava(graph, x))
    stock, t_stock = _timed(lambda: run_lava(graph, x[:1], conv_model="stock"))
    exact = all(np.array_equal(r.outputs_int, ref.outputs_int[:, :len(r.outputs_int[0])]) and
                all(np.array_equal(r.spikes[k], ref.captured[k][:, :r.spikes[k].shape[1]]) for k in names)
                for r in (small, large, stock))
    marginal = (t_large - t_small) / (n_large - n_small)

    table = Table(title=f"Hybrid ResNet-20 digits 3x32x32, 8-bit integers, L·T = {graph.steps} steps: Lava "
                        f"(Loihi2SimCfg fixed_pt) vs the lmhtc integer runtime, same network, same run "
                        f"({desc.meta['latency_steps']}-step latency, {totals['processes']} Lava processes)")
    for col in ("engine", "images", "Lava time-steps", "wall time (s)", "per image (ms)",
                "vs runtime batch 1, 1 thread"):
        table.add_column(col, justify="right")
    for (n_threads, batch), secs in runtime.items():
        n = n_small if batch == 1 else n_large
        table.add_row(f"lmhtc int runtime, batch {batch}, {n_threads} thread(s)", str(n), "", f"{secs * n:.2f}",
                      f"{1000 * secs:.1f}", f"{secs / base:.2f}", end_section=(n_threads, batch) == max(runtime))
    for label, res, secs in (("Lava, fast Conv model", small, t_small), ("Lava, fast Conv model", large, t_large),
                             ("Lava, stock Conv model", stock, t_stock)):
        n = res.outputs_int.shape[1]
        table.add_row(label, str(n), str(res.time_steps), f"{secs:.1f}", f"{1000 * secs / n:.0f}",
                      f"{secs / n / base:.0f}")
    table.add_row("Lava, fast, marginal per image", f"{n_large}-{n_small}", f"{graph.steps}/image", "",
                  f"{1000 * marginal:.0f}", f"{marginal / base:.0f}")
    console.print(table)
    console.print(f"bit-exact (spikes of all {len(names)} layers and integer logits): {'yes' if exact else 'NO'}; "
                  f"resources: {totals['neurons']:,} neurons, {totals['synapses']:,} synapses, "
                  f"{totals['synaptic_memory_bits'] / 8e6:.1f} MB synaptic memory expanded "
                  f"({totals['shared_weight_memory_bits'] / 8e3:.0f} kB as shared conv weights)")
