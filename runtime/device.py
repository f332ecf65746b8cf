"""Which torch device a run uses: ``cpu`` or ``cuda[:N]``; the same code and the same integers on both."""
from __future__ import annotations

import torch

from lmhtc.compiler.errors import LmhtcError


def resolve_device(name: str) -> str:
    """``name`` checked against what this machine has (a one-line error otherwise); returns the canonical name."""
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise LmhtcError(f"--device {name!r}: not a device (use cpu or cuda[:N])") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise LmhtcError(f"--device {name!r}: only cpu and cuda are supported")
    if not torch.cuda.is_available():
        raise LmhtcError(f"--device {name!r}: no CUDA device is available on this machine")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise LmhtcError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return str(dev)
