"""Checkpoint frontend: an authors' or zoo checkpoint + its ModelSpec → IR graph (via the zoo and torch.fx)."""
from __future__ import annotations

import gc
import hashlib
import os
from pathlib import Path

from ..checkpoint import ModelSpec, load_snn
from ..ir import Graph
from .torch_fx import trace_to_ir


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_to_ir(path: str | os.PathLike, spec: ModelSpec) -> Graph:
    """Load ``path`` strictly into the zoo network of ``spec`` and lower it to the IR."""
    # what exists now (imported modules) is not garbage: frozen, the collection below scans only the rest
    # (unless the caller froze objects itself: unfreezing would undo that)
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        graph = _trace_checkpoint(path, spec)
    finally:
        if freeze:
            gc.unfreeze()
    return graph


def _trace_checkpoint(path, spec: ModelSpec) -> Graph:
    model = load_snn(path, spec)
    meta = {"source": {"checkpoint": Path(path).name, "sha256": file_sha256(path)},
            "model_spec": spec.to_json(), "levels": spec.levels, "timesteps": spec.timesteps}
    graph = trace_to_ir(model, spec.input_shape, spec.timesteps, meta)
    del model
    gc.collect()    # the module and its fx trace hold reference cycles: free their weights before the passes run
    return graph
