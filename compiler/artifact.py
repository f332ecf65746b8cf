"""The compiled artifact: one self-describing, versioned file; no pickle.

Layout: a zip archive (stored, not compressed) holding

* ``manifest.json`` — format name and version, lmhtc version, metadata, and
  each graph (steps, meta, nodes with kind, inputs, attributes and references
  to tensors by content key), plus the SHA-256 of ``tensors.safetensors``;
* ``tensors.safetensors`` — every parameter array once, keyed by content
  (graphs that share weights, like the source and compiled graphs, share them).
  An integer array whose values fit a narrower integer type is stored in the
  narrowest of int8/int16/int32 (8-bit weight mantissas take one byte, not the
  IR's four); the manifest's ``narrowed`` maps its key to the IR's dtype, which
  loading restores exactly.

Entries have fixed timestamps and order, so the same graphs give the same bytes. Loading refuses
duplicate, compressed or oversized entries before reading them (no decompression bomb), parses the
manifest under the JSON size and depth limits, and checks the zip CRCs, the format and version, the tensor
file's SHA-256, every tensor reference, and validates each graph; any failure
is a one-line ``ArtifactError`` naming the file and what is wrong. Saving is
atomic (temporary file, then rename).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save_file as st_save_file

from lmhtc.safe_json import MAX_BYTES, loads_json

from . import __version__
from .atomic import atomic_write
from .errors import LmhtcError
from . import intir  # noqa: F401  (registers the integer node kinds with the loader)
from .intir import SEMANTICS_VERSION
from .convert import msat_node  # noqa: F401  (registers the MSAT neuron kind with the loader)
from . import lif_node, nir_ops  # noqa: F401  (register the NIR kinds lif, scale, sum_pool2d, conv1d)
from .ir import NODE_TYPES, Graph, IRError, finalize, infer_shapes
from .type_rules import rule_for

FORMAT = "lmhtc-artifact"
VERSION = 2            # 2: integer arrays may be stored narrowed (``narrowed``); version 1 files are read as well
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)     # fixed entry timestamps: byte-reproducible artifacts
MAX_MANIFEST_BYTES = MAX_BYTES


class ArtifactError(LmhtcError):
    pass


def _key(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(arr.dtype).encode() + str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:24]


def _graph_to_json(graph: Graph, store: dict[str, np.ndarray]) -> dict:
    nodes = []
    for node in graph.topo():
        refs = {}
        for pname, arr in node.arrays().items():
            key = _key(arr)
            store[key] = np.ascontiguousarray(arr)
            refs[pname] = key
        entry = {"name": node.name, "kind": node.kind, "inputs": list(node.inputs),
                 "attrs": node.attrs(), "arrays": refs}
        if node.shape is not None:      # checked on load: a damaged attribute is named at its own node
            entry["shape"] = [int(d) for d in node.shape]
        nodes.append(entry)
    return {"steps": graph.steps, "meta": graph.meta, "nodes": nodes}


MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


def _graph_from_json(d: dict, tensors: dict[str, np.ndarray], source: str, gname: str) -> Graph:
    """One graph of the manifest; a malformed field is an ArtifactError naming the graph, node and field."""
    where = f"{source}: graph {gname!r}"
    if not isinstance(d, dict):
        raise ArtifactError(f"{source}: 'graphs' entry {gname!r} is a {type(d).__name__}, not a graph object")
    for key, kind, what in (("steps", int, "an integer"), ("nodes", list, "a list"), ("meta", dict, "an object")):
        if (key in d or key != "meta") and (not isinstance(d.get(key), kind) or isinstance(d.get(key), bool)):
            raise ArtifactError(f"{where}: {key!r} must be {what}, got {str(d.get(key))[:40]!r}")
    if not d["nodes"]:
        raise ArtifactError(f"{where}: 'nodes' is empty")
    graph = Graph(steps=d["steps"], meta=dict(d.get("meta", {})))
    for i, nd in enumerate(d["nodes"]):
        if not isinstance(nd, dict):
            raise ArtifactError(f"{where}: nodes[{i}] is a {type(nd).__name__}, not an object")
        name = nd.get("name")
        try:
            graph.add(_node_from_json(nd, tensors, where, graph))
        except MALFORMED as exc:
            raise ArtifactError(f"{where} node {name if isinstance(name, str) else f'#{i}'!r}: malformed node "
                                f"({type(exc).__name__}: {exc})") from None
    return graph


def _stored_shapes(d: dict, where: str) -> dict[str, list]:
    """The output shapes the saver recorded per node (artifacts written before lmhtc recorded them have none)."""
    out = {}
    for nd in d["nodes"]:
        shape = nd.get("shape")
        if shape is None:
            continue
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise ArtifactError(f"{where} node {nd['name']!r}: 'shape' must be a list of sizes, "
                                f"got {str(shape)[:40]}")
        out[nd["name"]] = shape
    return out


def _node_from_json(nd: dict, tensors: dict[str, np.ndarray], where: str, graph: Graph):
    """One node of a graph; ``where`` (file and graph) starts every message."""
    cls = NODE_TYPES.get(nd["kind"])
    if cls is None:
        raise ArtifactError(f"{where} node {nd.get('name')!r} has unknown kind {nd['kind']!r}")
    kwargs = dict(nd.get("attrs", {}))
    for pname, key in nd.get("arrays", {}).items():
        if key not in tensors:
            raise ArtifactError(f"{where} node {nd['name']!r} refers to missing tensor {key}")
        kwargs[pname] = tensors[key]
    for k, v in list(kwargs.items()):
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    if not isinstance(nd["inputs"], list):
        raise ArtifactError(f"{where} node {nd['name']!r}: 'inputs' must be a list of node names, "
                            f"got {str(nd['inputs'])[:40]!r}")
    try:
        node = cls(name=nd["name"], inputs=list(nd["inputs"]), **kwargs)
    except TypeError as exc:
        raise ArtifactError(f"{where} node {nd['name']!r}: {exc}") from None
    if not isinstance(node.name, str) or node.name in graph:
        raise ArtifactError(f"{where}: duplicate or invalid node name {node.name!r}")
    for src_name in node.inputs:    # the saver writes nodes in topological order
        if not isinstance(src_name, str) or src_name not in graph:
            raise ArtifactError(f"{where} node {node.name!r}: input {src_name!r} is not an "
                                f"earlier node (a cycle, or a missing node)")
    return node


_NARROW = (np.int8, np.int16, np.int32)       # storage types of integer arrays, narrowest first
_WIDENED = {np.dtype(t).name for t in (np.int16, np.int32, np.int64)}   # IR dtypes a stored array may widen to


def _narrowed(store: dict[str, np.ndarray]) -> dict[str, str]:
    """Replace each signed integer array of ``store`` whose values fit a narrower integer type by its copy in
    the narrowest one; returns key → the original dtype name of the arrays replaced."""
    out = {}
    for key, arr in store.items():
        if arr.dtype.kind != "i" or arr.dtype.itemsize == 1 or arr.size == 0:
            continue
        lo, hi = int(arr.min()), int(arr.max())
        narrow = next(t for t in (*_NARROW, arr.dtype.type) if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max)
        if np.dtype(narrow).itemsize < arr.dtype.itemsize:
            store[key] = arr.astype(narrow)
            out[key] = arr.dtype.name
    return out


def _widened(tensors: dict[str, np.ndarray], narrowed, src: str, users: dict[str, str]) -> None:
    """Restore the IR dtype of every array the manifest lists as ``narrowed`` (a malformed entry is an
    ArtifactError naming the node and array that hold the tensor)."""
    if not isinstance(narrowed, dict):
        raise ArtifactError(f"{src}: malformed manifest ('narrowed' must map tensor keys to dtype names)")
    for key, dtype in narrowed.items():
        who = f"{users[key]} (tensor {key})" if key in users else f"tensor {str(key)[:40]!r}"
        arr = tensors.get(key)
        if arr is None:
            raise ArtifactError(f"{src}: 'narrowed' names {who}, which is not in the tensor data")
        if not isinstance(dtype, str) or dtype not in _WIDENED or arr.dtype.kind != "i" \
                or np.dtype(dtype).itemsize <= arr.dtype.itemsize:
            raise ArtifactError(f"{src}: 'narrowed' of {who}: {repr(dtype)[:20]} is not a wider integer "
                                f"type than its stored {arr.dtype.name}")
        tensors[key] = arr.astype(dtype)


def save_artifact(path: str | os.PathLike, graphs: dict[str, Graph], meta: dict | None = None) -> Path:
    """Write ``graphs`` (e.g. ``{"source": …, "compiled": …}``) and ``meta`` to ``path`` atomically.

    The tensor file is serialized straight from the arrays to a scratch file beside the output, hashed and
    copied into the archive in chunks, so saving holds no in-memory copy of the tensor bytes."""
    path = Path(path)
    store: dict[str, np.ndarray] = {}
    gjson = {name: _graph_to_json(g, store) for name, g in graphs.items()}
    narrowed = _narrowed(store)

    def write(tmp: str) -> None:
        tensors = tmp + ".tensors"
        try:
            st_save_file(store or {"_empty": np.zeros(0, np.float32)}, tensors)
            with open(tensors, "rb") as f:
                digest = _sha256_chunks(f)
            manifest = {"format": FORMAT, "version": VERSION, "lmhtc_version": __version__, "meta": meta or {},
                        "graphs": gjson, "narrowed": narrowed, "tensors_sha256": digest}
            text = json.dumps(manifest, indent=1, sort_keys=True, default=_json_default)
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
                z.writestr(_fixed_info(MANIFEST), text.encode())
                info = _fixed_info(TENSORS)
                info.file_size = os.path.getsize(tensors)     # as writestr sets it: the same zip64 choice
                with open(tensors, "rb") as src, z.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
        finally:
            if os.path.lexists(tensors):
                os.unlink(tensors)

    atomic_write(path, write)
    return path


_CHUNK = 1 << 20      # bytes per read when hashing and copying the tensor file


def _sha256_chunks(f) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: f.read(_CHUNK), b""):
        h.update(block)
    return h.hexdigest()


def _fixed_info(name: str) -> zipfile.ZipInfo:
    """A zip entry with fixed timestamp and permissions: the same graphs give the same bytes."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    info.create_system = 3
    return info


def _read_entries(z: zipfile.ZipFile, src: str, archive_size: int) -> tuple[bytes, bytes]:
    """The manifest and tensor bytes; refuses duplicate, compressed or oversized entries before reading."""
    infos = z.infolist()
    names = [i.filename for i in infos]
    for name in (MANIFEST, TENSORS):
        if names.count(name) > 1:
            raise ArtifactError(f"{src}: corrupted artifact (entry {name} appears {names.count(name)} times)")
        if name not in names:
            raise ArtifactError(f"{src}: not an lmhtc artifact (missing {MANIFEST} or {TENSORS})")
    out = []
    for name, limit in ((MANIFEST, MAX_MANIFEST_BYTES), (TENSORS, archive_size)):
        info = z.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            raise ArtifactError(f"{src}: entry {name} is compressed; lmhtc artifacts store entries uncompressed")
        if info.file_size > limit or info.file_size > archive_size:
            raise ArtifactError(f"{src}: entry {name} claims {info.file_size} bytes, more than "
                                f"{min(limit, archive_size)} allowed")
        try:
            out.append(z.read(name))
        except zipfile.BadZipFile as exc:
            if "CRC" in str(exc):
                raise ArtifactError(f"{src}: corrupted artifact (checksum mismatch in {name})") from None
            raise
    return out[0], out[1]


# what json.dumps cannot write itself → its JSON value (looked up through the object's type and bases)
_TO_JSON = {np.integer: int, np.floating: float, np.ndarray: np.ndarray.tolist, tuple: list}


def _json_default(obj):
    """The JSON value of a numpy scalar or array or a tuple (``_TO_JSON``); TypeError for anything else."""
    to_json = rule_for(_TO_JSON, obj)
    if to_json is None:
        raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
    return to_json(obj)


def load_artifact(path: str | os.PathLike) -> tuple[dict[str, Graph], dict]:
    """Read an artifact; returns its graphs (validated) and metadata."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ArtifactError(f"{src}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            manifest_bytes, blob = _read_entries(z, src, path.stat().st_size)
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ArtifactError(f"{src}: not an lmhtc artifact or truncated ({type(exc).__name__}: {exc})") from None
    manifest = loads_json(manifest_bytes, src, "manifest", ArtifactError)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{src}: not an lmhtc artifact (format {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("version") not in READABLE_VERSIONS or isinstance(manifest.get("version"), bool):
        raise ArtifactError(f"{src}: artifact format version {manifest.get('version')} is not supported "
                            f"(this lmhtc reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    if hashlib.sha256(blob).hexdigest() != manifest.get("tensors_sha256"):
        raise ArtifactError(f"{src}: tensor data does not match its checksum tensors_sha256 (tampered or corrupted)")
    users = _tensor_users(manifest)
    _check_tensor_header(blob, src, users)
    try:
        tensors = st_load(blob)
    except Exception as exc:   # safetensors raises its own error type
        raise ArtifactError(f"{src}: unreadable tensor data ({exc})") from None
    if manifest["version"] >= 2 or "narrowed" in manifest:
        _widened(tensors, manifest.get("narrowed"), src, users)
    graphs = {}
    if not isinstance(manifest.get("graphs"), dict):
        raise ArtifactError(f"{src}: malformed manifest ('graphs' must be an object of graphs)")
    for gname, gd in manifest["graphs"].items():
        try:
            graph = _graph_from_json(gd, tensors, src, gname)
            if gname == "integer" and graph.meta.get("integer") is not True:
                raise ArtifactError(f"{src}: graph 'integer': meta.integer is not true")
            if graph.meta.get("integer") and graph.meta.get("semantics_version") != SEMANTICS_VERSION:
                raise ArtifactError(f"{src}: graph {gname!r}: meta.semantics_version (integer semantics) "
                                    f"{graph.meta.get('semantics_version')!r} is not supported ({SEMANTICS_VERSION})")
            try:
                infer_shapes(graph, _stored_shapes(gd, f"{src}: graph {gname!r}"))
                finalize(graph)
            except IRError as exc:
                raise ArtifactError(f"{src}: graph {gname!r}: {exc}") from None
            graphs[gname] = graph
        except MALFORMED as exc:
            raise ArtifactError(f"{src}: graph {gname!r}: malformed manifest ({type(exc).__name__}: {exc})") from None
    return graphs, _checked_meta(manifest.get("meta", {}), src)


# safetensors dtypes the numpy loader reads, and their sizes in bytes
ST_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2,
             "U8": 1, "BOOL": 1}


def _tensor_users(manifest: dict) -> dict[str, str]:
    """For each tensor key the manifest refers to: "node 'X' array 'weight'" (the first such node), so a
    damaged tensor is named by the layer and attribute that hold it, not only by its content hash."""
    users: dict[str, str] = {}
    graphs = manifest.get("graphs")
    for gd in graphs.values() if isinstance(graphs, dict) else ():
        nodes = gd.get("nodes") if isinstance(gd, dict) else None
        for nd in nodes if isinstance(nodes, list) else ():
            refs = nd.get("arrays") if isinstance(nd, dict) else None
            for pname, key in refs.items() if isinstance(refs, dict) else ():
                if isinstance(key, str):
                    users.setdefault(key, f"node {nd.get('name')!r} array {pname!r}")
    return users


def _check_tensor_header(blob: bytes, src: str, users: dict[str, str]) -> None:
    """The safetensors header, checked before safetensors reads it: an object of entries with a known
    dtype, a shape of sizes and data offsets that match and tile the data; every tensor the manifest
    refers to present. An error names the node and array holding the damaged tensor."""
    def fail(key, problem):
        who = f"{users[key]} (tensor {key})" if key in users else f"tensor entry {key!r}"
        raise ArtifactError(f"{src}: tensor data: {who}: {problem}")

    n = int.from_bytes(blob[:8], "little") if len(blob) >= 8 else -1
    if not 0 < n <= len(blob) - 8:
        raise ArtifactError(f"{src}: tensor data: header length {n} does not fit the {len(blob)}-byte entry")
    try:
        header = json.loads(blob[8:8 + n])
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{src}: tensor data: header is not JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{src}: tensor data: header is a {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ArtifactError(f"{src}: tensor data: header entry '__metadata__' must map names to strings")
    size = len(blob) - 8 - n
    spans = []
    for key, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            fail(key, "header entry must be an object with dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in ST_DTYPES:
            fail(key, f"unsupported dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 2 ** 40 for d in shape):
            fail(key, f"shape {str(shape)[:40]} is not a list of sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= size):
            fail(key, f"data_offsets {str(offsets)[:40]} are not [begin, end] within the {size} data bytes")
        if offsets[1] - offsets[0] != int(np.prod(shape, dtype=object)) * ST_DTYPES[dtype]:
            fail(key, f"data_offsets {offsets} hold {offsets[1] - offsets[0]} bytes, not the "
                      f"{int(np.prod(shape, dtype=object)) * ST_DTYPES[dtype]} of a {dtype} {shape} tensor")
        spans.append((offsets[0], offsets[1], key))
    for key in users:
        if key not in header:
            fail(key, "missing from the tensor data")
    end = 0
    for begin, stop, key in sorted(spans):
        if begin != end:
            fail(key, f"data_offsets start at {begin}, not where the previous tensor ends ({end})")
        end = stop
    if end != size:
        raise ArtifactError(f"{src}: tensor data: the tensors cover {end} of {size} data bytes")


META_TYPES = {"model_spec": dict, "source_checkpoint": dict, "exactness": dict, "conversion": dict}


def _checked_meta(meta, src: str) -> dict:
    """The artifact's metadata: a dict whose known entries have their types (the commands read them)."""
    if not isinstance(meta, dict):
        raise ArtifactError(f"{src}: malformed manifest (meta is a {type(meta).__name__}, not an object)")
    for key, kind in META_TYPES.items():
        if key in meta and not isinstance(meta[key], kind):
            raise ArtifactError(f"{src}: malformed manifest (meta.{key} is a {type(meta[key]).__name__})")
    ex = meta.get("exactness")
    if ex is not None and not all(isinstance(ex.get(k), (int, float)) and not isinstance(ex.get(k), bool)
                                  for k in ("fraction", "images")):
        raise ArtifactError(f"{src}: malformed manifest (meta.exactness needs numbers 'fraction' and 'images')")
    return meta


def graphs_equal(a: Graph, b: Graph) -> bool:
    """Structural and numerical identity of two graphs (names, kinds, inputs, attributes, arrays, steps)."""
    if a.steps != b.steps or len(a) != len(b):
        return False
    for na, nb in zip(a.topo(), b.topo()):
        if (na.name, na.kind, na.inputs, na.shape) != (nb.name, nb.kind, nb.inputs, nb.shape):
            return False
        if json.dumps(na.attrs(), default=_json_default, sort_keys=True) != \
                json.dumps(nb.attrs(), default=_json_default, sort_keys=True):
            return False
        aa, ab = na.arrays(), nb.arrays()
        if aa.keys() != ab.keys() or any(not np.array_equal(aa[k], ab[k]) or aa[k].dtype != ab[k].dtype for k in aa):
            return False
    return True

