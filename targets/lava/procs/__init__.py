"""Lava Processes and fixed-point ProcessModels of the lmhtc integer network (numpy and lava only).

Lava's compiler finds a Process's models by importing every module of the
Process's package, so this package holds nothing else: no module here may
import ``compiler`` or torch.

Importing this package prepares ``multiprocessing`` for Lava: Lava's runtime
calls ``multiprocessing.set_start_method('fork')`` when it is first imported,
which fails once anything (tqdm's lock, a Queue) has fixed the start method —
even to 'fork', the Linux default. Unfixing it first lets Lava fix it again.
"""
import multiprocessing as _mp
import sys as _sys

_RUNTIME = "lava.magma.runtime.message_infrastructure.multiprocessing"
if _RUNTIME not in _sys.modules and _sys.platform != "win32":
    _method = _mp.get_start_method(allow_none=True)
    if _method == "fork":
        _mp.set_start_method(None, force=True)
    elif _method is not None:
        raise RuntimeError(f"Lava's runtime needs the 'fork' start method; this process uses {_method!r}")
    import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: E402,F401  (fixes 'fork')
