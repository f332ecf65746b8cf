"""Shared helpers of the benchmarks: timing loops and the fixture location."""
from __future__ import annotations

import os
import platform
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


def machine_line() -> str:
    """The CPU the figures belong to: model, ATen's vector ISA, and whether oneDNN's int8 products add in
    saturating int16 pairs here (no VNNI/AMX: oneDNN then takes pair-safe operands only, and ``_int_mm`` is slow)."""
    import torch

    from lmhtc.runtime.int8 import int16_pairs

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    pairs = "int16 pairs (no VNNI/AMX)" if int16_pairs() else "int32 (VNNI/AMX)"
    return (f"machine: {model}, {os.cpu_count()} CPUs, ATen {torch.backends.cpu.get_cpu_capability()}, "
            f"oneDNN int8 products in {pairs}, torch {torch.__version__}")
