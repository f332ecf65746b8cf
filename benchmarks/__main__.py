"""Run the benchmarks and print their tables.

Today: training time and accuracy of the default digits network (issue 2's
target: >= 95 % test accuracy in under 2 minutes on this 2-core machine) and
the PyTorch float inference throughput of the zoo models the later issues
compare against.
"""
from __future__ import annotations

import time

import torch
from rich.console import Console
from rich.table import Table

from compiler.data import load_digits_dataset
from compiler.training import TrainConfig, accuracy, predict, train
from compiler.zoo import build_snn


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


def bench_inference(console: Console) -> None:
    table = Table(title=f"PyTorch float LM-HT inference (eval mode, {torch.get_num_threads()} threads)")
    for col in ("model", "input", "batch", "images/s", "latency (ms/batch)"):
        table.add_column(col, justify="right")
    cases = [("digitsnet", (1, 8, 8), "8"), ("resnet18", (3, 32, 32), "32")]
    for arch, shape, form in cases:
        x = torch.from_numpy(load_digits_dataset(form).test.x)
        model = build_snn(arch, 2, 2, 10, "direct", shape).eval()
        for batch in (1, 64):
            xb = x[:batch]
            with torch.no_grad():
                model(xb)
                reps, start = 0, time.perf_counter()
                while time.perf_counter() - start < 2.0:
                    model(xb)
                    reps += 1
            dt = (time.perf_counter() - start) / reps
            table.add_row(arch, "x".join(map(str, shape)), str(batch), f"{batch / dt:.1f}", f"{1000 * dt:.2f}")
    console.print(table)


def main() -> None:
    console = Console()
    bench_training(console)
    bench_inference(console)


if __name__ == "__main__":
    main()
