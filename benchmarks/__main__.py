"""Run the benchmarks and print their tables: `make bench` (or `python -m benchmarks [NAME ...]`).

* ``training`` — training time and accuracy of the default digits network
  (target: >= 95 % test accuracy in under 2 minutes on this 2-core machine);
* ``runtime`` — the bit-accurate integer runtime and the float/integer ONNX models in onnxruntime vs two
  PyTorch float LM-HT models (zoo, minimal reference) on ResNet-18 digits (batch 1 and 64), a per-stage
  profile, and compile time/peak memory;
* ``compile`` — `lmhtc compile` of ResNet-18 (64 calibration images): wall time and peak RSS of the whole
  process next to `import torch` alone, and a per-stage time/memory table (targets: < 5 s, < 1 GB);
* ``lava`` — the Lava processes vs the integer runtime on the hybrid ResNet-20 (per image, bit-exact check);
* ``distributed`` — in-process vs a 1- and 2-worker Dask LocalCluster on the same shards, and the overhead per shard.
* ``fuzz [N [MUTATOR ...]]`` — N hypothesis examples (default 200) per hostile-file mutator of ``benchmarks/fuzz.py``:
  cases tried, share handled, failures by class (not part of the default run).
"""
from __future__ import annotations

import time

import torch
from rich.console import Console
from rich.table import Table

from lmhtc.compiler.data import load_digits_dataset
from lmhtc.compiler.training import TrainConfig, train
from lmhtc.compiler.zoo import build_snn


def bench_training(console: Console) -> None:
    data = load_digits_dataset("8")
    torch.manual_seed(0)
    model = build_snn("digitsnet", 2, 2, 10, "direct", (1, 8, 8))
    start = time.perf_counter()
    result = train(model, data.train, data.test, TrainConfig(progress=False))
    seconds = time.perf_counter() - start
    table = Table(title="STBP training, digitsnet L=2 T=2, digits 1x8x8 (default `lmhtc train`)")
    for col in ("epochs", "wall time (s)", "target (s)", "time / target", "test accuracy", "target"):
        table.add_column(col, justify="right")
    table.add_row(str(TrainConfig().epochs), f"{seconds:.1f}", "120", f"{seconds / 120:.2f}",
                  f"{100 * result.test_accuracy:.2f} %", ">= 95 %")
    console.print(table)


def main() -> None:
    import sys

    from benchmarks.compile import bench_compile
    from benchmarks.distributed import bench_distributed
    from benchmarks.lava import bench_lava
    from benchmarks.runtime import bench_runtime

    benches = {"training": bench_training, "runtime": bench_runtime, "compile": bench_compile, "lava": bench_lava,
               "distributed": bench_distributed}
    args = sys.argv[1:]
    if args[:1] == ["fuzz"]:
        from benchmarks.fuzz import bench_fuzz

        bench_fuzz(Console(width=160), int(args[1]) if len(args) > 1 else 200, args[2:] or None)
        return
    names = args or list(benches)
    unknown = [n for n in names if n not in benches]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(benches)}")
    from benchmarks.common import machine_line

    console = Console(width=160)
    console.print(machine_line())
    for name in names:
        benches[name](console)


if __name__ == "__main__":
    main()
