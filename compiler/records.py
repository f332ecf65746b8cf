"""Per-batch records and their one reduction: the in-process loops and the Dask gather both call ``combine``.

A record is a dict (nested dicts allowed) of numpy arrays with an image axis,
numbers and plain values (names, modes, None). ``combine`` joins the records
of consecutive batches in input order:

* arrays concatenate along their image axis (``axes[k]`` for the innermost
  path component ``k`` found in ``axes``, else 0);
* numbers under a path component named in ``sums`` add up (call counts, seconds);
* every other value must be equal in all records (layer names, modes, digests).

Invariant: combining the records of a split of the inputs gives the record of
the inputs in one batch, when the per-batch computation is batch-independent.
``save_record``/``load_record`` store a record as one .npz (arrays plus a JSON
description of the rest, no pickle), atomically.
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import numpy as np

from .atomic import atomic_write


def _axis(path: tuple[str, ...], axes: Mapping[str, int]) -> int:
    for part in reversed(path):
        if part in axes:
            return axes[part]
    return 0


def _join(values: list, path: tuple[str, ...], axes: Mapping[str, int], sums: frozenset[str]):
    first = values[0]
    if isinstance(first, dict):
        keys = list(first)
        for v in values[1:]:
            if not isinstance(v, dict) or list(v) != keys:
                raise RuntimeError(f"internal: shard records disagree on the keys of {'/'.join(path) or 'the record'}")
        return {k: _join([v[k] for v in values], path + (k,), axes, sums) for k in keys}
    if isinstance(first, np.ndarray):
        return np.concatenate(values, axis=_axis(path, axes))
    if sums.intersection(path) and isinstance(first, (int, float)) and not isinstance(first, bool):
        return sum(values[1:], first)
    for v in values[1:]:
        if v != first:
            raise RuntimeError(f"internal: shard records disagree on {'/'.join(path)}: {first!r} vs {v!r}")
    return first


def combine(records: Sequence[dict], axes: Mapping[str, int] | None = None, sums=()) -> dict:
    """The record of all inputs from the records of consecutive batches, in order (see module doc)."""
    if not records:
        raise ValueError("combine needs at least one record")
    return _join(list(records), (), axes or {}, frozenset(sums))


def _flatten(rec: dict, prefix: str, arrays: dict, plain: dict) -> None:
    for k, v in rec.items():
        if "/" in k:
            raise ValueError(f"record key {k!r} contains '/'")
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            plain[path] = {"dict": list(v)}
            _flatten(v, path + "/", arrays, plain)
        elif isinstance(v, np.ndarray):
            arrays[path] = v
        else:
            plain[path] = {"value": v}


def save_record(path: str | os.PathLike, rec: dict) -> None:
    """Write ``rec`` to ``path`` (.npz) atomically."""
    arrays: dict[str, np.ndarray] = {}
    plain: dict[str, dict] = {}
    _flatten(rec, "", arrays, plain)
    top = list(rec)
    doc = json.dumps({"top": top, "plain": plain, "arrays": list(arrays)})

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, __record__=np.array(doc), **{f"a{i}": a for i, a in enumerate(arrays.values())})
    atomic_write(path, write)


def load_record(path: str | os.PathLike) -> dict:
    """The record ``save_record`` wrote."""
    with np.load(path, allow_pickle=False) as data:
        doc = json.loads(str(data["__record__"]))
        arrays = {name: data[f"a{i}"] for i, name in enumerate(doc["arrays"])}
    plain = doc["plain"]

    def build(prefix: str, keys: list[str]) -> dict:
        out = {}
        for k in keys:
            p = f"{prefix}{k}"
            if p in arrays:
                out[k] = arrays[p]
            elif "dict" in plain[p]:
                out[k] = build(p + "/", plain[p]["dict"])
            else:
                v = plain[p]["value"]
                out[k] = v
        return out
    return build("", doc["top"])
