"""``lmhtc import-nir``: a ``.nir`` file → an artifact with the float graph and, where it lowers, its integer graph.

The dialect, dt, reset and comparison come from the flags; a file written by
``lmhtc export --target nir`` records them in its metadata, which fills in the
flags not given. The artifact holds the graph as ``source`` and ``compiled``
(no reparameterization applies) and, as ``compile`` does (the quantize and plan_windows passes:
the integer graph carries its window-plan annotation), ``integer`` when the
integer lowering covers the graph (data-free without ``--calib``); otherwise a
note names the node it stopped at.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .errors import LmhtcError


def parse_input_shape(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """``--input-shape`` as positive sizes of any rank, e.g. ``2,8,8`` or ``16`` (compiler/flags.py)."""
    from .flags import parse_sizes

    return parse_sizes(text, "2,8,8 or 16")


def dialect_for(graph_meta: dict, dialect: Optional[str], dt: Optional[float], reset: Optional[str]):
    """The Dialect from the flags, completed by what an lmhtc-written file records."""
    from .frontends.nir_dialects import make_dialect

    recorded = graph_meta.get("dialect") if graph_meta.get("producer") == "lmhtc" else None
    if dialect is None and recorded is None:
        raise LmhtcError("--dialect is required: a .nir file does not record how it was discretized "
                         "(snntorch, norse, sinabs or generic)")
    name = dialect or str(recorded)
    same = recorded is not None and str(recorded) == name
    return make_dialect(name, dt if dt is not None or not same else float(graph_meta["dt"]),
                        reset if reset is not None or not same else str(graph_meta.get("reset")),
                        str(graph_meta["compare"]) if same and "compare" in graph_meta else None)


def import_nir_command(model: Path, output: Path, dialect: Optional[str], dt: Optional[float],
                       reset: Optional[str], input_shape: Optional[str], steps: int, calib: Optional[Path],
                       calib_limit: int, weight_bits: Optional[int], progress: bool,
                       load_inputs, limited) -> None:
    from .artifact import save_artifact
    from .frontends.checkpoint import file_sha256
    from .frontends.nir import nir_to_ir, read_nir
    from .passes.quantize import QuantConfig, QuantizeError
    from .pipeline import lower_integer
    from .lowering import integer_lowering_gap
    from .passes.quantize import lowering_gap

    if steps < 1:
        raise LmhtcError(f"--steps must be >= 1, got {steps}")
    shape = parse_input_shape(input_shape)
    config = QuantConfig(weight_bits=8 if weight_bits is None else weight_bits)
    config.check()
    nir_graph = read_nir(model)
    d = dialect_for(dict(nir_graph.metadata or {}), dialect, dt, reset)
    graph = nir_to_ir(nir_graph, d, steps, shape, source=str(model))
    cx = None
    if calib is not None:   # [N, *input_shape] or a per-step sequence [steps, N, *input_shape]
        cx = load_inputs(calib, shape=tuple(graph.input.input_shape), steps=steps)[0]
        seq = cx.ndim == len(graph.input.input_shape) + 2
        cx = limited(cx.swapaxes(0, 1) if seq else cx, None, calib_limit)[0]
        cx = cx.swapaxes(0, 1) if seq else cx
    source = {"nir": model.name, "sha256": file_sha256(model)}
    graph.meta["source"] = source
    graphs = {"source": graph, "compiled": graph}
    meta = {"nir": {"dialect": d.name, "dt": d.dt, "reset": d.reset, "compare": d.compare,
                    "reset_timing": d.reset_timing}, "source_nir": source, "reparameterized": False}
    typer.echo(f"{model.name}: {len(graph)} nodes, dialect {d.name} (dt {d.dt:g} s, reset {d.reset}, "
               f"spike v {d.compare} θ), {steps} steps")
    try:
        unsupported = integer_lowering_gap(graph)
        if unsupported is not None:
            raise QuantizeError(f"node {unsupported.name!r} ({unsupported.kind}): {lowering_gap(unsupported)}")
        # the pass pipeline ``compile`` runs: quantize, then plan_windows (the window-plan annotation)
        graphs["integer"] = lower_integer(graph, config, calib=cx, required=True, progress=progress)[0]
    except QuantizeError as exc:
        if calib is not None or weight_bits is not None:
            raise
        meta["no_integer"] = str(exc)
        typer.echo(f"note: no integer lowering ({exc}); the artifact holds the float network only")
    save_artifact(output, graphs, meta)
    typer.echo(f"wrote {output}")
