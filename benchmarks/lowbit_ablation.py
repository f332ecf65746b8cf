"""Where the 8-bit argmax agreement goes: ``python -m benchmarks.lowbit_ablation [FIXTURE] [N]``.

The widest integer setting follows the float network to float64 rounding (100 % agreement); each row puts
one component of the integer lowering back at its default width, the rest widest, and measures accuracy
and argmax agreement (the runtime's dequantized logits against the float32 compiled graph) on the first
N digits test images. The float rows perturb the float network itself, the noise floor any lowering
meets. Not part of the default ``make bench`` (minutes per row on ResNet-18).
"""
from __future__ import annotations

import dataclasses
import sys

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from lmhtc.compiler.checkpoint import resolve_spec
from lmhtc.compiler.executor import run_float
from lmhtc.compiler.passes.quantize import QuantConfig, quantize
from lmhtc.compiler.pipeline import compile_checkpoint
from lmhtc.runtime.simulator import run_int

from .common import FIXTURES

SPECS = {"hybrid_resnet20": ("hybrid_resnet20_digits_Q8_L2_T2.pth", "resnet20", "hybrid"),
         "resnet18": ("resnet18_digits_L2_T2.pth", "resnet18", "direct")}


def integer_variants() -> dict[str, QuantConfig]:
    """The widest setting, then each component alone at its default width, then the default."""
    wide, default = QuantConfig.widest(), QuantConfig()
    return {
        "widest": wide,
        "widest, 8-bit weights (bias)": dataclasses.replace(wide, weight_bits=default.weight_bits, method="bias"),
        "widest, 8-bit input encoding": dataclasses.replace(wide, input_bits=default.input_bits),
        "widest, 12-bit T-GIM fractions": dataclasses.replace(wide, mix_frac_bits=default.mix_frac_bits),
        "widest, 12-bit leak fractions": dataclasses.replace(wide, leak_frac_bits=default.leak_frac_bits),
        "default (8-bit, auto)": default,
    }


def main(argv: list[str]) -> None:
    name = argv[0] if argv else "hybrid_resnet20"
    n = int(argv[1]) if len(argv) > 1 else 360
    ckpt, arch, recipe = SPECS[name]
    path = FIXTURES / ckpt
    graph = compile_checkpoint(path, resolve_spec(path, arch, 2, 2, recipe, 10))["compiled"]
    with np.load(FIXTURES / "digits32_test.npz") as f:
        x, y = f["x"][:n], f["y"][:n]
    with np.load(FIXTURES / "digits32_calib.npz") as f:
        calib = f["x"][:64]
    ref = run_float(graph, x, 64).logits.argmax(1)
    table = Table(title=f"{name}: argmax agreement with the float32 compiled graph, {n} test images")
    for col in ("network", "accuracy", "argmax agreement"):
        table.add_column(col, justify="right")
    table.add_row("float32 (reference)", f"{100 * (ref == y).mean():.2f} %", "100.00 %")

    def row(label: str, pred: np.ndarray) -> None:
        table.add_row(label, f"{100 * (pred == y).mean():.2f} %", f"{100 * (pred == ref).mean():.2f} %")

    row("float64", run_float(graph, x, 64, dtype=torch.float64).logits.argmax(1))
    row("float32, batch 1", run_float(graph, x, 1).logits.argmax(1))
    row("float64, x + 1e-5", run_float(graph, x + 1e-5, 64, dtype=torch.float64).logits.argmax(1))
    for label, config in integer_variants().items():
        row(label, run_int(quantize(graph, config, calib=calib), x, 64).logits.argmax(1))
    Console().print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
