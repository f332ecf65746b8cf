"""Fuzzing the CLI and the exported Lava network with hostile files (issue #18).

A ``World`` holds one good set of files: a digitsnet checkpoint and its sidecar, its artifact (float and
integer graphs), an input ``.npz`` and the exported Lava directory. A case copies them, lets a
hypothesis-driven mutator damage one file (manifest fields, tensor headers, zip structure, npz arrays
and headers, checkpoint tensors, sidecar fields, Lava parameters and arrays), runs the command that
reads it, and judges the outcome. A case is handled when

* the command exits 0 with a valid result (the output loads, logits are finite and of the right shape), or
* it exits non-zero with exactly one line ``error: ...`` that names the damaged file and, when the mutation
  damaged a particular key, layer (node), process or tensor, names it too (``Case.names``: any one of
  them, as a whole word), and leaves no output,

and, either way, no input file changed and no exception escaped. Everything else is a failure with a
class (traceback, internal error, several lines, unnamed file, unnamed key, output left, input modified,
invalid result). ``tests/test_fuzz.py`` runs a fixed number of cases per mutator and requires all handled;
``python -m benchmarks fuzz [N]`` runs N per mutator and prints the counts.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

# -- hostile values ------------------------------------------------------------------------------

VALUES = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, -1, 1, 2, 3, 7, 63, 64, 255, 2 ** 31, 2 ** 62, 2 ** 63, 10 ** 9, -10 ** 9, 10 ** 30]),
    st.integers(-2 ** 70, 2 ** 70),
    st.sampled_from([0.0, -0.0, 0.5, 1.5, -2.5, 1e-300, 1e38, 1e300, float("nan"), float("inf"), -float("inf")]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-3, 2 ** 20), max_size=5),
    st.lists(st.floats(allow_nan=True), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _flip_or_cut(data: st.DataObject, blob: bytes) -> bytes:
    """Truncate ``blob`` somewhere, or flip one of its bytes."""
    if not blob:
        return blob
    if data.draw(st.booleans(), label="truncate"):
        return blob[: data.draw(st.integers(0, len(blob) - 1), label="length")]
    i = data.draw(st.integers(0, len(blob) - 1), label="offset")
    return blob[:i] + bytes([blob[i] ^ data.draw(st.integers(1, 255), label="xor")]) + blob[i + 1:]


def _set_path(data: st.DataObject, obj, label: str, trail: list | None = None):
    """Replace one value somewhere inside the JSON value ``obj`` (in place when possible); returns obj.
    The keys and indices leading to the replaced (or deleted) value are appended to ``trail``."""
    parent, key = None, None
    cur = obj
    for depth in range(6):
        if isinstance(cur, dict) and cur:
            k = data.draw(st.sampled_from(sorted(cur, key=str)), label=f"{label}[{depth}]")
        elif isinstance(cur, list) and cur:
            k = data.draw(st.integers(0, len(cur) - 1), label=f"{label}[{depth}]")
        else:
            break
        parent, key, cur = cur, k, cur[k]
        if trail is not None:
            trail.append(k)
        if not data.draw(st.booleans(), label=f"{label}-deeper"):
            break
    value = data.draw(VALUES, label=f"{label}-value")
    if parent is None:
        return value
    if isinstance(parent, dict) and data.draw(st.integers(0, 5), label=f"{label}-delete") == 0:
        del parent[key]
    else:
        parent[key] = value
    return obj


def _leaf_key(trail: list) -> tuple:
    """The last string key of a JSON path (the damaged field, or the list holding a damaged element)."""
    keys = [k for k in trail if isinstance(k, str)]
    return (keys[-1],) if keys else ()


# -- the good files ------------------------------------------------------------------------------

@dataclass
class World:
    """Good inputs for every command the fuzzer drives (built once, copied per case)."""
    root: Path
    ckpt: Path = None
    art: Path = None
    x: Path = None
    lava: Path = None
    commands: tuple = ("simulate", "simulate", "inspect", "report", "onnx", "onnx-int", "lava")   # for manifests

    @classmethod
    def build(cls, root: Path) -> "World":
        import torch

        from lmhtc.compiler.checkpoint import ModelSpec, save_checkpoint
        from lmhtc.compiler.data import load_digits_dataset
        from lmhtc.compiler.zoo import build_snn

        root.mkdir(parents=True, exist_ok=True)
        data = load_digits_dataset("8")
        torch.manual_seed(0)
        model = build_snn("digitsnet", 2, 2, 10, "direct", (1, 8, 8))
        w = cls(root)
        w.ckpt = save_checkpoint(root / "m.pth", model, ModelSpec("digitsnet", 2, 2, input_shape=(1, 8, 8),
                                                                  normalization=data.normalization()))
        w.x = root / "x.npz"
        np.savez(w.x, x=data.test.x[:3], y=data.test.y[:3])
        w.art = root / "m.lmhtc"
        code, out, _ = invoke("compile", w.ckpt, "-o", w.art, "--no-progress")
        assert code == 0, out
        w.lava = root / "lava"
        code, out, _ = invoke("export", w.art, "--target", "lava", "-o", w.lava)
        assert code == 0, out
        return w


def invoke(*args) -> tuple[int, str, bool]:
    """``lmhtc ARGS`` in-process: (exit code, stdout+stderr, whether an exception escaped the command)."""
    from typer.testing import CliRunner

    from lmhtc.compiler.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    escaped = res.exception is not None and not isinstance(res.exception, SystemExit)
    return res.exit_code, res.output + (f"\n{res.exception!r}" if escaped else ""), escaped


# -- mutators: each writes damaged copies into ``case`` and returns the command to run ---------------

@dataclass
class Case:
    mutator: str
    args: list            # CLI arguments, or ["lava", DIR] for the Lava loader
    damaged: Path         # the file whose name an error must mention
    output: Path | None   # what a successful run writes
    inputs: list = field(default_factory=list)
    detail: str = ""      # the judged output's last line
    names: tuple = ()     # the damaged key / node / process / tensor: an error must mention one (when any)


def _artifact_bytes(path: Path) -> tuple[dict, bytes]:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("manifest.json")), z.read("tensors.safetensors")


def _write_artifact(path: Path, manifest, blob: bytes, entries=None, compression=zipfile.ZIP_STORED) -> None:
    text = manifest if isinstance(manifest, (bytes, str)) else json.dumps(manifest)
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, payload in (entries or [("manifest.json", text), ("tensors.safetensors", blob)]):
            z.writestr(name, payload)


def _simulate(w: World, case: Path, art: Path, x: Path, mode: str, mutator: str, damaged: Path) -> Case:
    out = case / "out.npz"
    return Case(mutator, ["simulate", art, "--inputs", x, "-o", out, "--mode", mode, "--no-progress"],
                damaged, out, [art, x])


def mutate_manifest(w: World, case: Path, data: st.DataObject) -> Case:
    """A field of the manifest (graph steps, node kinds, inputs, attributes, tensor references, metadata)."""
    manifest, blob = _artifact_bytes(w.art)
    graph = data.draw(st.sampled_from(sorted(manifest["graphs"])), label="graph")
    target = data.draw(st.sampled_from(["node", "node", "node", "graph", "top"]), label="where")
    trail: list = []
    if target == "node":
        trail += ["graphs", graph, "nodes", data.draw(st.integers(0, len(manifest["graphs"][graph]["nodes"]) - 1),
                                                       label="node")]
    elif target == "graph":
        trail += ["graphs", graph]
    root = manifest
    for k in trail:
        root = root[k]
    edited = _set_path(data, root, target, trail)
    if not trail:
        manifest = edited
    art = case / "a.lmhtc"
    _write_artifact(art, manifest, blob)
    case_ = _manifest_command(w, case, data, art, graph)
    case_.names = _manifest_names(_artifact_bytes(w.art)[0], trail)
    return case_


def _manifest_names(manifest: dict, trail: list) -> tuple:
    """What an error about the manifest field at ``trail`` must name: the node it lies in (by name or
    position) or the field itself; a damaged graph-level or top-level field by its key."""
    if len(trail) >= 4 and trail[:1] == ["graphs"] and trail[2] == "nodes":
        node = manifest["graphs"][trail[1]]["nodes"][trail[3]]
        return (node["name"], f"#{trail[3]}", *_leaf_key(trail[4:] or ["nodes"]))
    return _leaf_key(trail)


def _manifest_command(w: World, case: Path, data: st.DataObject, art: Path, graph: str) -> Case:
    command = data.draw(st.sampled_from(w.commands), label="command")
    if command == "simulate":
        return _simulate(w, case, art, case / "x.npz", "int" if graph == "integer" else "float", "manifest field",
                         art)
    if command == "inspect":
        return Case("manifest field", ["inspect", art, "--graph", graph], art, None, [art])
    if command == "report":
        out = case / "report.json"
        return Case("manifest field", ["report", art, "--inputs", case / "x.npz", "--json", out, "--no-progress"],
                    art, out, [art, case / "x.npz"])
    out = case / ("lava.out" if command == "lava" else "m.onnx")
    return Case("manifest field", ["export", art, "--target", command, "-o", out], art, out, [art])


def mutate_tensor_header(w: World, case: Path, data: st.DataObject) -> Case:
    """The safetensors header (dtype, shape, offsets) with a matching checksum, so loading gets past it."""
    manifest, blob = _artifact_bytes(w.art)
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    trail: list = []
    header = _set_path(data, header, "header", trail)
    text = json.dumps(header).encode()
    new = struct.pack("<Q", len(text)) + text + blob[8 + n:]
    manifest["tensors_sha256"] = hashlib.sha256(new).hexdigest()
    art = case / "a.lmhtc"
    _write_artifact(art, manifest, new)
    c = _simulate(w, case, art, case / "x.npz", data.draw(st.sampled_from(["float", "int"]), label="mode"),
                  "tensor header", art)
    users = [nd["name"] for g in manifest["graphs"].values() for nd in g["nodes"]
             if trail and trail[0] in nd.get("arrays", {}).values()]
    c.names = tuple(users) or tuple(k for k in trail[:1] if k == "__metadata__")
    return c


def mutate_zip(w: World, case: Path, data: st.DataObject) -> Case:
    """The archive: truncation, a flipped byte, duplicate, missing, extra or compressed entries."""
    manifest, blob = _artifact_bytes(w.art)
    art = case / "a.lmhtc"
    how = data.draw(st.sampled_from(["bytes", "duplicate", "missing", "extra", "deflate"]), label="zip")
    text = json.dumps(manifest)
    entry = None
    if how == "bytes":
        art.write_bytes(_flip_or_cut(data, w.art.read_bytes()))
    elif how == "duplicate":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            entry = data.draw(st.sampled_from(["manifest.json", "tensors.safetensors"]))
            _write_artifact(art, None, b"", [("manifest.json", text), ("tensors.safetensors", blob),
                                            (entry, data.draw(st.sampled_from([text, "{}", "junk"])))])
    elif how == "missing":
        kept = data.draw(st.sampled_from([("manifest.json", text), ("tensors.safetensors", blob)]))
        entry = "tensors.safetensors" if kept[0] == "manifest.json" else "manifest.json"
        _write_artifact(art, None, b"", [kept])
    elif how == "extra":
        _write_artifact(art, None, b"", [("manifest.json", text), ("tensors.safetensors", blob),
                                        (data.draw(st.sampled_from(["../evil", "/abs", "x.npy", "a/b"])), "data")])
    else:
        entry = "manifest.json"       # the first entry read
        _write_artifact(art, manifest, blob, compression=zipfile.ZIP_DEFLATED)
    c = _simulate(w, case, art, case / "x.npz", "int", "zip structure", art)
    c.names = (entry,) if entry else ()
    return c


DTYPES = ["float16", "float32", "float64", "int8", "int64", "uint8", "bool", "complex64", "<U3", ">f4"]


def _array(data: st.DataObject, good: np.ndarray, label: str) -> np.ndarray:
    """A variant of ``good``: another dtype, shape or N, or non-finite / huge values."""
    how = data.draw(st.sampled_from(["dtype", "shape", "rows", "values", "scalar"]), label=label)
    if how == "dtype":
        with np.errstate(all="ignore"):
            return good.astype(data.draw(st.sampled_from(DTYPES), label=f"{label}-dtype"))
    if how == "shape":
        shape = data.draw(st.lists(st.integers(0, 9), max_size=5), label=f"{label}-shape")
        return np.zeros(shape, good.dtype)
    if how == "rows":
        return good[: data.draw(st.integers(0, len(good)), label=f"{label}-rows")]
    if how == "scalar":
        return np.asarray(data.draw(st.sampled_from([0, 1.5, "x", True])))
    bad = good.astype(np.float64).copy()
    flat = bad.reshape(-1)
    for _ in range(data.draw(st.integers(1, 3), label=f"{label}-count")):
        flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(
            st.sampled_from([np.nan, np.inf, -np.inf, 1e39, -1e300, 1e6]), label=f"{label}-value")
    if np.issubdtype(good.dtype, np.integer) and np.isfinite(bad).all() and np.abs(bad).max() < 2 ** 62:
        return bad.astype(good.dtype)
    return bad


def mutate_npz(w: World, case: Path, data: st.DataObject) -> Case:
    """The input ``.npz``: arrays x / y (dtype, shape, values), keys, bytes, or a header claiming more rows."""
    with np.load(w.x) as f:
        x, y = f["x"], f["y"]
    path = case / "bad.npz"
    how = data.draw(st.sampled_from(["x", "y", "keys", "bytes", "claims"]), label="npz")
    names = {"x": ("x",), "y": ("y",), "claims": ("x",), "bytes": ()}.get(how)
    if how == "x":
        np.savez(path, x=_array(data, x, "x"), y=y)
    elif how == "y":
        np.savez(path, x=x, y=_array(data, y, "y"))
    elif how == "keys":
        key = data.draw(st.sampled_from(["X", "images", "x.npy", "y"]))
        names = ("x", key)            # the missing array, or the one stored under the wrong key
        np.savez(path, **{key: x})
    elif how == "bytes":
        path.write_bytes(_flip_or_cut(data, w.x.read_bytes()))
    else:
        buf = io.BytesIO()
        rows = data.draw(st.sampled_from([0, 4, 10 ** 6, 10 ** 12]), label="rows")
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (rows, *x.shape[1:])})
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x.npy", buf.getvalue() + x.astype("<f4").tobytes())
    limit = data.draw(st.sampled_from([None, "1", "2"]), label="limit")
    mode = data.draw(st.sampled_from(["float", "int"]), label="mode")
    c = _simulate(w, case, case / "a.lmhtc", path, mode, "input npz", path)
    c.names = names
    if limit:
        c.args += ["--limit", limit]
    return c


def mutate_checkpoint(w: World, case: Path, data: st.DataObject) -> Case:
    """A checkpoint tensor (dropped, extra, dtype, shape, non-finite or huge values), its structure or bytes."""
    import torch

    state = torch.load(w.ckpt, weights_only=True)["model"]
    path = case / "c.pth"
    (case / "c.json").write_bytes(w.ckpt.with_suffix(".json").read_bytes())
    how = data.draw(st.sampled_from(["drop", "extra", "dtype", "shape", "values", "structure", "bytes"]), label="ckpt")
    key = data.draw(st.sampled_from(sorted(state)), label="key")
    names = (key,)
    if how == "drop":
        del state[key]
    elif how == "extra":
        extra = data.draw(st.sampled_from(["head.weight", key + ".x", ""]))
        names = (extra,) if extra else ("''",)
        state[extra] = torch.zeros(2)
    elif how == "dtype":
        state[key] = state[key].to(data.draw(st.sampled_from([torch.bool, torch.int64, torch.float16,
                                                              torch.float64, torch.uint8, torch.complex64])))
    elif how == "shape":
        state[key] = torch.zeros(data.draw(st.lists(st.integers(0, 5), max_size=4)))
    elif how == "values":
        t = state[key].clone().to(torch.float32).reshape(-1)
        if t.numel():
            t[data.draw(st.integers(0, t.numel() - 1))] = data.draw(st.sampled_from([float("nan"), float("inf"),
                                                                                     1e38, -1e30, 1e13]))
        state[key] = t.reshape(state[key].shape)
    if how in ("structure", "bytes"):
        names = ()
    if how == "structure":
        torch.save(data.draw(st.sampled_from([[1, 2], {"epoch": 1}, {"model": [1]}, {"model": {"w": 1}}])), path)
    elif how == "bytes":
        path.write_bytes(_flip_or_cut(data, w.ckpt.read_bytes()))
    else:
        torch.save({"model": state}, path)
    out = case / "out.lmhtc"
    return Case("checkpoint", ["compile", path, "-o", out, "--no-int", "--no-progress"], path, out,
                [path, case / "c.json"], names=names)


def mutate_sidecar(w: World, case: Path, data: st.DataObject) -> Case:
    """The JSON sidecar: a model_spec field or the format, deep nesting, binary bytes, truncation."""
    path, side = case / "c.pth", case / "c.json"
    path.write_bytes(w.ckpt.read_bytes())
    doc = json.loads(w.ckpt.with_suffix(".json").read_text())
    how = data.draw(st.sampled_from(["field", "field", "deep", "binary", "bytes"]), label="sidecar")
    trail: list = []
    if how == "field":
        side.write_text(json.dumps(_set_path(data, doc, "sidecar", trail)))
    elif how == "deep":
        n = data.draw(st.sampled_from([60, 100, 2000, 200_000]), label="depth")
        side.write_text(f'{{"format": "lmhtc-checkpoint-sidecar", "model_spec": {"[" * n + "]" * n}}}')
    elif how == "binary":
        side.write_bytes(bytes(data.draw(st.lists(st.integers(128, 255), min_size=1, max_size=64))))
    else:
        side.write_bytes(_flip_or_cut(data, w.ckpt.with_suffix(".json").read_bytes()))
    out = case / "out.lmhtc"
    return Case("sidecar", ["compile", path, "-o", out, "--no-int", "--no-progress"], side, out, [path, side],
                names=_leaf_key(trail))


def mutate_lava(w: World, case: Path, data: st.DataObject) -> Case:
    """The exported Lava directory: a network.json field, an arrays.npz array, or either file's bytes."""
    d = case / "lava"
    shutil.copytree(w.lava, d)
    how = data.draw(st.sampled_from(["json", "json", "array", "bytes"]), label="lava")
    js, npz = d / "network.json", d / "arrays.npz"
    damaged, names = js, ()
    if how == "json":
        doc, trail = json.loads(js.read_text()), []
        js.write_text(json.dumps(_set_path(data, doc, "network", trail)))
        names = _leaf_key(trail)
        if len(trail) >= 2 and trail[0] == "processes":
            names += (json.loads(w.lava.joinpath("network.json").read_text())["processes"][trail[1]]["name"],
                      f"processes[{trail[1]}]")
    elif how == "array":
        with np.load(npz) as f:
            arrays = {k: f[k] for k in f.files}
        key = data.draw(st.sampled_from(sorted(arrays)), label="array")
        arrays[key] = _array(data, arrays[key], "array") if arrays[key].size else np.zeros(3)
        np.savez(npz, **arrays)
        damaged, names = npz, (key, *key.split("/"))     # "process/array": the key, process or array
    else:
        damaged = data.draw(st.sampled_from([js, npz]), label="file")
        damaged.write_bytes(_flip_or_cut(data, damaged.read_bytes()))
    return Case("lava directory", ["lava", d], damaged, None, [js, npz, case / "x.npz"], names=names)


MUTATORS = {"manifest field": mutate_manifest, "tensor header": mutate_tensor_header, "zip structure": mutate_zip,
            "input npz": mutate_npz, "checkpoint": mutate_checkpoint, "sidecar": mutate_sidecar,
            "lava directory": mutate_lava}


# -- running and judging a case ------------------------------------------------------------------

def _digest(paths) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def _valid_result(case: Case) -> bool:
    if case.args[0] == "report":
        return isinstance(json.loads(case.output.read_text()), dict)
    if case.args[0] == "export":
        if case.output.is_dir():
            return (case.output / "run.py").is_file() and (case.output / "network.json").is_file()
        import onnx

        onnx.checker.check_model(onnx.load(str(case.output)))
        return True
    if case.args[0] == "simulate":
        with np.load(case.output) as f:
            logits = f["logits"]
        return logits.ndim == 2 and logits.shape[1] == 10 and bool(np.isfinite(logits).all())
    from lmhtc.compiler.artifact import load_artifact

    load_artifact(case.output)
    return True


def _run_lava(case: Case) -> tuple[int, str, bool]:
    from lmhtc.array_gate import read_inputs
    from lmhtc.targets.lava.description import LavaNetworkError, load_description

    try:
        desc = load_description(case.args[1])
        read_inputs(case.inputs[-1], LavaNetworkError, shape=tuple(desc.of_kind("input")[0].params["ir_shape"]))
    except LavaNetworkError as exc:
        return 2, f"error: {exc}", False
    except Exception as exc:  # noqa: BLE001  (the fuzzer classifies every escape)
        return 1, repr(exc), True
    return 0, "", False


def judge(case: Case) -> str:
    """Run ``case``; 'ok' (exit 0, valid result), 'error' (one named line) or the failure's class."""
    before = _digest(case.inputs)
    code, text, escaped = _run_lava(case) if case.args[0] == "lava" else invoke(*case.args)
    if _digest(case.inputs) != before:
        return "FAIL: input modified"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    case.detail = lines[-1] if lines else ""
    if escaped or "Traceback" in text:
        return "FAIL: traceback or escaped exception"
    if code == 0:
        if case.output is None:
            return "ok"
        try:
            return "ok" if case.output.exists() and _valid_result(case) else "FAIL: exit 0 without a valid result"
        except Exception:  # noqa: BLE001
            return "FAIL: exit 0 without a valid result"
    errors = [ln for ln in lines if ln.startswith(("error: ", "internal error: "))]
    if len(errors) != 1:
        return "FAIL: not one error line"
    if errors[0].startswith("internal error"):
        return "FAIL: internal error"
    if case.output is not None and case.output.exists():
        return "FAIL: output left behind"
    names = ("network.json", "arrays.npz") if case.args[0] == "lava" else (case.damaged.name,)
    if not any(n in errors[0] for n in names):
        return "FAIL: error does not name the file"
    if case.names and not any(_mentions(errors[0], str(n)) for n in case.names):
        return "FAIL: error does not name the damaged key"
    return "error"


def _mentions(line: str, name: str) -> bool:
    """``name`` occurs in ``line`` as a whole word (not inside a longer identifier)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", line) is not None


def new_case(w: World, root: Path, name: str, data: st.DataObject) -> Case:
    """A fresh case directory with copies of the good files, damaged by mutator ``name``."""
    case = Path(root)
    if case.exists():
        shutil.rmtree(case)
    case.mkdir(parents=True)
    shutil.copy(w.art, case / "a.lmhtc")
    shutil.copy(w.x, case / "x.npz")
    return MUTATORS[name](w, case, data)


# -- python -m benchmarks fuzz [N] --------------------------------------------------------------

def bench_fuzz(console, examples: int = 200, only: list | None = None) -> None:
    import tempfile
    import time

    from hypothesis import HealthCheck, given, settings
    from rich.table import Table

    root = Path(tempfile.mkdtemp(prefix="lmhtc-fuzz-"))
    start = time.perf_counter()
    try:
        w = World.build(root / "world")
        results: dict[str, Counter] = {}
        named: Counter = Counter()        # errors whose damaged key / node / tensor was checked in the line
        failures: list[str] = []
        for name in only or MUTATORS:
            counts = results.setdefault(name, Counter())

            @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                      suppress_health_check=list(HealthCheck))
            @given(st.data())
            def run(data):
                case = new_case(w, root / "case", name, data)
                verdict = judge(case)
                counts[verdict] += 1
                named[name] += verdict == "error" and bool(case.names)
                if verdict.startswith("FAIL") and len(failures) < 20:
                    failures.append(f"{name}: {verdict}: {case.detail}")

            run()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = Table(title=f"fuzz: hostile files per mutator ({examples} hypothesis examples each, "
                        f"{time.perf_counter() - start:.0f} s)")
    for col in ("mutator", "cases", "exit 0, valid", "one-line error", "of which key named", "failures", "handled"):
        table.add_column(col, justify="left" if col == "mutator" else "right")
    total = Counter()
    for name, c in results.items():
        n = sum(c.values())
        fails = sum(v for k, v in c.items() if k.startswith("FAIL"))
        total.update(c)
        table.add_row(name, str(n), str(c["ok"]), str(c["error"]), str(named[name]), str(fails),
                      f"{100 * (n - fails) / max(n, 1):.2f} %")
    n = sum(total.values())
    fails = sum(v for k, v in total.items() if k.startswith("FAIL"))
    table.add_row("all", str(n), str(total["ok"]), str(total["error"]), str(sum(named.values())), str(fails),
                  f"{100 * (n - fails) / max(n, 1):.2f} %", end_section=True)
    console.print(table)
    for k, v in sorted(total.items()):
        if k.startswith("FAIL"):
            console.print(f"{k}: {v}")
    for f in failures:
        console.print(f"  {f}")
