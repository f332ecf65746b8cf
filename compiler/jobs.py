"""Per-batch jobs: what one shard of the inputs computes for simulate, report, verify, sweep and exactness.

A job is a small frozen dataclass (picklable, sent to Dask workers). ``run``
computes the record of one batch from the artifact's graphs; ``records.combine``
with the job's ``axes`` and ``sums`` joins the records of all batches, in the
in-process loop and on the Dask client alike. Invariant: ``run`` depends only
on the graphs, the batch and the batch size, never on where or when it runs, so
a shard computed anywhere (on identical machines) equals the in-process one.
``memo`` keeps set-up work (ONNX sessions, lowered graphs) between batches.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np


class Memo(dict):
    """Set-up shared by the batches of one artifact in one process."""

    def get_or(self, key, factory):
        if key not in self:
            self[key] = factory()
        return self[key]


def _job_key(job) -> dict:
    return {"job": type(job).__name__, **asdict(job)}


@dataclass(frozen=True)
class Simulate:
    """``lmhtc simulate``: the arrays of the output .npz."""

    mode: str            # float | int
    graph: str           # float graph name (int mode: integer)

    axes = {"outputs": 1, "outputs_int": 1}
    sums = ("kernels",)
    key = _job_key

    def run(self, graphs: dict, x: np.ndarray, batch_size: int, memo: Memo) -> dict:
        if self.mode == "int":
            from lmhtc.runtime.simulator import run_int

            r = run_int(graphs["integer"], x, batch_size)
            return dict(logits=r.logits.astype(np.float32), outputs=r.outputs.astype(np.float32),
                        logits_int=r.logits_int, outputs_int=r.outputs_int, spike_counts=r.spike_counts,
                        layer_names=list(r.layer_names), sops=r.sops, macs=r.macs, saturation=r.saturation,
                        sops_by_layer_step=r.sops_by_layer_step,
                        synaptic_layer_names=list(r.synaptic_layer_names),
                        kernels={n: {k: int(v) for k, v in st.items()} for n, st in r.kernels.items()})
        from .executor import run_float

        r = run_float(graphs[self.graph], x, batch_size)
        return dict(logits=r.logits.astype(np.float32), outputs=r.outputs.astype(np.float32),
                    spike_counts=r.spike_counts.astype(np.int64), layer_names=list(r.layer_names))


@dataclass(frozen=True)
class Report:
    """``lmhtc report``: the Activity fields (spike events, SOPs, MACs, logits) of a batch."""

    mode: str
    graph: str

    axes = {}
    sums = ()
    key = _job_key

    def run(self, graphs: dict, x: np.ndarray, batch_size: int, memo: Memo) -> dict:
        from .cost.dynamic import measure_activity
        from .cost.fanout import cost_graph

        g = graphs[self.graph]
        cg = memo.get_or(("cost_graph", self.graph), lambda: cost_graph(g))
        return asdict(measure_activity(g, x, self.mode, batch_size=batch_size, cg=cg))


@dataclass(frozen=True)
class Verify:
    """``lmhtc verify``: every target's run of a batch (logits, integer logits, seconds) and, per pair of
    targets with spike trains, the differing entries per layer (``verify.run_batch``)."""

    targets: tuple[str, ...]

    axes = {}
    sums = ("seconds", "mismatches")

    def key(self) -> dict:
        """The job's shard key; ``record`` names the record's form, so --resume never reuses the shards of the
        earlier form, which held the spike trains themselves."""
        return {**_job_key(self), "record": "pair-mismatches"}

    def run(self, graphs: dict, x: np.ndarray, batch_size: int, memo: Memo) -> dict:
        from lmhtc.compiler.verify import run_batch

        return run_batch(graphs, x, list(self.targets), memo.get_or("verify", dict))


@dataclass(frozen=True)
class Sweep:
    """``lmhtc sweep``: float logits and, per weight width, the integer runtime's logits, saturations, spikes."""

    bits: tuple[int, ...]
    widest: bool
    calib: object = None          # an InputSource of calibration images (already limited), or None
    methods: tuple[str, ...] = ("auto",)
    spikes: bool = False          # also the spike agreement of the first and last neuron layers

    axes = {}
    sums = ()
    key = _job_key

    def configs(self):
        from .sweep import sweep_configs

        return sweep_configs(self.bits, self.widest, self.methods)

    def run(self, graphs: dict, x: np.ndarray, batch_size: int, memo: Memo) -> dict:
        from .sweep import lower_configs, sweep_batch

        calib = None if self.calib is None else self.calib.read(0, len(self.calib))
        lowered = memo.get_or(("sweep", self), lambda: lower_configs(graphs, self.configs(), calib))
        return sweep_batch(graphs, x, lowered, batch_size, self.spikes)


@dataclass(frozen=True)
class Exactness:
    """``lmhtc exactness``: per-image exactness figures of the artifact's schedule, and of the others if asked."""

    others: tuple[str, ...] = ()

    axes = {}
    sums = ()
    key = _job_key

    def run(self, graphs: dict, x: np.ndarray, batch_size: int, memo: Memo) -> dict:
        from .exactness import exactness_batch
        from .passes.reparameterize import reparameterize

        rec = {"main": exactness_batch(graphs["source"], graphs["compiled"], x, batch_size), "others": {}}
        for name in self.others:
            g = memo.get_or(("reparameterized", name), lambda: reparameterize(graphs["source"], name))
            rec["others"][name] = exactness_batch(graphs["source"], g, x, batch_size)
        return rec


def graph_digest(graph) -> str:
    """SHA-256 over a graph's node kinds, attributes and arrays: equal digests, equal graphs."""
    h = hashlib.sha256()
    for node in graph.topo():
        h.update(f"{node.name}|{node.kind}|{node.inputs}|{sorted(node.attrs().items())}".encode())
        for name, arr in sorted(node.arrays().items()):
            h.update(name.encode() + str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()
