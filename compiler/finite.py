"""Non-finite outputs (a float graph whose weights overflow float32 on some inputs): one error naming the
layer where the first NaN or Inf appears, for every command that runs a network (simulate, verify, report)
and the Python API.

``check_finite_outputs`` is called on a run's logits; only when they are not finite does it run the float
graph again on the same inputs, watching every node's output (the executor's ``observe`` hook), to find the
first node, in topological order, whose output holds a non-finite value.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .errors import LmhtcError


class NonFiniteOutputs(LmhtcError):
    """A network's outputs hold NaN or Inf; the message names the first layer where one appears."""


class _Found(Exception):
    def __init__(self, node):
        self.node = node


def first_non_finite_node(graph, x, batch_size: int = 64):
    """The first node (in topological order, within the first batch that has one) whose float output holds a
    non-finite value on inputs ``x``; None when every value is finite."""
    import torch

    from .executor import run_float

    def observe(node, ins, out):
        if isinstance(out, torch.Tensor) and out.is_floating_point() and not bool(torch.isfinite(out).all()):
            raise _Found(node)

    try:
        run_float(graph, x, batch_size, observe=observe)
    except _Found as found:
        return found.node
    return None


def check_finite_outputs(logits, graph, x, where: str, what: str = "the network's outputs",
                         batch_size: int = 64) -> None:
    """Raise NonFiniteOutputs (``where``: the file or target) when ``logits`` are not all finite, naming the
    first non-finite layer of the float ``graph`` on ``x`` (the readout, for an integer graph)."""
    if np.isfinite(np.asarray(logits, dtype=np.float64)).all():
        return
    if graph.meta.get("integer") or x is None:
        node = graph.node(next(n.name for n in graph.topo() if n.kind in ("readout", "qreadout")))
    else:
        node = first_non_finite_node(graph, x, batch_size) or graph.node(
            next(n.name for n in graph.topo() if n.kind == "readout"))
    raise NonFiniteOutputs(f"{where}: {what} are not finite on these inputs (the first NaN/Inf appears at layer "
                           f"{node.name!r} ({node.kind}); parameters too large for float32); nothing was written")


@contextmanager
def naming_file(path):
    """Within the block, a NonFiniteOutputs raised by a runner that names only its target also names ``path``
    (the artifact), so the one line says which file and which target."""
    try:
        yield
    except NonFiniteOutputs as exc:
        if str(exc).startswith(f"{path}:"):
            raise
        raise NonFiniteOutputs(f"{path}: {exc}") from None
