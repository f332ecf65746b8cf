"""The compile pipeline: checkpoint → IR → passes → artifact graphs.

``source``: the network as trained (M-HT neurons, T steps), BatchNorm folded.
``compiled``: what the targets run — ``source`` reparameterized to
single-threshold LIF neurons over L·T steps, or ``source`` itself with
``--no-reparam``.
"""
from __future__ import annotations

import os

from .checkpoint import ModelSpec
from .frontends import checkpoint_to_ir
from .ir import Graph
from .passes import fold_batchnorm, reparameterize
from .passes.reparameterize import DEFAULT_SCHEDULE


def compile_graphs(source: Graph, reparam: bool = True, schedule: str = DEFAULT_SCHEDULE) -> dict[str, Graph]:
    folded = fold_batchnorm(source)
    compiled = reparameterize(folded, schedule) if reparam else folded
    return {"source": folded, "compiled": compiled}


def compile_checkpoint(path: str | os.PathLike, spec: ModelSpec, reparam: bool = True,
                       schedule: str = DEFAULT_SCHEDULE) -> dict[str, Graph]:
    return compile_graphs(checkpoint_to_ir(path, spec), reparam, schedule)
