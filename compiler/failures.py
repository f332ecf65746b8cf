"""How a CLI command fails: always one line, never a traceback.

Invariant: ``one_line_failure`` maps any exception to (line, exit status): a user's bad input
(LmhtcError, an OSError naming its file, undecodable text, nesting too deep, input too large for memory)
is ``error: ...`` with status 2; anything else is a bug in lmhtc, ``internal error: ...`` with status 3
and the place it was raised, so it can be reported. ``run_guarded`` runs a command with its input
paths registered for the output rule, its shared numeric flags (compiler/flags.py) and its outputs
checked before any work.
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path

from .atomic import check_output, command_inputs
from .errors import LmhtcError
from .flags import check_flags

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3
CHECKPOINT_PARAMS = ("checkpoint", "ann")     # inputs that come with a JSON sidecar


def _squash(text: str) -> str:
    return " ".join(str(text).split())


def one_line_failure(exc: BaseException) -> tuple[str, int]:
    """The line to print for ``exc`` and the exit status."""
    if isinstance(exc, LmhtcError):
        return f"error: {_squash(exc)}", EXIT_USER_ERROR
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"error: {where}{_squash(exc.strerror or exc)}", EXIT_USER_ERROR
    if isinstance(exc, UnicodeDecodeError):
        return f"error: a text input is not UTF-8 ({_squash(exc.reason)} at byte {exc.start})", EXIT_USER_ERROR
    if isinstance(exc, RecursionError):
        return "error: an input is nested too deeply to process", EXIT_USER_ERROR
    if isinstance(exc, MemoryError):
        return "error: an input is too large for the available memory", EXIT_USER_ERROR
    frames = traceback.extract_tb(exc.__traceback__)
    at = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return (f"internal error: {type(exc).__name__}: {_squash(exc)[:300]}{at} (a bug in lmhtc; please report it)",
            EXIT_INTERNAL_ERROR)


def _command_paths(kwargs: dict, outputs: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """(inputs, outputs) among a command's arguments; an input checkpoint's sidecar is an input too."""
    ins, outs = [], []
    for name, value in kwargs.items():
        if isinstance(value, str) and name in ("energy_model", "hardware") and os.path.isfile(value):
            value = Path(value)
        if not isinstance(value, Path):
            continue
        if name in outputs:
            outs.append(value)
        else:
            ins.append(value)
            if name in CHECKPOINT_PARAMS and value.suffix != ".json":
                ins.append(value.with_suffix(".json"))
    return [p for p in ins if os.path.lexists(p)], outs


def run_guarded(fn, args: tuple, kwargs: dict, outputs: tuple[str, ...]):
    """Call ``fn`` with its input paths registered; every output path is checked before the command runs."""
    check_flags(kwargs)
    ins, outs = _command_paths(kwargs, outputs)
    with command_inputs(ins):
        for out in outs:
            check_output(out, directory=True)     # the writers themselves insist on regular files
        return fn(*args, **kwargs)
