"""Handing freed heap memory back to the operating system between the stages of a compile.

glibc keeps what a stage frees (a replaced graph, a calibration batch's activations) in its heap for
reuse, so a process's resident size only grows from stage to stage. ``release_free_memory`` asks glibc
to return the free pages (``malloc_trim(0)``); without glibc it does nothing. It changes no value, only
the resident size that later stages start from.
"""
from __future__ import annotations

import ctypes

try:
    _trim = ctypes.CDLL(None).malloc_trim     # the C library the interpreter is linked with
except (AttributeError, OSError):             # not glibc: nothing to hand back this way
    _trim = None


def release_free_memory() -> None:
    """Return the heap's free pages to the operating system (glibc), else nothing."""
    if _trim is not None:
        _trim(0)
