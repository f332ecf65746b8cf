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
from .sensitivity import float_counts


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


def sweep_configs(bits, widest: bool = True, methods: tuple[str, ...] = (DEFAULT_METHOD,)) -> list[tuple[str, QuantConfig]]:
    """(setting, configuration) per method and width, plus the widest setting."""
    configs = [(f"{b}-bit weights", QuantConfig(weight_bits=b, method=m)) for m in methods for b in bits]
    if widest:
        configs.append(("widest", QuantConfig.widest()))
    return configs


def lower_configs(graphs: dict[str, Graph], configs, calib: np.ndarray | None,
                  progress: bool = False) -> list[tuple[str, Graph, str]]:
    """(row key, integer graph, its digest) for every configuration: the lowering done once per process, every
    method from the same single calibration pass."""
    from .jobs import graph_digest

    compiled = graphs["compiled"]
    stats = None if calib is None else calibrate_for(compiled, calib, QuantConfig(method="mse-ta"), progress=progress)
    out = []
    for i, (name, cfg) in enumerate(configs):
        q = quantize(compiled, cfg, calib=calib, stats=stats)
        out.append((str(i), q, graph_digest(q)))
    return out


def _ends(graph: Graph, spikes: bool) -> list[str]:
    """The first and last neuron layers, whose spike agreement a sweep with ``spikes`` measures."""
    layers = graph.neuron_layers()
    return [layers[0].name, layers[-1].name] if spikes and layers else []


def _per_image(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], a.shape[1], -1).sum(axis=(0, 2)).astype(np.float64)   # [steps, N, ...] → [N]


def sweep_batch(graphs: dict[str, Graph], x: np.ndarray, lowered, batch_size: int, spikes: bool = False) -> dict:
    """One batch's per-image figures: float logits and spike totals, and per setting the integer run's
    (with ``spikes``, per image Σ min and Σ max of the first and last layers' spike counts against float)."""
    from lmhtc.runtime.simulator import run_int

    compiled = graphs["compiled"]
    ends = _ends(compiled, spikes)
    src = run_float(graphs["source"], x, batch_size)
    comp = src if compiled is graphs["source"] and not ends else run_float(compiled, x, batch_size, capture=set(ends))
    ref = {n: float_counts(compiled, comp, n) for n in ends}
    rows = {}
    for key, q, digest in lowered:
        r = run_int(q, x, batch_size, capture=set(ends))
        row = {"digest": digest, "logits": r.logits, "saturation": r.saturation.sum(1), "spikes": r.spike_counts.sum(1)}
        for side, n in zip(("first", "last"), ends):
            a, b = np.asarray(r.captured[n], np.float64), ref[n]
            row[f"min_{side}"], row[f"max_{side}"] = _per_image(np.minimum(a, b)), _per_image(np.maximum(a, b))
        rows[key] = row
    return {"source_logits": src.logits, "compiled_logits": comp.logits,
            "compiled_spikes": comp.spike_counts.sum(1), "rows": rows}


def finish_sweep(rec: dict, y: np.ndarray, configs) -> Sweep:
    """The table from the combined per-image record of all batches."""
    acc = lambda logits: float((logits.argmax(1) == y).mean())   # noqa: E731
    base = acc(rec["source_logits"])
    comp_arg = rec["compiled_logits"].argmax(1)
    rows = []
    for i, (name, cfg) in enumerate(configs):
        r = rec["rows"][str(i)]
        a = acc(r["logits"])
        agree = {side: (float(r[f"min_{side}"].sum() / r[f"max_{side}"].sum()) if r[f"max_{side}"].sum() > 0 else 1.0)
                 if f"max_{side}" in r else float("nan") for side in ("first", "last")}
        rows.append(SweepRow(name, cfg.weight_bits, a, 100 * (a - base), float((r["logits"].argmax(1) == comp_arg).mean()),
                             int(r["saturation"].sum()), float(r["spikes"].sum() / max(rec["compiled_spikes"].sum(), 1)),
                             cfg.lowering, agree["first"], agree["last"]))
    return Sweep(len(y), base, acc(rec["compiled_logits"]), rows)


def bits_sweep(graphs: dict[str, Graph], x: np.ndarray, y: np.ndarray, bits: list[int],
               calib: np.ndarray | None = None, widest: bool = True, batch_size: int = 64,
               progress: bool = False, methods: tuple[str, ...] = (DEFAULT_METHOD,), spikes: bool = False) -> Sweep:
    """The sweep in-process: the same per-batch records and reduction as a sharded run."""
    from tqdm.auto import tqdm

    from .records import combine

    configs = sweep_configs(bits, widest, methods)
    lowered = lower_configs(graphs, configs, calib, progress)
    records = [sweep_batch(graphs, x[i:i + batch_size], lowered, batch_size, spikes)
               for i in tqdm(range(0, len(x), batch_size), desc="sweep", disable=not progress, unit="batch")]
    return finish_sweep(combine(records), np.asarray(y), configs)
