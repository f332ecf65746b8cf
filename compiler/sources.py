"""Input sources read by slices: one ``.npz``, a directory of ``.npz`` shards, or a ``.npy``.

Invariant: ``source.read(a, b)`` returns exactly ``x[a:b]`` of the whole data
set as float32 (the array ``load_inputs`` would return), and only that slice
is read: ``.npy`` files and the uncompressed members that ``np.savez`` writes
are memory-mapped, so a reader's memory stays bounded by the slice. A
compressed ``.npz`` member is read whole (the last one is kept per process). A source is a
small picklable description (paths and counts): a Dask worker opens its own
files. Labels ``y`` come from the ``.npz`` files; a ``.npy`` holds ``x`` only.
"""
from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import LmhtcError

_WHOLE: dict[tuple[str, str, int], np.ndarray] = {}   # the last compressed member read whole, per process


def _member(path: str, name: str) -> np.ndarray | None:
    """Array ``name`` of an .npz, memory-mapped when the member is stored uncompressed; None if absent."""
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(name + ".npy")
        except KeyError:
            return None
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError("bad local zip header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
        if not fortran and not dtype.hasobject:
            if int(np.prod(shape)) == 0:
                return np.zeros(shape, dtype)
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    key = (path, name, os.stat(path).st_mtime_ns)
    if key not in _WHOLE:
        with np.load(path, allow_pickle=False) as data:
            arr = data[name]
        _WHOLE.clear()             # one compressed member at a time: memory bounded by one file
        _WHOLE[key] = arr
    return _WHOLE[key]


def _open_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if not path.is_file():
        raise LmhtcError(f"{path}: no such file")
    try:
        x = _member(str(path), "x")
        if x is None:
            with np.load(path, allow_pickle=False) as data:
                files = data.files
            raise LmhtcError(f"{path}: no array 'x' (found: {', '.join(files) or 'nothing'})")
        y = _member(str(path), "y")
    except LmhtcError:
        raise
    except Exception as exc:  # zipfile and numpy raise many types for a bad file
        raise LmhtcError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    return x, y


def _check_x(path, x: np.ndarray) -> None:
    if x.ndim != 4:
        raise LmhtcError(f"{path}: 'x' must be [N,C,H,W], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise LmhtcError(f"{path}: 'x' must be floating point, got {x.dtype}")


@dataclass(frozen=True)
class InputSource:
    """``files`` with ``counts`` images each, concatenated in this order; ``kind`` npz, dir or npy."""

    path: str
    kind: str
    files: tuple[str, ...]
    counts: tuple[int, ...]
    sample_shape: tuple[int, ...]
    labelled: bool
    limit: int | None = None

    def __len__(self) -> int:
        total = sum(self.counts)
        return total if self.limit is None else min(total, self.limit)

    def limited(self, limit: int | None) -> "InputSource":
        if limit is None:
            return self
        if limit < 1:
            raise LmhtcError(f"--limit must be >= 1, got {limit}")
        return InputSource(self.path, self.kind, self.files, self.counts, self.sample_shape, self.labelled, limit)

    def _array(self, i: int, name: str) -> np.ndarray:
        f = self.files[i]
        try:
            if self.kind == "npy":
                return np.load(f, mmap_mode="r", allow_pickle=False)
            arr = _member(f, name)
        except Exception as exc:  # the file changed or cannot be read where this runs
            raise LmhtcError(f"{f}: cannot be read here ({type(exc).__name__}: {exc})") from None
        if arr is None or (name == "x" and (arr.shape[0] != self.counts[i] or arr.shape[1:] != self.sample_shape)):
            raise LmhtcError(f"{f}: array {name!r} changed since the inputs were opened")
        return arr

    def _slices(self, start: int, stop: int):
        base = 0
        for i, n in enumerate(self.counts):
            a, b = max(start, base), min(stop, base + n)
            if a < b:
                yield i, a - base, b - base
            base += n

    def read(self, start: int, stop: int) -> np.ndarray:
        """``x[start:stop]`` as float32 [n, C, H, W]; reads only that slice."""
        stop = min(stop, len(self))
        parts = [np.asarray(self._array(i, "x")[a:b]) for i, a, b in self._slices(start, stop)]
        if not parts:
            return np.zeros((0, *self.sample_shape), np.float32)
        x = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.array(x, dtype=np.float32, copy=True)

    def labels(self) -> np.ndarray | None:
        """All labels ``y`` (up to the limit), or None when the inputs have none."""
        if not self.labelled:
            return None
        return np.concatenate([np.asarray(self._array(i, "y")) for i in range(len(self.files))])[:len(self)]

    def fingerprint(self) -> str:
        """Names, sizes and modification times of the files, and the limit: changes when the inputs do."""
        h = hashlib.sha256()
        for f in self.files:
            st = os.stat(f)
            h.update(f"{os.path.abspath(f)}|{st.st_size}|{st.st_mtime_ns};".encode())
        h.update(f"limit={self.limit}".encode())
        return h.hexdigest()


def open_inputs(path: str | os.PathLike, limit: int | None = None) -> InputSource:
    """Open ``path`` (an .npz with x [N,C,H,W] and optionally y, a directory of such .npz, or a .npy of x)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix == ".npz" and f.is_file())
        if not files:
            raise LmhtcError(f"{p}: directory holds no .npz shards")
        arrays = [_open_npz(f) for f in files]
        for f, (x, _) in zip(files, arrays):
            _check_x(f, x)
            if x.shape[1:] != arrays[0][0].shape[1:]:
                raise LmhtcError(f"{f}: 'x' has per-sample shape {x.shape[1:]}, {files[0].name} has "
                                 f"{arrays[0][0].shape[1:]}")
        has_y = [y is not None for _, y in arrays]
        if any(has_y) and not all(has_y):
            raise LmhtcError(f"{files[has_y.index(False)]}: no labels 'y', other shards in {p} have them")
        for f, (x, y) in zip(files, arrays):
            if y is not None and len(y) != len(x):
                raise LmhtcError(f"{f}: 'y' has {len(y)} labels for {len(x)} images")
        kind, labelled = "dir", all(has_y)
    elif p.suffix == ".npy":
        if not p.is_file():
            raise LmhtcError(f"{p}: no such file")
        try:
            x = np.load(p, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise LmhtcError(f"{p}: not a readable .npy file ({type(exc).__name__}: {exc})") from None
        _check_x(p, x)
        files, arrays, kind, labelled = [p], [(x, None)], "npy", False
    else:
        x, y = _open_npz(p)
        _check_x(p, x)
        if y is not None and len(y) != len(x):
            raise LmhtcError(f"{p}: 'y' has {len(y)} labels for {len(x)} images")
        files, arrays, kind, labelled = [p], [(x, y)], "npz", y is not None
    if not any(len(x) for x, _ in arrays):
        raise LmhtcError(f"{p}: 'x' holds no images")
    src = InputSource(str(p), kind, tuple(str(f.resolve()) for f in files), tuple(len(x) for x, _ in arrays),
                      tuple(arrays[0][0].shape[1:]), labelled)
    return src.limited(limit)
