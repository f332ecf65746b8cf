"""Integer-lowering accuracy against the float network, over weight widths (the bits-vs-accuracy sweep).

For each configuration the compiled float graph is lowered to integers and run
by the bit-accurate runtime on the same inputs; the table compares its
accuracy with the float LM-HT network as trained (``source`` graph) and its
argmax agreement with the float compiled graph (with ``spikes``, also the spike
agreement of the first and last neuron layers, compiler/sensitivity.py). Every
method's lowering uses the same single calibration pass.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .executor import run_float
from .ir import Graph
from .passes.quantize import DEFAULT_METHOD, QuantConfig, calibrate_for, quantize
from .sensitivity import float_counts, spike_agreement


@dataclass
class SweepRow:
    setting: str
    weight_bits: int
    accuracy: float
    delta_pp: float            # vs the float LM-HT (source) accuracy, percentage points
    agreement: float           # argmax agreement with the float compiled graph
    saturations: int
    spike_ratio: float         # integer / float spike events
    method: str = DEFAULT_METHOD
    spikes_first: float = float("nan")   # spike agreement, first neuron layer (with spikes=True)
    spikes_last: float = float("nan")    # spike agreement, last neuron layer

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
               progress: bool = False, methods: tuple[str, ...] = (DEFAULT_METHOD,), spikes: bool = False) -> Sweep:
    from lmhtc.runtime.simulator import run_int

    compiled = graphs["compiled"]
    ends = {compiled.neuron_layers()[0].name, compiled.neuron_layers()[-1].name} if spikes else set()
    src = run_float(graphs["source"], x, batch_size, progress=progress, desc="float LM-HT")
    comp = run_float(compiled, x, batch_size, progress=progress, desc="float compiled", capture=ends) \
        if compiled is not graphs["source"] or spikes else src
    acc = lambda logits: float((logits.argmax(1) == y).mean())   # noqa: E731
    base = acc(src.logits)
    configs = [(f"{b}-bit weights", QuantConfig(weight_bits=b, method=m)) for m in methods for b in bits]
    if widest:
        configs.append(("widest", QuantConfig.widest()))
    stats = None if calib is None else calibrate_for(compiled, calib, QuantConfig(method="mse-ta"),
                                                     progress=progress)
    rows = []
    for name, cfg in configs:
        q = quantize(compiled, cfg, calib=calib, stats=stats)
        r = run_int(q, x, batch_size, progress=progress, desc=f"int ({cfg.lowering}, {name})", capture=ends)
        a = acc(r.logits)
        first, last = (spike_agreement(r.captured[n], float_counts(compiled, comp, n))
                       for n in (compiled.neuron_layers()[0].name, compiled.neuron_layers()[-1].name)) \
            if spikes else (float("nan"), float("nan"))
        rows.append(SweepRow(name, cfg.weight_bits, a, 100 * (a - base),
                             float((r.logits.argmax(1) == comp.logits.argmax(1)).mean()),
                             int(r.saturation.sum()), float(r.spike_counts.sum() / max(comp.spike_counts.sum(), 1)),
                             cfg.lowering, first, last))
    return Sweep(len(x), base, acc(comp.logits), rows)
