"""Lava target: the integer network as Lava processes run with ``Loihi2SimCfg(select_tag="fixed_pt")``.

API (the export side imports the compiler lazily, so that ``lmhtc.targets.lava.network`` and an exported
``run.py`` load with numpy and lava only):

* ``export_lava(graph, out_dir, metadata=None) -> Path`` — write a runnable network directory;
* ``run_lava(graph_or_dir, x) -> LavaRunResult`` — build and run the network on a batch of images.

docs/lava-mapping.md describes the mapping.
"""
from __future__ import annotations

import os

import numpy as np

from lmhtc.targets.lava.result import LavaRunResult

__all__ = ["LavaRunResult", "export_lava", "run_lava"]


def export_lava(graph, out_dir: str | os.PathLike, metadata: dict | None = None):
    """Write the integer ``graph`` to ``out_dir`` (network.json, arrays.npz, run.py); see ``export.py``."""
    from lmhtc.targets.lava.export import export_lava as _export

    return _export(graph, out_dir, metadata)


def run_lava(graph_or_dir, x: np.ndarray, conv_model: str = "fast", record_spikes: bool = True,
             progress: bool = False) -> LavaRunResult:
    """Run an integer graph (lowered in memory) or an exported directory on images ``x`` [N, C, H, W].

    Raises LavaExportError for a graph the target cannot express and LavaRunError for a bad directory
    or input (both LmhtcError).
    """
    from lmhtc.targets.lava.description import LavaNetworkError
    from lmhtc.targets.lava.errors import LavaRunError
    from lmhtc.targets.lava.lowering import lower_to_lava
    from lmhtc.targets.lava.network import run_description

    desc = graph_or_dir if isinstance(graph_or_dir, (str, os.PathLike)) else lower_to_lava(graph_or_dir)
    try:
        return run_description(desc, x, conv_model=conv_model, record_spikes=record_spikes, progress=progress)
    except LavaNetworkError as exc:
        raise LavaRunError(str(exc)) from None
