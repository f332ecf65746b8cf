"""Integer ONNX: how the emitters walk a T-GIM matrix — its columns (per window, the static input's row
sums, or per step) and its rows (each distinct row emitted once; zero rows after the first step give no
current). Shared by the plain mix (``onnx_int``) and the affine one (``onnx_int_affine``).

Invariant: ``mix_columns`` gives the matrix whose product with the emitted inputs is ``Ω·y`` of the
contract (``semantics.temporal_mix``): columns that are equal on a window collapse to one only where the
input is that window's sum.
"""
from __future__ import annotations

import numpy as np


def mix_columns(node, w_in: int, n_inputs: int) -> np.ndarray:
    """The T-GIM matrix as the emitters apply it: one column per input tensor — per window (``w_in`` > 1:
    omega is constant on a window's columns), the static input's row sums, or per step."""
    omega = np.asarray(node.omega, np.int64)
    if w_in > 1:
        return omega[:, ::w_in]
    return omega.sum(1, keepdims=True) if n_inputs == 1 else omega


def per_row(omega: np.ndarray, steps: int, zero_rows: bool, emit) -> list[str | None]:
    """``emit(row)`` for each step's row of ``omega`` (a tuple of ints), once per distinct row; with
    ``zero_rows`` a zero row after the first step gives None (a zero current)."""
    done: dict[tuple, str] = {}
    out: list[str | None] = []
    for t in range(steps):
        row = tuple(int(v) for v in omega[t])
        if zero_rows and t > 0 and not any(row):
            out.append(None)
            continue
        if row not in done:
            done[row] = emit(row)
        out.append(done[row])
    return out
