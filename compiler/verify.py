"""Cross-target verification: run every target on the same inputs and compare them pair by pair.

The targets are those of the registry (``lowering.TARGETS``): ``float`` (the float executor on the
compiled graph), ``int`` (the integer runtime), ``onnx`` (the float ONNX model in onnxruntime),
``onnx-int`` (the integer ONNX model in onnxruntime), ``lava`` (the Lava processes); each
registration names its ``run`` function below. The integer targets implement one contract
(docs/integer-semantics.md, ``lmhtc.semantics``), so every pair of them must be bit-exact: equal
integer logits and equal spike trains in every neuron layer. Pairs involving a float target are
reported (argmax agreement, max |Δlogits|) but are not required to be bit-exact.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from . import lowering
from .errors import LmhtcError
from .finite import check_finite_outputs
from .ir import Graph, spike_train_layers
from .records import combine


class VerifyError(LmhtcError):
    pass


@dataclass
class TargetRun:
    name: str
    logits: np.ndarray                       # [N, classes] float64 (dequantized for integer targets)
    logits_int: np.ndarray | None = None     # [N, classes] int64, integer targets only
    spikes: dict[str, np.ndarray] = field(default_factory=dict)   # neuron layer → [steps, N, ...] counts
    seconds: float = 0.0


@dataclass
class PairResult:
    a: str
    b: str
    required: bool                  # both integer targets: must be bit-exact
    bit_exact: bool                 # identical logits (and integer logits and spikes where both have them)
    spikes_equal: bool | None       # None when one side has no integer spike trains
    argmax_agreement: float
    max_abs_dlogits: float
    layer_mismatches: dict[str, int] = field(default_factory=dict)   # neuron layer → differing entries

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "bit_exact": self.bit_exact, "spikes_equal": self.spikes_equal,
                "argmax_agreement": self.argmax_agreement, "max_abs_dlogits": self.max_abs_dlogits,
                "required_bit_exact": self.required, "layer_mismatches": self.layer_mismatches}

    @property
    def failed(self) -> bool:
        return self.required and not self.bit_exact


def parse_targets(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    for t in names:
        if t not in lowering.names(runnable=True):
            raise VerifyError(f"--targets: unknown target {t!r} (choose from {', '.join(lowering.names(runnable=True))})")
    if len(names) < 2 or len(set(names)) != len(names):
        raise VerifyError(f"--targets needs at least two distinct targets, got {text!r}")
    return names


def _ort_session(model):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _neuron_names(graph: Graph) -> list[str]:
    """The spiking layers of an integer graph, whose spike trains the integer targets compare."""
    return spike_train_layers(graph)


def per_step(graph: Graph, x: np.ndarray) -> np.ndarray:
    """``x`` as the per-step sequence [steps, N, ...] a sequence-encoded (NIR) graph's ONNX and Lava
    networks take: a static input [N, ...] is the same frame at every step."""
    from .executor import is_sequence

    if graph.input.encoding != "sequence" or is_sequence(graph, x):
        return x
    return np.ascontiguousarray(np.broadcast_to(x, (graph.steps, *np.shape(x))))


# Each target's runner factory (the registry's ``run`` entry): (graphs, progress) → (x → TargetRun), with the
# target's one-time set-up (ONNX export, inference session) done once.

def float_runner(graphs: dict[str, Graph], progress: bool = False):
    from .executor import run_float

    def run(x):
        logits = run_float(graphs["compiled"], x, progress=progress).logits
        check_finite_outputs(logits, graphs["compiled"], x, "target 'float'")
        return TargetRun("float", logits.astype(np.float64))
    return run


def onnx_runner(graphs: dict[str, Graph], progress: bool = False):
    from lmhtc.targets.onnx_float import export_float_onnx

    sess = _ort_session(export_float_onnx(graphs["compiled"]))

    def run(x):
        logits, = sess.run(["logits"], {"x": x})
        check_finite_outputs(logits, graphs["compiled"], x, "target 'onnx'")     # located by the float executor
        return TargetRun("onnx", logits.astype(np.float64))
    return run


def int_runner(graphs: dict[str, Graph], progress: bool = False):
    from lmhtc.runtime.simulator import run_int

    integer = graphs["integer"]
    neurons = _neuron_names(integer)

    def run(x):
        r = run_int(integer, x, capture=set(neurons), progress=progress)
        return TargetRun("int", r.logits, r.logits_int, {n: r.captured[n] for n in neurons})
    return run


def onnx_int_runner(graphs: dict[str, Graph], progress: bool = False):
    from lmhtc.targets.onnx_int import export_int_onnx

    integer = graphs["integer"]
    sess = _ort_session(export_int_onnx(integer, spikes=True))
    neurons = _neuron_names(integer)

    def run(x):
        outs = sess.run(["logits", "logits_int", *[f"spikes/{n}" for n in neurons]], {"x": per_step(integer, x)})
        return TargetRun("onnx-int", outs[0], outs[1], {n: s.astype(np.int64) for n, s in zip(neurons, outs[2:])})
    return run


def lava_runner(graphs: dict[str, Graph], progress: bool = False):
    from lmhtc.targets.lava import run_lava

    def run(x):
        r = run_lava(graphs["integer"], per_step(graphs["integer"], x), progress=progress)
        return TargetRun("lava", r.logits, r.logits_int, dict(r.spikes))
    return run


def run_target(name: str, graphs: dict[str, Graph], x: np.ndarray, meta: dict | None = None,
               progress: bool = False, memo: dict | None = None) -> TargetRun:
    """Run one registered target on ``x``; raises VerifyError naming the target when it cannot run here.

    ``memo`` (a dict) keeps each target's set-up between calls on batches of the same graphs.
    """
    check_runnable(name, graphs)
    memo = {} if memo is None else memo
    if name not in memo:
        memo[name] = lowering.target_function(name, "run")(graphs, progress)
    t0 = time.perf_counter()
    run = memo[name](x)
    run.seconds = time.perf_counter() - t0
    return run


def run_batch(graphs: dict[str, Graph], x: np.ndarray, targets: list[str], memo: dict,
              progress: bool = False) -> dict:
    """One batch through every target, compared pair by pair in the batch: the per-batch record
    ``{"runs": {target: its logits, integer logits, seconds}, "mismatches": {"a vs b": {layer: differing
    entries}}}`` (pairs where both targets have integer spike trains). The spike trains themselves are
    dropped with the batch, so memory stays one batch's whatever the number of inputs; the counts add up."""
    runs = [run_target(t, graphs, x, progress=progress, memo=memo) for t in targets]
    record = {"runs": {r.name: {"name": r.name, "logits": r.logits, "logits_int": r.logits_int,
                                "seconds": r.seconds} for r in runs},
              "mismatches": {}}
    for a, b in combinations(runs, 2):
        mism = spike_mismatches(a, b)
        if mism is not None:
            record["mismatches"][pair_key(a.name, b.name)] = mism
    return record


def pair_key(a: str, b: str) -> str:
    return f"{a} vs {b}"


def runs_and_pairs(record: dict, targets: list[str]) -> tuple[list[TargetRun], list[PairResult]]:
    """The runs (without spike trains) and every pair's comparison from a (combined) ``run_batch`` record."""
    runs = [TargetRun(**record["runs"][t]) for t in targets]
    mism = record["mismatches"]
    return runs, [compare(a, b, mism.get(pair_key(a.name, b.name))) for a, b in combinations(runs, 2)]


def check_runnable(name: str, graphs: dict[str, Graph]) -> None:
    """A one-line VerifyError naming the target when it cannot run on this artifact with what is installed:
    no graph of its phase, a node kind it cannot lower, or a missing package."""
    if name not in lowering.names(runnable=True):
        raise VerifyError(f"unknown target {name!r} (choose from {', '.join(lowering.names(runnable=True))})")
    target = lowering.get_target(name)
    if target.requires and importlib.util.find_spec(target.requires) is None:
        raise VerifyError(f"target {name!r} cannot run: {target.requires} is not installed")
    try:
        lowering.require_graph(graphs, name, "artifact")
    except lowering.LoweringError as exc:
        raise VerifyError(str(exc)) from None


def spike_mismatches(a: TargetRun, b: TargetRun) -> dict[str, int] | None:
    """Per neuron layer, the entries where the two runs' spike trains differ (a layer one side lacks, or of
    another shape, counts all its entries); None when one side has no integer spike trains."""
    if not (a.spikes and b.spikes):
        return None
    mism: dict[str, int] = {}
    for layer in a.spikes:
        other = b.spikes.get(layer)
        if other is None or other.shape != a.spikes[layer].shape:
            mism[layer] = int(a.spikes[layer].size)
        else:
            mism[layer] = int(np.count_nonzero(a.spikes[layer] != other))
    for layer in b.spikes:
        mism.setdefault(layer, int(b.spikes[layer].size))
    return mism


def compare(a: TargetRun, b: TargetRun, mismatches: dict[str, int] | None) -> PairResult:
    """Argmax agreement, max |Δlogits|, and per-layer spike-train equality (``mismatches``: the differing
    entries per layer, as ``spike_mismatches`` counts them batch by batch; None where one side has no integer
    spike trains)."""
    integer = set(lowering.names(phase="integer"))
    required = a.name in integer and b.name in integer
    d = np.abs(a.logits - b.logits)
    agree = float((a.logits.argmax(-1) == b.logits.argmax(-1)).mean())
    spikes_equal = None if mismatches is None else not any(mismatches.values())
    bit_exact = bool(np.array_equal(a.logits, b.logits))
    if a.logits_int is not None and b.logits_int is not None:
        bit_exact = bit_exact and bool(np.array_equal(a.logits_int, b.logits_int))
    if spikes_equal is not None:
        bit_exact = bit_exact and spikes_equal
    return PairResult(a.name, b.name, required, bit_exact, spikes_equal, agree, float(d.max(initial=0.0)),
                      dict(mismatches or {}))


def verify(graphs: dict[str, Graph], x: np.ndarray, targets: list[str], progress: bool = False,
           batch_size: int | None = None):
    """Run ``targets`` on ``x`` [N, ...] or a per-step sequence [steps, N, ...] (in batches of ``batch_size``
    samples; default one batch) and compare every pair; returns (runs, pairs) — the runs without their spike
    trains, which are compared batch by batch (``run_batch``). Checks every target first."""
    from .executor import input_batches, is_sequence

    for t in targets:
        check_runnable(t, graphs)
    graph = next(iter(graphs.values()))
    n = np.shape(x)[int(is_sequence(graph, x))]           # a per-step sequence: samples along axis 1
    memo: dict = {}
    records = [run_batch(graphs, xb.numpy(), targets, memo, progress)
               for xb in input_batches(graph, x, max(n if batch_size is None else batch_size, 1))]
    return runs_and_pairs(combine_records(records), targets)


def combine_records(records: list[dict]) -> dict:
    """``run_batch`` records of consecutive batches as one: logits in input order, seconds and differing
    entries added up (the ``Verify`` job's axes and sums, as the shard runner joins them)."""
    from .jobs import Verify

    return combine(records, Verify.axes, Verify.sums)


def default_targets(graphs: dict[str, Graph]) -> list[str]:
    """Every registered target this artifact can run with what is installed."""
    names = []
    for name in lowering.names(runnable=True):
        try:
            check_runnable(name, graphs)
        except VerifyError:
            continue
        names.append(name)
    return names
