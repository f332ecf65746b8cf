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
# Each rule is written once here; ``lmhtc compile``/``report`` and ``lmhtc.compile``/``Artifact.report``
# call the same functions, so a flag and its keyword argument mean the same thing and fail the same way.


def window_schedule(name: str | None, keep_mht: bool = False) -> str | None:
    """The window schedule a compile reparameterizes with: None when the M-HT neurons are kept
    (``keep_mht``; naming a schedule then is an error), the default when ``name`` is None, else ``name``,
    which must be one of the registered schedules (checked before any work)."""
    from .errors import LmhtcError
    from .passes.reparameterize import SCHEDULES

    if keep_mht:
        if name is not None:
            raise LmhtcError("--reparam picks a reparameterization schedule; it cannot be used with --no-reparam")
        return None
    schedule = DEFAULT_SCHEDULE if name is None else name
    if schedule not in SCHEDULES:
        raise LmhtcError(f"--reparam must be one of {', '.join(SCHEDULES)}, got {name!r}")
    return schedule


def quant_config(weight_bits: int | None = None, per_channel: bool = True, method: str | None = None):
    """The checked QuantConfig of the lowering options (None: the defaults, 8-bit weights and ``auto``);
    bad options fail here, before any work."""
    from .passes.quantize import QuantConfig

    config = QuantConfig(weight_bits=8 if weight_bits is None else weight_bits, per_channel=per_channel,
                         **({} if method is None else {"method": method}))
    config.check()
    return config


def lowering_required(integer: bool | None, calib_given: bool, options_given: bool = False) -> bool:
    """Whether a failed integer lowering is an error (True) or a note with the float graphs kept (False):
    required when asked for (``integer`` True), and, when left open (None), whenever calibration data or
    an explicit lowering option was given, since the caller then clearly wants the integer network."""
    return integer if integer is not None else calib_given or options_given


def check_mixed_precision(budget: float | None, calib_given: bool, config) -> None:
    """A mixed-precision ``budget`` needs calibration data, lies in (0, 1] and starts below 8-bit weights."""
    from .errors import LmhtcError

    if budget is not None and (not calib_given or not 0 < budget <= 1 or config.weight_bits >= 8):
        raise LmhtcError("--mixed-precision needs --calib, a budget in (0, 1] and --weight-bits below 8, got "
                         f"{budget} with {'no ' if not calib_given else ''}--calib and "
                         f"--weight-bits {config.weight_bits}")


def mixed_precision(compiled: Graph, calib, config, budget: float, progress: bool = False):
    """(``config`` with the per-layer widths that meet ``budget`` on ``calib``, the artifact's
    ``mixed_precision`` metadata, the MixedPrecision result): layers start at ``config.weight_bits`` and
    the most sensitive widen to 8 bits (compiler/mixed.py)."""
    from dataclasses import replace

    from .mixed import choose_widths

    mp = choose_widths(compiled, calib, config.weight_bits, 8, budget, config.lowering, progress=progress)
    meta = {"budget": budget, "agreement": mp.agreement, "met": mp.met, "layer_bits": dict(mp.layer_bits),
            "sensitivity": mp.sensitivity.to_json()}
    return replace(config, layer_bits=mp.layer_bits), meta, mp


def cost_graph_name(graphs: dict[str, Graph], mode: str | None, graph: str | None, artifact) -> tuple[str, str]:
    """(mode, graph name) a measured run (``report``) uses: ``int`` runs the integer graph and is the
    default when the artifact has one; ``float`` runs the float graph ``graph`` (default ``compiled``).
    A float graph named in int mode, or int mode without an integer graph, is a one-line error."""
    from .errors import LmhtcError
    from .lowering import require_graph

    if mode not in (None, "int", "float"):
        raise LmhtcError(f"--mode must be int or float, got {mode!r}")
    mode = mode or ("int" if "integer" in graphs else "float")
    if mode == "float":
        return mode, float_graph_name(graphs, graph or "compiled", artifact)
    if graph is not None:
        raise LmhtcError("--graph selects a float graph; it applies to --mode float only")
    if "integer" not in graphs:
        require_graph(graphs, "int", artifact)                 # names a node kind without integer lowering
        raise LmhtcError(f"{artifact}: has no integer network (compiled with --no-int, or not lowerable); "
                         f"use --mode float")
    return mode, "integer"


def lower_integer(compiled: Graph, config, calib=None, required: bool = False,
                  progress: bool = False) -> tuple[Graph | None, str | None]:
    """The integer lowering of ``compiled`` with ``config`` (a QuantConfig), annotated with its window plan:
    (graph, None), or, when it is not
    ``required`` and the network is one the lowering does not cover, (None, the reason)."""
    from .passes.quantize import QuantizeError

    config.check()
    try:
        return run_passes(compiled, [("quantize", {"config": config, "calib": calib, "progress": progress}),
                                     ("plan_windows", {})]), None
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
                 spikes: bool = False, products: str = "auto") -> tuple[object, Graph]:
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
    options = {k: v for k, v in {"spikes": spikes, "products": products}.items() if k in t.export_options}
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
