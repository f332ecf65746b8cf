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


def sweep_configs(bits, widest: bool = True) -> list[tuple[str, QuantConfig]]:
    configs = [(f"{b}-bit weights", QuantConfig(weight_bits=b)) for b in bits]
    if widest:
        configs.append(("widest", QuantConfig.widest()))
    return configs


def lower_configs(graphs: dict[str, Graph], configs, calib: np.ndarray | None) -> list[tuple[str, Graph, str]]:
    """(setting, integer graph, its digest) for every configuration: the lowering done once per process."""
    from .jobs import graph_digest

    out = []
    for name, cfg in configs:
        q = quantize(graphs["compiled"], cfg, calib=calib)
        out.append((name, q, graph_digest(q)))
    return out


def sweep_batch(graphs: dict[str, Graph], x: np.ndarray, lowered, batch_size: int) -> dict:
    """One batch's per-image figures: float logits and spike totals, and per setting the integer run's."""
    from lmhtc.runtime.simulator import run_int

    src = run_float(graphs["source"], x, batch_size)
    comp = src if graphs["compiled"] is graphs["source"] else run_float(graphs["compiled"], x, batch_size)
    rows = {}
    for name, q, digest in lowered:
        r = run_int(q, x, batch_size)
        rows[name] = {"digest": digest, "logits": r.logits, "saturation": r.saturation.sum(1),
                      "spikes": r.spike_counts.sum(1)}
    return {"source_logits": src.logits, "compiled_logits": comp.logits,
            "compiled_spikes": comp.spike_counts.sum(1), "rows": rows}


def finish_sweep(rec: dict, y: np.ndarray, configs) -> Sweep:
    """The table from the combined per-image record of all batches."""
    acc = lambda logits: float((logits.argmax(1) == y).mean())   # noqa: E731
    base = acc(rec["source_logits"])
    comp_arg = rec["compiled_logits"].argmax(1)
    rows = []
    for name, cfg in configs:
        r = rec["rows"][name]
        a = acc(r["logits"])
        rows.append(SweepRow(name, cfg.weight_bits, a, 100 * (a - base), float((r["logits"].argmax(1) == comp_arg).mean()),
                             int(r["saturation"].sum()), float(r["spikes"].sum() / max(rec["compiled_spikes"].sum(), 1))))
    return Sweep(len(y), base, acc(rec["compiled_logits"]), rows)


def bits_sweep(graphs: dict[str, Graph], x: np.ndarray, y: np.ndarray, bits: list[int],
               calib: np.ndarray | None = None, widest: bool = True, batch_size: int = 64,
               progress: bool = False) -> Sweep:
    from tqdm.auto import tqdm

    from .records import combine

    configs = sweep_configs(bits, widest)
    lowered = lower_configs(graphs, configs, calib)
    records = [sweep_batch(graphs, x[i:i + batch_size], lowered, batch_size)
               for i in tqdm(range(0, len(x), batch_size), desc="sweep", disable=not progress, unit="batch")]
    return finish_sweep(combine(records), np.asarray(y), configs)
