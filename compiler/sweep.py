"""Integer-lowering accuracy against the float network, over weight widths (the bits-vs-accuracy sweep).

For each configuration the compiled float graph is lowered to integers and run
by the bit-accurate runtime on the same inputs; the table compares its
accuracy with the float LM-HT network as trained (``source`` graph) and its
argmax agreement with the float compiled graph.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .executor import run_float
from .ir import Graph
from .passes.quantize import QuantConfig, quantize


@dataclass
class SweepRow:
    setting: str
    weight_bits: int
    accuracy: float
    delta_pp: float            # vs the float LM-HT (source) accuracy, percentage points
    agreement: float           # argmax agreement with the float compiled graph
    saturations: int
    spike_ratio: float         # integer / float spike events

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Sweep:
    images: int
    float_source_accuracy: float
    float_compiled_accuracy: float
    rows: list[SweepRow]

    def to_json(self) -> dict:
        return {"images": self.images, "float_source_accuracy": self.float_source_accuracy,
                "float_compiled_accuracy": self.float_compiled_accuracy, "rows": [r.to_json() for r in self.rows]}


def bits_sweep(graphs: dict[str, Graph], x: np.ndarray, y: np.ndarray, bits: list[int],
               calib: np.ndarray | None = None, widest: bool = True, batch_size: int = 64,
               progress: bool = False) -> Sweep:
    from lmhtc.runtime.simulator import run_int

    src = run_float(graphs["source"], x, batch_size, progress=progress, desc="float LM-HT")
    comp = src if graphs["compiled"] is graphs["source"] else \
        run_float(graphs["compiled"], x, batch_size, progress=progress, desc="float compiled")
    acc = lambda logits: float((logits.argmax(1) == y).mean())   # noqa: E731
    base = acc(src.logits)
    configs = [(f"{b}-bit weights", QuantConfig(weight_bits=b)) for b in bits]
    if widest:
        configs.append(("widest", QuantConfig.widest()))
    rows = []
    for name, cfg in configs:
        q = quantize(graphs["compiled"], cfg, calib=calib)
        r = run_int(q, x, batch_size, progress=progress, desc=f"int ({name})")
        a = acc(r.logits)
        rows.append(SweepRow(name, cfg.weight_bits, a, 100 * (a - base),
                             float((r.logits.argmax(1) == comp.logits.argmax(1)).mean()),
                             int(r.saturation.sum()), float(r.spike_counts.sum() / max(comp.spike_counts.sum(), 1))))
    return Sweep(len(x), base, acc(comp.logits), rows)
