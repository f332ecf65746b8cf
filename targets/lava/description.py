"""The exported Lava network description: ``network.json`` (structure, parameters, resources) plus
``arrays.npz`` (integer arrays; loaded with ``allow_pickle=False``). numpy only: a Lava user reads it
without lmhtc's compiler.

A description is a list of processes in topological order. Kinds:

* ``input``   — the analog input encoder (``qinput``); params ``scale``, ``bits``, ``ir_shape``.
* ``conv``    — Lava's stock ``Conv`` (a ``qconv2d``, an identity shortcut ``qgain`` as a depthwise 1×1
  conv, or a ``sumpool2d``/``globalsumpool`` as a depthwise all-ones conv); array ``weight``
  (Cout, kx, ky, Cin/groups), convolved as Lava does.
* ``dense``   — Lava's stock ``Dense`` (a ``qlinear``); array ``weight`` (out, in) of mantissas.
* ``layer``   — ``LMHTLayer`` (``qtemporal_mix`` + ``qneuron``); arrays ``threshold``, ``v_init``,
  ``bias``, ``leak``, optional ``omega``.
* ``readout`` — ``IntReadout`` (``qreadout``); arrays ``bias``, ``scale`` (float64).

Shapes are in Lava's layout: (X, Y, C) for a feature map (C, H, W), (N,) for a vector. Every input of a
process names its source; ``layer``/``readout`` inputs also carry the exponent E of their synaptic
path, and ``flatten`` marks a source whose output is flattened (C order of the Lava layout).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmhtc.npz_file import write_npz
from lmhtc.safe_json import read_json
from lmhtc.semantics import SEMANTICS_VERSION

FORMAT = "lmhtc-lava-network"
VERSION = 1
NETWORK_JSON = "network.json"
ARRAYS_NPZ = "arrays.npz"
MAX_STEPS = 4096                 # as the IR validator's bound
MAX_ARRAY_BYTES = 16 * 2 ** 30   # all of arrays.npz, decompressed

KINDS = {
    "input": ({"scale", "bits", "ir_shape"}, set()),
    "conv": ({"input_shape", "stride", "padding", "dilation", "groups", "num_message_bits", "weight_bits", "role"},
             {"weight"}),
    "dense": ({"num_message_bits", "weight_bits"}, {"weight"}),
    "layer": ({"levels", "frac_bits", "leak_frac_bits", "membrane_bits", "ir_shape"},
              {"threshold", "v_init", "bias", "leak"}),
    "lif": ({"options", "ir_shape", "membrane_bits"}, {"bias", "beta", "bias_v", "threshold", "v_reset", "v_init"}),
    "readout": (set(), {"bias", "scale"}),
}
SOURCES = {"input": 0, "conv": 1, "dense": 1, "layer": None, "lif": None, "readout": None}   # None: 1..MAX_PORTS
LIF_OPTIONS = {"frac_bits": int, "membrane_bits": int, "reset": ("subtract", "zero", "none"),
               "compare": (">", ">="), "timing": ("same-step", "snntorch"), "multi_spike": bool, "spiking": bool}


class LavaNetworkError(Exception):
    """A description or input that cannot be run; the message is one line naming the file, process or key."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass
class PortSpec:
    source: str
    exponent: int = 0
    flatten: bool = False


@dataclass
class ProcessSpec:
    name: str
    kind: str
    shape: tuple[int, ...]
    inputs: list[PortSpec] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    ir_nodes: list[str] = field(default_factory=list)
    resources: dict = field(default_factory=dict)


@dataclass
class NetworkDescription:
    steps: int
    processes: list[ProcessSpec]
    semantics_version: int = SEMANTICS_VERSION
    meta: dict = field(default_factory=dict)

    def process(self, name: str) -> ProcessSpec:
        for p in self.processes:
            if p.name == name:
                return p
        raise LavaNetworkError(f"no process named {name!r}")

    def of_kind(self, kind: str) -> list[ProcessSpec]:
        return [p for p in self.processes if p.kind == kind]

    def validate(self, where: str = "network") -> "NetworkDescription":
        """Check kinds, keys, sources, port counts and the range of every parameter and array value (what
        Lava would clip, divide by or hang on); raises LavaNetworkError naming the process and key."""
        from lmhtc.targets.lava.procs.ports import MAX_PORTS

        if not _is_int(self.steps) or not 1 <= self.steps <= MAX_STEPS:
            raise LavaNetworkError(f"{where}: steps must be an integer in [1, {MAX_STEPS}], got {self.steps!r}")
        seen: dict[str, ProcessSpec] = {}
        for p in self.processes:
            at = f"{where}: process {p.name!r}"
            if p.kind not in KINDS:
                raise LavaNetworkError(f"{at}: unknown kind {p.kind!r} (expected one of {', '.join(KINDS)})")
            if p.name in seen:
                raise LavaNetworkError(f"{at}: duplicate process name")
            params, arrays = KINDS[p.kind]
            for key in sorted(params - set(p.params)):
                raise LavaNetworkError(f"{at}: missing parameter {key!r}")
            for key in sorted(arrays - set(p.arrays)):
                raise LavaNetworkError(f"{at}: missing array {key!r}")
            n_src = SOURCES[p.kind]
            if n_src is not None and len(p.inputs) != n_src:
                raise LavaNetworkError(f"{at}: takes {n_src} input(s), has {len(p.inputs)}")
            if n_src is None and not 1 <= len(p.inputs) <= MAX_PORTS:
                raise LavaNetworkError(f"{at}: takes 1 to {MAX_PORTS} inputs, has {len(p.inputs)}")
            for port in p.inputs:
                if port.source not in seen:
                    raise LavaNetworkError(f"{at}: input {port.source!r} is not an earlier process")
                if seen[port.source].kind == "readout":
                    raise LavaNetworkError(f"{at}: input {port.source!r} is a readout")
            for key, arr in p.arrays.items():
                if key != "scale" and not np.issubdtype(arr.dtype, np.integer):
                    raise LavaNetworkError(f"{at}: array {key!r} must be integer, is {arr.dtype}")
            try:
                problem = _value_problem(p) or _shape_problem(p, seen, self.steps)
            except (TypeError, ValueError, KeyError, IndexError) as exc:
                problem = f"malformed parameters ({type(exc).__name__}: {exc})"
            if problem:
                raise LavaNetworkError(f"{at}: {problem}")
            seen[p.name] = p
        ends = {kind: [p.name for p in self.of_kind(kind)] for kind in ("input", "readout")}
        if any(len(names) != 1 for names in ends.values()):
            raise LavaNetworkError(f"{where}: 'processes' must hold exactly one input and one readout process, "
                                   f"has inputs {ends['input']} and readouts {ends['readout']}")
        return self


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _bad_int(q: dict, key: str, lo: int, hi: int) -> str | None:
    v = q[key]
    return None if _is_int(v) and lo <= v <= hi else f"parameter {key!r} must be an integer in [{lo}, {hi}], got {v!r}"


def _bad_pairs(q: dict, keys_lo: tuple) -> str | None:
    for key, lo in keys_lo:
        v = q[key]
        if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_is_int(e) and lo <= e <= 2 ** 16 for e in v):
            return f"parameter {key!r} must be two integers >= {lo}, got {v!r}"
    return None


def _max_abs(a: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64)).max()) if a.size else 0


def _value_problem(p: ProcessSpec) -> str | None:
    """Why a parameter or array value of ``p`` is out of range (None when all are in range): what Lava
    would clip silently, divide by, loop over or overflow is refused before any process starts."""
    a, q = p.arrays, p.params
    for port in p.inputs:
        if not -62 <= port.exponent <= 62:
            return f"input {port.source!r} has exponent {port.exponent}, outside [-62, 62]"
    if p.kind == "input":
        scale = q["scale"]
        if not isinstance(scale, numbers.Real) or not math.isfinite(scale) or not scale > 0:
            return f"parameter 'scale' must be a finite number > 0, got {scale!r}"
        return _bad_int(q, "bits", 2, 32)
    if p.kind in ("conv", "dense"):
        problem = _bad_int(q, "weight_bits", 1, 8) or _bad_int(q, "num_message_bits", 0, 32)
        if p.kind == "conv":
            problem = problem or _bad_pairs(q, (("stride", 1), ("dilation", 1), ("padding", 0))) or \
                _bad_int(q, "groups", 1, 2 ** 16)
        if problem:
            return problem
        qmax = min(2 ** (q["weight_bits"] - 1) - 1, 127) if q["weight_bits"] > 1 else 1
        if _max_abs(a["weight"]) > qmax:
            return f"array 'weight' reaches {_max_abs(a['weight'])}, beyond {q['weight_bits']}-bit mantissas (±{qmax})"
        return None
    if p.kind == "layer":
        problem = _bad_int(q, "levels", 1, 256) or _bad_int(q, "frac_bits", 0, 62) or \
            _bad_int(q, "leak_frac_bits", 0, 62) or _bad_int(q, "membrane_bits", 2, 62)
        if problem:
            return problem
        vmax = 2 ** (q["membrane_bits"] - 1) - 1
        th = a["threshold"]
        if th.size and (int(th.min()) < 1 or int(th.max()) >= 2 ** 62):
            return f"array 'threshold' must lie in [1, 2^62), got {th.min()}..{th.max()}"
        if _max_abs(a["v_init"]) > vmax:
            return f"array 'v_init' exceeds the {q['membrane_bits']}-bit membrane"
        if _max_abs(a["leak"]).bit_length() + q["membrane_bits"] > 63:
            return "array 'leak' times the membrane overflows 64 bits"
        return None
    if p.kind == "lif":
        return _lif_problem(a, q)
    if p.kind == "readout" and not np.all(np.isfinite(a["scale"])):
        return "array 'scale' has non-finite values"
    return None


def _lif_problem(a: dict, q: dict) -> str | None:
    """Why a ``lif`` process's options or arrays are out of range (None when all are in range)."""
    opts = q["options"]
    if not isinstance(opts, dict) or set(opts) != set(LIF_OPTIONS):
        return f"parameter 'options' must have the keys {', '.join(sorted(LIF_OPTIONS))}"
    for key, rule in LIF_OPTIONS.items():
        v = opts[key]
        ok = (_is_int(v) if rule is int else isinstance(v, bool)) if rule in (int, bool) else v in rule
        if not ok:
            return f"option {key!r} has the invalid value {v!r}"
    problem = _bad_int(opts, "frac_bits", 0, 30) or _bad_int(opts, "membrane_bits", 2, 48)
    if problem:
        return problem
    if opts["membrane_bits"] != q["membrane_bits"] or not opts["spiking"]:
        return "option 'membrane_bits' must equal the parameter and 'spiking' be true"
    if a["threshold"].size and int(a["threshold"].min()) < 1:
        return "array 'threshold' must be >= 1"
    for key in ("beta", "alpha"):
        if key in a and _max_abs(a[key]).bit_length() + opts["membrane_bits"] > 63:
            return f"array {key!r} times the membrane overflows 64 bits"
    return None


def _shape_problem(p: ProcessSpec, seen: dict[str, ProcessSpec], steps: int) -> str | None:
    """Why ``p``'s arrays and shape do not fit its inputs (None when they fit)."""
    a, q = p.arrays, p.params
    src = [(seen[i.source].shape if not i.flatten else (int(np.prod(seen[i.source].shape)),)) for i in p.inputs]
    if p.kind == "input":
        ir = tuple(q["ir_shape"])
        if tuple(p.shape) != (ir[::-1] if len(ir) == 3 else ir):
            return f"shape {p.shape} is not the Lava layout of ir_shape {ir}"
    elif p.kind == "conv":
        w = a["weight"]
        if w.ndim != 4 or tuple(q["input_shape"]) != src[0] or len(src[0]) != 3 or \
                w.shape[3] * int(q["groups"]) != src[0][2] or p.shape[2] != w.shape[0]:
            return f"weight {w.shape} with {q['groups']} group(s) does not fit input {src[0]} and shape {p.shape}"
    elif p.kind == "dense":
        w = a["weight"]
        if w.ndim != 2 or (w.shape[1],) != src[0] or tuple(p.shape) != (w.shape[0],):
            return f"weight {w.shape} does not map input {src[0]} to shape {p.shape}"
    else:
        if any(s != tuple(p.shape) for s in src):
            return f"inputs of shapes {src} do not all match its shape {p.shape}"
        per_channel = {"layer": ("threshold", "v_init", "bias"), "lif": ("bias",)}.get(p.kind, ("bias", "scale"))
        for key in per_channel:
            if a[key].shape != (p.shape[-1],):
                return f"array {key!r} has shape {a[key].shape}, expected ({p.shape[-1]},)"
        if p.kind == "layer" and (a["leak"].shape != (steps,) or a.get("omega", np.zeros((steps, steps))).shape
                                  != (steps, steps)):
            return f"leak must have steps={steps} entries and omega be {steps}x{steps}"
        if p.kind == "lif":
            for key in sorted(set(a) - {"bias"}):
                if a[key].shape != tuple(p.shape):
                    return f"array {key!r} has shape {a[key].shape}, expected {tuple(p.shape)}"
    return None


def save_description(desc: NetworkDescription, directory: str | os.PathLike, extra: dict | None = None) -> None:
    """Write ``network.json`` and ``arrays.npz`` into ``directory`` (which exists)."""
    directory = Path(directory)
    arrays, procs = {}, []
    for p in desc.processes:
        keys = {}
        for key, arr in p.arrays.items():
            keys[key] = f"{p.name}/{key}"
            arrays[keys[key]] = np.ascontiguousarray(arr)
        procs.append({"name": p.name, "kind": p.kind, "shape": list(p.shape), "ir_nodes": p.ir_nodes,
                      "inputs": [{"source": i.source, "exponent": i.exponent, "flatten": i.flatten}
                                 for i in p.inputs],
                      "params": p.params, "arrays": keys, "resources": p.resources})
    doc = {"format": FORMAT, "version": VERSION, "semantics_version": desc.semantics_version,
           "steps": desc.steps, "meta": desc.meta, **(extra or {}), "processes": procs}
    with open(directory / ARRAYS_NPZ, "wb") as f:
        write_npz(f, arrays)
    (directory / NETWORK_JSON).write_text(json.dumps(doc, indent=1) + "\n")


def load_description(directory: str | os.PathLike) -> NetworkDescription:
    """Read a description written by ``save_description``; raises LavaNetworkError naming the file and key."""
    directory = Path(directory)
    js, npz = directory / NETWORK_JSON, directory / ARRAYS_NPZ
    for f in (js, npz):
        if not f.is_file():
            raise LavaNetworkError(f"{f}: not found (is {directory} an exported Lava network?)")
    doc = read_json(js, "network description", LavaNetworkError)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise LavaNetworkError(f"{js}: not an lmhtc Lava network (format must be {FORMAT!r})")
    if doc.get("version") != VERSION or doc.get("semantics_version") != SEMANTICS_VERSION:
        raise LavaNetworkError(f"{js}: version {doc.get('version')!r} / semantics_version "
                               f"{doc.get('semantics_version')!r} not supported (expected {VERSION} / {SEMANTICS_VERSION})")
    try:
        with zipfile.ZipFile(npz) as z:
            infos = z.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise LavaNetworkError(f"{npz}: an array appears more than once in the archive")
        if sum(i.file_size for i in infos) > MAX_ARRAY_BYTES:
            raise LavaNetworkError(f"{npz}: arrays claim more than {MAX_ARRAY_BYTES} bytes")
        with np.load(npz, allow_pickle=False) as f:
            stored = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise LavaNetworkError(f"{npz}: cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    procs = _processes(doc, js, npz, stored)
    meta = _typed(doc, "meta", dict, js, {})
    return NetworkDescription(_key(doc, "steps", js), procs, SEMANTICS_VERSION, meta).validate(str(js))


def _processes(doc: dict, js: Path, npz: Path, stored: dict) -> list[ProcessSpec]:
    """The processes of ``doc``; a field of the wrong type is an error naming the process and field."""
    procs = []
    for i, p in enumerate(_typed(doc, "processes", list, js)):
        name = _typed(p, "name", str, f"{js}: processes[{i}]")
        where = f"{js}: process {name!r}"
        arrays = {}
        for key, ref in _typed(p, "arrays", dict, where).items():
            if not isinstance(ref, str) or ref not in stored:
                raise LavaNetworkError(f"{npz}: missing array {ref!r} (process {name!r}, array {key!r})")
            arrays[key] = stored[ref]
        try:
            inputs = [PortSpec(str(q["source"]), int(q.get("exponent", 0)), bool(q.get("flatten", False)))
                      for q in _typed(p, "inputs", list, where)]
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            raise LavaNetworkError(f"{where}: every input needs a 'source' and an integer 'exponent'") from None
        shape = _typed(p, "shape", list, where)
        if not all(_is_int(s) and 0 <= s < 2 ** 40 for s in shape):
            raise LavaNetworkError(f"{where}: 'shape' must be a list of sizes, got {str(shape)[:60]}")
        procs.append(ProcessSpec(name, _typed(p, "kind", str, where), tuple(int(s) for s in shape), inputs,
                                 dict(_typed(p, "params", dict, where)), arrays,
                                 list(_typed(p, "ir_nodes", list, where, [])),
                                 dict(_typed(p, "resources", dict, where, {}))))
    return procs


_REQUIRED = object()


def _typed(d, key: str, kind: type, where, default=_REQUIRED):
    """``d[key]``, which must be a ``kind`` (``default`` when absent, if given)."""
    if default is not _REQUIRED and isinstance(d, dict) and key not in d:
        return default
    value = _key(d, key, where)
    if not isinstance(value, kind):
        raise LavaNetworkError(f"{where}: {key!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _key(d, key: str, where):
    if not isinstance(d, dict) or key not in d:
        raise LavaNetworkError(f"{where}: missing key {key!r}")
    return d[key]
