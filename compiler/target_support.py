"""Which targets run the NIR kinds (``lif``, ``scale``, ``sum_pool2d``, ``conv1d``): a target that does not refuses them
before anything runs, with one line naming the node, its kind and the target.

Today only the float executor (``simulate --mode float``, verify's ``float``) and ``export --target nir``
run them; the integer lowering, the integer runtime, float and integer ONNX and Lava do not yet.
"""
from __future__ import annotations

from .errors import LmhtcError
from .ir import Graph

FLOAT_EXECUTOR_ONLY = ("lif", "scale", "sum_pool2d", "conv1d")


def first_unsupported(graph: Graph | None):
    """The first node of ``graph`` whose kind only the float executor runs, or None."""
    if graph is None:
        return None
    return next((n for n in graph.topo() if n.kind in FLOAT_EXECUTOR_ONLY), None)


def refuse_unsupported(graph: Graph | None, target: str) -> None:
    """Raise a one-line LmhtcError when ``target`` cannot run a kind of ``graph``."""
    node = first_unsupported(graph)
    if node is not None:
        raise LmhtcError(f"target {target!r} cannot run node {node.name!r}: the {node.kind} kind has no "
                         f"{target} lowering yet (the float executor and --target nir run it)")
