"""JSON from files a user gives: bounded size and nesting, and every failure one line naming the file.

Standard library only (an exported Lava ``run.py`` uses it). Invariant: ``loads_json`` returns a value
nested at most ``MAX_DEPTH`` deep from at most ``MAX_BYTES`` of text, or raises ``error`` with a message
that starts with the source's name; it never raises RecursionError, UnicodeDecodeError or MemoryError.
"""
from __future__ import annotations

import json
import os

MAX_BYTES = 256 * 2 ** 20       # a manifest of the largest zoo network is ~1 MB
MAX_DEPTH = 64                  # lmhtc's own documents nest at most ~8 deep


def depth(value) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), computed without recursion."""
    best, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        best = max(best, d)
        if isinstance(v, dict):
            stack.extend((c, d + 1) for c in v.values())
        elif isinstance(v, list):
            stack.extend((c, d + 1) for c in v)
    return best


def loads_json(data: bytes | str, source: str, what: str, error: type[Exception]):
    """Parse ``data`` (the text of ``what`` in ``source``) under the size and depth limits."""
    if len(data) > MAX_BYTES:
        raise error(f"{source}: {what} is {len(data)} bytes, more than the limit of {MAX_BYTES}")
    try:
        value = json.loads(data)
    except RecursionError:
        raise error(f"{source}: {what} is nested too deeply (limit {MAX_DEPTH} levels)") from None
    except UnicodeDecodeError as exc:
        raise error(f"{source}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{source}: {what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except MemoryError:
        raise error(f"{source}: {what} does not fit in memory") from None
    if depth(value) > MAX_DEPTH:
        raise error(f"{source}: {what} is nested too deeply (limit {MAX_DEPTH} levels)")
    return value


def read_json(path: str | os.PathLike, what: str, error: type[Exception]):
    """``loads_json`` of a file; the size limit applies before the file is read."""
    try:
        size = os.stat(path).st_size
        if size > MAX_BYTES:
            raise error(f"{path}: {what} is {size} bytes, more than the limit of {MAX_BYTES}")
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or type(exc).__name__})") from None
    return loads_json(data, str(path), what, error)
