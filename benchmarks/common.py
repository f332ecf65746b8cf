"""Shared helpers of the benchmarks: timing loops and the fixture location."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("LMHTC_FIXTURES", REPO.parent / "shared" / "fixtures"))


def time_call(fn: Callable[[], object], min_seconds: float = 2.0, min_reps: int = 2) -> float:
    """Mean wall time of ``fn()`` over repetitions (after one warm-up call) lasting at least ``min_seconds``."""
    fn()
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_seconds:
        fn()
        reps += 1
    return (time.perf_counter() - start) / reps
