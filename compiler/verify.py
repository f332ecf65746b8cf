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
from .ir import Graph


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
    return [n.name for n in graph.topo() if n.kind == "qneuron"]


def run_float_target(graphs: dict[str, Graph], x: np.ndarray, progress: bool = False) -> TargetRun:
    from .executor import run_float

    return TargetRun("float", run_float(graphs["compiled"], x, progress=progress).logits.astype(np.float64))


def run_onnx_target(graphs: dict[str, Graph], x: np.ndarray, progress: bool = False) -> TargetRun:
    from lmhtc.targets.onnx_float import export_float_onnx

    logits, = _ort_session(export_float_onnx(graphs["compiled"])).run(["logits"], {"x": x})
    return TargetRun("onnx", logits.astype(np.float64))


def run_int_target(graphs: dict[str, Graph], x: np.ndarray, progress: bool = False) -> TargetRun:
    from lmhtc.runtime.simulator import run_int

    neurons = _neuron_names(graphs["integer"])
    r = run_int(graphs["integer"], x, capture=set(neurons), windows=False, progress=progress)
    return TargetRun("int", r.logits, r.logits_int, {n: r.captured[n] for n in neurons})


def run_onnx_int_target(graphs: dict[str, Graph], x: np.ndarray, progress: bool = False) -> TargetRun:
    from lmhtc.targets.onnx_int import export_int_onnx

    neurons = _neuron_names(graphs["integer"])
    sess = _ort_session(export_int_onnx(graphs["integer"], spikes=True))
    outs = sess.run(["logits", "logits_int", *[f"spikes/{n}" for n in neurons]], {"x": x})
    return TargetRun("onnx-int", outs[0], outs[1], {n: s.astype(np.int64) for n, s in zip(neurons, outs[2:])})


def run_lava_target(graphs: dict[str, Graph], x: np.ndarray, progress: bool = False) -> TargetRun:
    from lmhtc.targets.lava import run_lava

    r = run_lava(graphs["integer"], x, progress=progress)
    return TargetRun("lava", r.logits, r.logits_int, dict(r.spikes))


def run_target(name: str, graphs: dict[str, Graph], x: np.ndarray, meta: dict | None = None,
               progress: bool = False) -> TargetRun:
    """Run one registered target on ``x``; raises VerifyError naming the target when it cannot run here."""
    check_runnable(name, graphs)
    t0 = time.perf_counter()
    run = lowering.target_function(name, "run")(graphs, x, progress)
    run.seconds = time.perf_counter() - t0
    return run


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


def compare(a: TargetRun, b: TargetRun) -> PairResult:
    """Argmax agreement, max |Δlogits|, and per-layer spike-train equality where both have integer spikes."""
    integer = set(lowering.names(phase="integer"))
    required = a.name in integer and b.name in integer
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


def verify(graphs: dict[str, Graph], x: np.ndarray, targets: list[str], progress: bool = False):
    """Run ``targets`` on ``x`` and compare every pair; returns (runs, pairs). Checks every target first."""
    for t in targets:
        check_runnable(t, graphs)
    runs = [run_target(t, graphs, x, progress=progress) for t in targets]
    pairs = [compare(a, b) for a, b in combinations(runs, 2)]
    return runs, pairs


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
