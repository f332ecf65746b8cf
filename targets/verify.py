"""Cross-target verification: run every target on the same inputs and compare them pair by pair.

Targets: ``float`` (the float executor on the compiled graph), ``int`` (the
integer runtime), ``onnx`` (the float ONNX model in onnxruntime), ``onnx-int``
(the integer ONNX model in onnxruntime), ``lava`` (the Lava processes). The
integer targets implement one contract (docs/integer-semantics.md), so every
pair of them must be bit-exact: equal integer logits and equal spike trains
in every neuron layer. Pairs involving a float target are reported (argmax
agreement, max |Δlogits|) but are not required to be bit-exact.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np

from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.ir import Graph
from lmhtc.compiler.records import combine

TARGETS = ("float", "int", "onnx", "onnx-int", "lava")
INTEGER_TARGETS = frozenset({"int", "onnx-int", "lava"})


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
        if t not in TARGETS:
            raise VerifyError(f"--targets: unknown target {t!r} (choose from {', '.join(TARGETS)})")
    if len(names) < 2 or len(set(names)) != len(names):
        raise VerifyError(f"--targets needs at least two distinct targets, got {text!r}")
    return names


def _ort_session(model):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _neuron_names(graph: Graph) -> list[str]:
    return [n.name for n in graph.topo() if n.kind == "qneuron"]


def _runner(name: str, graphs: dict[str, Graph], progress: bool):
    """A function x -> TargetRun for target ``name``, with its one-time set-up (ONNX export, session) done."""
    integer = graphs.get("integer")
    if name == "float":
        from lmhtc.compiler.executor import run_float

        def run(x):
            r = run_float(graphs["compiled"], x, progress=progress)
            return TargetRun(name, r.logits.astype(np.float64))
    elif name == "onnx":
        from .onnx_float import export_float_onnx

        sess = _ort_session(export_float_onnx(graphs["compiled"]))

        def run(x):
            logits, = sess.run(["logits"], {"x": x})
            return TargetRun(name, logits.astype(np.float64))
    elif name == "int":
        from lmhtc.runtime.simulator import run_int

        neurons = _neuron_names(integer)

        def run(x):
            r = run_int(integer, x, capture=set(neurons), windows=False, progress=progress)
            return TargetRun(name, r.logits, r.logits_int, {n: r.captured[n] for n in neurons})
    elif name == "onnx-int":
        from .onnx_int import export_int_onnx

        sess = _ort_session(export_int_onnx(integer, spikes=True))
        neurons = _neuron_names(integer)

        def run(x):
            outs = sess.run(["logits", "logits_int", *[f"spikes/{n}" for n in neurons]], {"x": x})
            return TargetRun(name, outs[0], outs[1], {n: s.astype(np.int64) for n, s in zip(neurons, outs[2:])})
    elif name == "lava":
        from .lava import run_lava

        def run(x):
            r = run_lava(integer, x, progress=progress)
            return TargetRun(name, r.logits, r.logits_int, dict(r.spikes))
    else:
        raise VerifyError(f"unknown target {name!r}")
    return run


def run_target(name: str, graphs: dict[str, Graph], x: np.ndarray, meta: dict | None = None,
               progress: bool = False, memo: dict | None = None) -> TargetRun:
    """Run one target on ``x``; raises VerifyError naming the target when it cannot run on this artifact.

    ``memo`` (a dict) keeps each target's set-up between calls on batches of the same graphs.
    """
    check_runnable(name, graphs)
    memo = {} if memo is None else memo
    if name not in memo:
        memo[name] = _runner(name, graphs, progress)
    t0 = time.perf_counter()
    run = memo[name](x)
    run.seconds = time.perf_counter() - t0
    return run


def run_batch(graphs: dict[str, Graph], x: np.ndarray, targets: list[str], memo: dict,
              progress: bool = False) -> dict:
    """One batch through every target: the per-batch record {target: TargetRun fields}."""
    return {t: asdict(run_target(t, graphs, x, progress=progress, memo=memo)) for t in targets}


def join_runs(records: list[dict], targets: list[str]) -> list[TargetRun]:
    """The whole run of every target from its per-batch records, in input order (seconds add up)."""
    whole = combine(records, axes={"spikes": 1}, sums={"seconds"})
    return [TargetRun(**whole[t]) for t in targets]


def check_runnable(name: str, graphs: dict[str, Graph]) -> None:
    """A one-line VerifyError naming the target when it cannot run on this artifact with what is installed."""
    if name not in TARGETS:
        raise VerifyError(f"unknown target {name!r}")
    if name in INTEGER_TARGETS and graphs.get("integer") is None:
        raise VerifyError(f"target {name!r} cannot run: the artifact has no integer graph "
                          f"(it was compiled with --no-int or holds max-pool)")
    if name in ("float", "onnx") and graphs.get("compiled") is None:
        raise VerifyError(f"target {name!r} cannot run: the artifact has no compiled float graph")
    if name == "lava" and importlib.util.find_spec("lmhtc.targets.lava") is None:
        raise VerifyError("target 'lava' cannot run: the Lava target (lmhtc.targets.lava) is not installed")


def compare(a: TargetRun, b: TargetRun) -> PairResult:
    """Argmax agreement, max |Δlogits|, and per-layer spike-train equality where both have integer spikes."""
    required = a.name in INTEGER_TARGETS and b.name in INTEGER_TARGETS
    d = np.abs(a.logits - b.logits)
    agree = float((a.logits.argmax(-1) == b.logits.argmax(-1)).mean())
    mism: dict[str, int] = {}
    spikes_equal = None
    if a.spikes and b.spikes:
        for layer in a.spikes:
            other = b.spikes.get(layer)
            if other is None or other.shape != a.spikes[layer].shape:
                mism[layer] = int(a.spikes[layer].size)
            else:
                mism[layer] = int((a.spikes[layer] != other).sum())
        for layer in b.spikes:
            mism.setdefault(layer, int(b.spikes[layer].size))
        spikes_equal = not any(mism.values())
    bit_exact = bool(np.array_equal(a.logits, b.logits))
    if a.logits_int is not None and b.logits_int is not None:
        bit_exact = bit_exact and bool(np.array_equal(a.logits_int, b.logits_int))
    if spikes_equal is not None:
        bit_exact = bit_exact and spikes_equal
    return PairResult(a.name, b.name, required, bit_exact, spikes_equal, agree, float(d.max(initial=0.0)), mism)


def verify(graphs: dict[str, Graph], x: np.ndarray, targets: list[str], progress: bool = False,
           batch_size: int | None = None):
    """Run ``targets`` on ``x`` (in batches of ``batch_size``; default one batch) and compare every pair;
    returns (runs, pairs). Checks every target first."""
    for t in targets:
        check_runnable(t, graphs)
    step = len(x) if batch_size is None else batch_size
    memo: dict = {}
    records = [run_batch(graphs, x[i:i + step], targets, memo, progress) for i in range(0, len(x), max(step, 1))]
    runs = join_runs(records, targets)
    return runs, compare_runs(runs)


def compare_runs(runs: list[TargetRun]) -> list[PairResult]:
    """Every pair of runs compared, in target order."""
    return [compare(a, b) for a, b in combinations(runs, 2)]


def default_targets(graphs: dict[str, Graph]) -> list[str]:
    """Every target this artifact can run with what is installed."""
    names = ["float", "onnx"]
    if graphs.get("integer") is not None:
        names += ["int", "onnx-int"]
        if importlib.util.find_spec("lmhtc.targets.lava") is not None:
            names.append("lava")
    return names
