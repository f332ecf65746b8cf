"""Mixed precision: per-layer weight widths that meet an argmax-agreement budget on calibration data.

Invariant: every layer starts at ``low`` bits; layers are widened to ``high`` bits one at a time, most
sensitive first (compiler/sensitivity.py: one layer at ``low``, the rest widest, on the same data), until
the integer network's argmax agreement with the float network on the calibration data reaches
``budget`` or every layer is wide. The result says which layers were widened and what it reached.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .executor import run_float
from .ir import Graph
from .passes.quantize import QuantConfig, calibrate_for, quantize
from .sensitivity import Sensitivity, layer_sensitivity


@dataclass
class MixedPrecision:
    layer_bits: tuple[tuple[str, int], ...]
    agreement: float              # on the calibration data, with these widths
    met: bool
    sensitivity: Sensitivity


def choose_widths(graph: Graph, calib: np.ndarray, low: int, high: int, budget: float, method: str,
                  batch_size: int = 64, progress: bool = False) -> MixedPrecision:
    from lmhtc.runtime.simulator import run_int

    ref = run_float(graph, calib, batch_size).logits.argmax(1)
    stats = calibrate_for(graph, calib, QuantConfig(method="mse-ta"), progress=progress)   # every method's statistics

    def agreement(layer_bits) -> float:
        q = quantize(graph, QuantConfig(weight_bits=low, method=method, layer_bits=layer_bits), calib=calib,
                     stats=stats)
        return float((run_int(q, calib, batch_size).logits.argmax(1) == ref).mean())

    sens = layer_sensitivity(graph, calib, low, calib, method, batch_size=batch_size, progress=progress)
    order = [r.layer for r in sorted(sens.rows, key=lambda r: (r.agreement, r.spikes_last))]
    wide: list[str] = []
    reached = agreement(())
    while reached < budget and len(wide) < len(order):
        wide.append(order[len(wide)])
        reached = agreement(tuple((name, high) for name in wide))
    return MixedPrecision(tuple((name, high) for name in wide), reached, reached >= budget, sens)
