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
from .passes.manager import run_passes
from .passes.reparameterize import DEFAULT_SCHEDULE


def compile_graphs(source: Graph, reparam: bool = True, schedule: str = DEFAULT_SCHEDULE) -> dict[str, Graph]:
    """``source`` BN-folded, and (``reparam``) reparameterized; each pass runs under its contract."""
    folded = run_passes(source, [("fold_batchnorm", {})])
    compiled = run_passes(folded, [("reparameterize", {"schedule": schedule})]) if reparam else folded
    return {"source": folded, "compiled": compiled}


def compile_checkpoint(path: str | os.PathLike, spec: ModelSpec, reparam: bool = True,
                       schedule: str = DEFAULT_SCHEDULE) -> dict[str, Graph]:
    return compile_graphs(checkpoint_to_ir(path, spec), reparam, schedule)


def artifact_meta(spec: ModelSpec, graphs: dict[str, Graph], reparameterized: bool) -> dict:
    """The metadata an artifact compiled from a checkpoint carries."""
    return {"model_spec": spec.to_json(), "reparameterized": reparameterized,
            "source_checkpoint": graphs["source"].meta.get("source", {})}


# -- pipeline policy shared by the command line and the Python API (lmhtc.api) -------------------



def lower_integer(compiled: Graph, config, calib=None, required: bool = False,
                  progress: bool = False) -> tuple[Graph | None, str | None]:
    """The integer lowering of ``compiled`` with ``config`` (a QuantConfig): (graph, None), or, when it is not
    ``required`` and the network is one the lowering does not cover, (None, the reason)."""
    from .passes.quantize import QuantizeError

    config.check()
    try:
        return run_passes(compiled, [("quantize", {"config": config, "calib": calib, "progress": progress})]), None
    except QuantizeError as exc:
        if required:
            raise
        return None, str(exc)


def float_graph_name(graphs: dict[str, Graph], name: str, artifact) -> str:
    """``name`` when the artifact has that float graph (compiled or source); a one-line error otherwise."""
    from .errors import LmhtcError

    if name not in graphs or name == "integer":
        raise LmhtcError(f"{artifact}: no float graph {name!r} (has: {', '.join(g for g in graphs if g != 'integer')})")
    return name


def simulate_arrays(graphs: dict[str, Graph], x, mode: str, graph: str, batch_size: int, artifact,
                    progress: bool = False, device: str = "cpu") -> tuple[dict, object]:
    """What ``lmhtc simulate`` writes: (the arrays of one run of ``mode`` on ``x``, the run's own logits).

    Float mode runs the float graph ``graph`` with the reference executor; int mode runs the integer
    graph with the bit-accurate runtime and adds the integer logits, SOPs, MACs and saturation counts.
    """
    import numpy as np

    from .errors import LmhtcError

    if mode not in ("float", "int"):
        raise LmhtcError(f"--mode must be float or int, got {mode!r}")
    arrays, logits = _run_arrays(graphs, x, mode, graph, batch_size, artifact, progress, device)
    from .finite import check_finite_outputs

    check_finite_outputs(arrays["outputs"], graphs["integer" if mode == "int" else graph], x, str(artifact),
                         batch_size=batch_size)
    return arrays, logits


def _run_arrays(graphs, x, mode, graph, batch_size, artifact, progress, device="cpu"):
    import numpy as np

    from .errors import LmhtcError

    if mode == "int":
        if "integer" not in graphs:
            raise LmhtcError(f"{artifact}: has no integer network (compiled with --no-int, or not lowerable)")
        from lmhtc.runtime.simulator import run_int

        r = run_int(graphs["integer"], x, batch_size, device=device, progress=progress)
        return dict(logits=r.logits.astype(np.float32), outputs=r.outputs.astype(np.float32),
                    logits_int=r.logits_int, outputs_int=r.outputs_int, spike_counts=r.spike_counts,
                    layer_names=np.array(r.layer_names), sops=r.sops, macs=r.macs, saturation=r.saturation,
                    sops_by_layer_step=r.sops_by_layer_step,
                    synaptic_layer_names=np.array(r.synaptic_layer_names)), r.logits
    from .executor import run_float

    result = run_float(graphs[float_graph_name(graphs, graph, artifact)], x, batch_size, progress=progress)
    return dict(logits=result.logits.astype(np.float32), outputs=result.outputs.astype(np.float32),
                spike_counts=result.spike_counts.astype(np.int64), layer_names=np.array(result.layer_names)), result.logits


def export_model(graphs: dict[str, Graph], meta: dict, target: str, output, artifact, graph: str = "compiled",
                 spikes: bool = False) -> tuple[object, Graph]:
    """Emit ``target`` (a registered target with an export) to ``output``: (the written path, the graph).

    Every refusal (no graph of the target's phase, a node kind it cannot lower) happens before anything
    is written; files are written atomically, directories appear whole."""
    from pathlib import Path

    from . import lowering
    from .atomic import atomic_write
    from .errors import LmhtcError

    exportable = lowering.names(exportable=True)
    if target not in exportable:
        raise LmhtcError(f"--target {target!r}: choose one of {', '.join(exportable)}")
    spec = meta.get("model_spec", {})
    info = {"arch": spec.get("arch", ""), "recipe": spec.get("recipe", ""),
            "timesteps_trained": spec.get("timesteps", "")}
    t = lowering.get_target(target)
    g = lowering.require_graph(graphs, target, artifact, float_graph=graph)
    emit = lowering.target_function(target, "export")
    if t.output == "directory":
        return emit(g, output, info), g
    if t.output == "file":
        return atomic_write(output, lambda tmp: emit(g, tmp)), g
    options = {k: v for k, v in {"spikes": spikes}.items() if k in t.export_options}
    model = emit(g, info, **options)
    return atomic_write(output, lambda tmp: Path(tmp).write_bytes(model.SerializeToString())), g


def describe_export(target: str, out, graph: Graph) -> str:
    """The one-line summary ``lmhtc export`` prints for what it wrote."""
    from . import lowering

    t = lowering.get_target(target)
    if t.output == "directory":
        return f"Lava network ({graph.steps} steps); run it with python {out}/run.py"
    if t.output == "file":
        return f"{t.description}; {len(graph)} nodes"
    import onnx

    model = onnx.load(str(out), load_external_data=False)
    return (f"ONNX opset {model.opset_import[0].version}, IR version {model.ir_version}, {len(model.graph.node)} "
            f"nodes, {graph.steps} steps unrolled")
