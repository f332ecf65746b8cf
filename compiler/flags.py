"""Bounds of the numeric flags every command shares, checked before a command does any work.

Invariant: a command runs only when each of these flags, if given, is an integer within its bounds;
otherwise one line names the flag, its value and the range. The bounds keep allocations sane
(``-L 10^9`` would need 15 GiB) and rule out empty or negative batches.
"""
from __future__ import annotations

import math

from .errors import LmhtcError
from .graph_checks import MAX_LEVELS, MAX_STEPS

BOUNDS: dict[str, tuple[str, int, int]] = {      # parameter name → (flag, lowest, highest)
    "batch_size": ("--batch-size", 1, 2 ** 16),
    "levels": ("--levels", 1, MAX_LEVELS),
    "timesteps": ("--timesteps", 1, MAX_STEPS),
    "limit": ("--limit", 1, 2 ** 40),
    "calib_limit": ("--calib-limit", 1, 2 ** 40),
    "check_limit": ("--check-limit", 1, 2 ** 40),
    "num_classes": ("--num-classes", 1, 2 ** 20),
    "epochs": ("--epochs", 1, 10 ** 6),
}


def check_flags(kwargs: dict) -> None:
    """Refuse (one line) a shared numeric flag outside its bounds."""
    for name, (flag, lo, hi) in BOUNDS.items():
        value = kwargs.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and not lo <= value <= hi:
            raise LmhtcError(f"{flag} must be between {lo} and {hi}, got {value}")


def parse_sizes(text: str | None, example: str, rank: int | None = None) -> tuple[int, ...] | None:
    """``--input-shape`` as positive sizes (``rank`` of them when given, e.g. C,H,W), at most 2^16 each and
    ``MAX_ELEMENTS`` values per sample; one line naming the flag otherwise."""
    from .graph_checks import MAX_ELEMENTS

    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        raise LmhtcError(f"--input-shape must look like {example}, got {text!r}") from None
    if rank == 3 and (len(shape) != 3 or min(shape) < 1):
        raise LmhtcError(f"--input-shape must be three positive sizes C,H,W, got {text!r}")
    if not shape or min(shape) < 1 or (rank is not None and len(shape) != rank):
        raise LmhtcError(f"--input-shape must be positive sizes, got {text!r}")
    if max(shape) > 2 ** 16 or math.prod(shape) > MAX_ELEMENTS:
        raise LmhtcError(f"--input-shape {text!r} is too large (at most {MAX_ELEMENTS} values per image)")
    return shape
