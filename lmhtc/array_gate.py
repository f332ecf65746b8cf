"""The input gate: images ``x`` (and labels ``y``) from an ``.npz`` file a user gives, checked before use.

numpy and the standard library only (an exported Lava ``run.py`` uses it too). Invariant: ``read_inputs``
returns ``x`` float32 [N, *shape] with 1 ≤ N ≤ limit, every value finite, and ``y`` int64 [N] (labels in
[0, classes) when ``classes`` is given) or None; or it raises ``error`` with one line naming the file and
the array. Only the npy headers and the first ``limit`` rows are read, so ``--limit`` bounds the work on a
huge file, and no read exceeds ``MAX_BYTES``. Nothing is unpickled.
"""
from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

MAX_BYTES = 8 * 2 ** 30         # images read at once (after --limit); 8 GiB


def _header(f, src: str, key: str, error):
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version in ((2, 0), (3, 0)):
            return np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        raise error(f"{src}: array {key!r} has no valid .npy header ({' '.join(str(exc).split())})") from None
    raise error(f"{src}: array {key!r} has unsupported .npy format version {version}")


def _read_rows(z: zipfile.ZipFile, src: str, key: str, rows: int | None, error, check):
    """Header of member ``key`` checked by ``check(shape, dtype)``, then its first ``rows`` rows (all rows
    when ``check`` returns True: a per-step sequence, whose samples lie along the second axis)."""
    member = f"{key}.npy"
    if [i.filename for i in z.infolist()].count(member) > 1:
        raise error(f"{src}: array {key!r} appears more than once in the archive")
    with z.open(member) as f:
        shape, fortran, dtype = _header(f, src, key, error)
        if dtype.hasobject or dtype.fields is not None:
            raise error(f"{src}: array {key!r} has dtype {dtype}; expected plain numbers")
        read_all = check(shape, dtype) is True
        n = shape[0] if rows is None or read_all else min(rows, shape[0])
        per = math.prod(shape[1:])
        nbytes = (math.prod(shape) if fortran else n * per) * dtype.itemsize
        if nbytes > MAX_BYTES:
            raise error(f"{src}: array {key!r} needs {nbytes} bytes, more than the limit of {MAX_BYTES} "
                        f"(read fewer images with --limit)")
        data = f.read(nbytes)
    if len(data) < nbytes:
        raise error(f"{src}: array {key!r} is truncated ({len(data)} of {nbytes} bytes)")
    if fortran:
        return np.frombuffer(data, dtype).reshape(shape[::-1]).transpose()[:n]
    return np.frombuffer(data, dtype).reshape((n,) + tuple(shape[1:]))


def read_inputs(path: str | os.PathLike, error: type[Exception], limit: int | None = None,
                shape: tuple[int, ...] | None = None, classes: int | None = None,
                need_labels: bool = False, steps: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (and ``y``) of ``path`` under the gate's checks; ``shape`` is the network's per-sample input.

    With ``steps`` (and ``shape``), ``x`` may also be a per-step sequence [steps, N, *shape] (spikes or
    currents at every step); then ``limit`` counts samples along its second axis."""
    src = str(path)
    if limit is not None and limit < 1:
        raise error(f"--limit must be >= 1, got {limit}")
    if not Path(path).is_file():
        raise error(f"{src}: no such file")
    full_n = []
    sequence = []

    def check_x(xs, dtype):
        if not np.issubdtype(dtype, np.floating):
            raise error(f"{src}: 'x' must be floating point, got {dtype}")
        if steps is not None and shape is not None and len(xs) == len(shape) + 2:
            if xs[0] != steps:
                raise error(f"{src}: 'x' is a sequence of {xs[0]} steps, the network runs {steps}")
            if xs[1] < 1 or tuple(xs[2:]) != tuple(shape):
                raise error(f"{src}: 'x' has shape {tuple(xs)}, the network expects [{steps}, N, "
                            f"{', '.join(map(str, shape))}] with N >= 1")
            sequence.append(True)
            full_n.append(xs[1])
            return True
        if len(xs) != (len(shape) + 1 if shape is not None else 4):
            raise error(f"{src}: 'x' must be [N,{','.join('CHW') if shape is None or len(shape) == 3 else 'F'}], "
                        f"got shape {tuple(xs)}")
        if xs[0] < 1:
            raise error(f"{src}: 'x' holds no images (shape {tuple(xs)})")
        if shape is not None and tuple(xs[1:]) != tuple(shape):
            raise error(f"{src}: 'x' has images of shape {tuple(xs[1:])}, the network expects {tuple(shape)}")
        full_n.append(xs[0])

    def check_y(ys, dtype):
        if dtype == np.bool_ or not np.issubdtype(dtype, np.integer):
            raise error(f"{src}: labels 'y' must be integers, got dtype {dtype}")
        if len(ys) != 1 or ys[0] != full_n[0]:
            raise error(f"{src}: labels 'y' must be [N] with N = {full_n[0]} (as 'x'), got shape {tuple(ys)}")

    try:
        with zipfile.ZipFile(path) as z:
            names = [i.filename[:-4] for i in z.infolist() if i.filename.endswith(".npy")]
            if "x" not in names:
                raise error(f"{src}: no array 'x' (found: {', '.join(names) or 'nothing'})")
            x = _read_rows(z, src, "x", limit, error, check_x)
            if sequence:
                x = x[:, :limit]
            y = _read_rows(z, src, "y", limit, error, check_y) if "y" in names else None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, error):
            raise
        raise error(f"{src}: not a readable .npz file ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if need_labels and y is None:
        raise error(f"{src}: no labels 'y' to measure accuracy against")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)    # values beyond float32's range become Inf and are refused below
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0, 0])
        raise error(f"{src}: 'x' has {int(bad.sum())} non-finite values (NaN or Inf; first in image {first})")
    if y is not None:
        y = y.astype(np.int64)
        if classes is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise error(f"{src}: labels 'y' must lie in [0, {classes}), got {int(y.min())}..{int(y.max())}")
    return x, y
