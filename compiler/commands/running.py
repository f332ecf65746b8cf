"""Commands that run an artifact on inputs: ``simulate``, ``sweep``, ``verify``, ``report``, ``sensitivity``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import LmhtcError
from ..lowering import require_graph
from .common import (ProgressOpt, ResumeOpt, SchedulerOpt, WorkersOpt, artifact_inputs, limited, load_inputs, on_dask,
                     sharded, user_errors)


@user_errors
def simulate(
    artifact: Path = typer.Argument(..., help="compiled artifact"),
    inputs: Path = typer.Option(..., help=".npz with x [N,C,H,W] float32 (and optionally y)"),
    output: Path = typer.Option(..., "-o", "--output", help=".npz to write"),
    mode: str = typer.Option("float", help="float (the reference executor) or int (the bit-accurate runtime)"),
    graph: str = typer.Option("compiled", help="compiled or source"),
    limit: Optional[int] = typer.Option(None, help="simulate the first N images only"),
    batch_size: int = typer.Option(64),
    device: str = typer.Option("cpu", help="cpu or cuda[:N]: where --mode int runs (the same integers on both)"),
    progress: ProgressOpt = True,
    workers: WorkersOpt = None, scheduler: SchedulerOpt = None, resume: ResumeOpt = None,
):
    """Run an artifact on inputs; write logits, per-step outputs and per-layer spike counts."""
    from ..artifact import load_artifact
    from ..atomic import save_npz_atomic
    from ..jobs import Simulate
    from ..pipeline import simulate_arrays
    from ..sources import open_inputs

    if mode not in ("float", "int"):
        raise LmhtcError(f"--mode must be float or int, got {mode!r}")
    if mode == "int":
        from lmhtc.runtime.device import resolve_device

        device = resolve_device(device)
    elif device != "cpu":
        raise LmhtcError("--device applies to --mode int only")
    graphs, _ = load_artifact(artifact)
    run_graph = require_graph(graphs, "int" if mode == "int" else "float", artifact, float_graph=graph)
    if on_dask(workers, scheduler, resume):     # whole batches as shards; the same integers, the same floats
        source = open_inputs(inputs, limit)
        y = source.labels()
        r = sharded(Simulate(mode, "integer" if mode == "int" else graph), artifact, source, batch_size, workers,
                    scheduler, resume, progress, graphs)
        r.pop("kernels", None)
        arrays = {k: np.array(v) if isinstance(v, list) else v for k, v in r.items()}
        logits = arrays["logits"]
    else:
        x, y = artifact_inputs(inputs, run_graph, limit,
                                sequences=mode == "float" or run_graph.input.encoding == "sequence")
        arrays, logits = simulate_arrays(graphs, x, mode, graph, batch_size, artifact, progress=progress,
                                         device=device)
    if mode == "int" and arrays["saturation"].sum():
        sat = arrays["saturation"]
        typer.echo(f"warning: {int(sat.sum())} membrane saturation events "
                   f"(per layer: {dict(zip(arrays['layer_names'].tolist(), sat.sum(0).tolist()))})")
    save_npz_atomic(output, **arrays)
    typer.echo(f"wrote {output}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()
                                                  if k in ("logits", "outputs", "spike_counts", "sops")))
    if y is not None:
        typer.echo(f"accuracy: {100 * float((logits.argmax(1) == y).mean()):.2f} %")


@user_errors
def sweep(
    artifact: Path = typer.Argument(..., help="compiled artifact"),
    inputs: Path = typer.Option(..., help=".npz with x [N,C,H,W] and labels y"),
    bits: str = typer.Option("4,6,8,10,12,16", help="weight widths to try, comma separated"),
    calib: Optional[Path] = typer.Option(None, help=".npz with x: calibration data for the integer lowering"),
    calib_limit: int = typer.Option(256),
    limit: Optional[int] = typer.Option(None, help="use the first N images only"),
    plot: Optional[Path] = typer.Option(None, help="write the accuracy-vs-bits plot (PNG)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the table as JSON"),
    methods: str = typer.Option("auto", help="lowering methods to compare, comma separated (auto,maxabs,bias,mse,mse-ta)"),
    spikes: bool = typer.Option(False, "--spikes", help="also measure spike agreement of the first and last neuron layer"),
    batch_size: int = typer.Option(64),
    progress: ProgressOpt = True,
    workers: WorkersOpt = None, scheduler: SchedulerOpt = None, resume: ResumeOpt = None,
):
    """Integer accuracy vs float LM-HT accuracy over weight widths, plus the widest setting."""
    import json

    from ..artifact import load_artifact
    from ..atomic import atomic_write
    from ..jobs import Sweep
    from ..pipeline import float_graph_name
    from ..presentation import print_sweep
    from ..sources import open_inputs
    from ..sweep import finish_sweep

    try:
        widths = sorted({int(b) for b in bits.split(",") if b.strip()})
    except ValueError:
        raise LmhtcError(f"--bits must be comma-separated integers, got {bits!r}") from None
    if not widths or min(widths) < 2 or max(widths) > 16:
        raise LmhtcError(f"--bits must lie between 2 and 16, got {bits!r}")
    from ..passes.quantize import METHODS

    chosen = tuple(dict.fromkeys(m.strip() for m in methods.split(",") if m.strip()))
    if not chosen or any(m not in METHODS and m != "auto" for m in chosen):
        raise LmhtcError(f"--methods must be a comma-separated subset of auto, {', '.join(METHODS)}, got {methods!r}")
    graphs, meta = load_artifact(artifact)
    base = graphs[float_graph_name(graphs, "compiled", artifact)]
    if not on_dask(workers, scheduler, resume):
        artifact_inputs(inputs, base, limit, need_labels=True)        # the input gate, before any work
        if calib is not None:
            load_inputs(calib, calib_limit, tuple(base.input.input_shape))
    source = open_inputs(inputs, limit)
    y = source.labels()
    if y is None:
        raise LmhtcError(f"{inputs}: no labels 'y' to measure accuracy against")
    job = Sweep(tuple(widths), True, None if calib is None else open_inputs(calib, calib_limit), chosen, spikes)
    rec = sharded(job, artifact, source, batch_size, workers, scheduler, resume, progress, graphs)
    result = finish_sweep(rec, y, job.configs())
    print_sweep(f"{artifact.name}: integer runtime vs float LM-HT on {result.images} images "
                f"(float LM-HT {100 * result.float_source_accuracy:.2f} %, "
                f"float compiled {100 * result.float_compiled_accuracy:.2f} %)", result, spikes)
    if plot is not None:
        from ..plots import plot_bits_sweep

        plot_bits_sweep(result, plot, f"{meta.get('model_spec', {}).get('arch', artifact.name)}: accuracy vs weight bits")
        typer.echo(f"wrote {plot}")
    if json_out is not None:
        text = json.dumps(result.to_json(), indent=2)
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(text))


@user_errors
def verify(
    artifact: Path = typer.Argument(..., help="compiled artifact"),
    inputs: Path = typer.Option(..., "--inputs", help=".npz with x [N,C,H,W]"),
    targets: Optional[str] = typer.Option(None, "--targets",
                                          help="comma-separated: float,int,onnx,onnx-int,lava "
                                               "(default: every target the artifact can run)"),
    limit: Optional[int] = typer.Option(None, help="use the first N inputs"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the comparison as JSON"),
    batch_size: int = typer.Option(64),
    progress: ProgressOpt = True,
    workers: WorkersOpt = None, scheduler: SchedulerOpt = None, resume: ResumeOpt = None,
):
    """Run the targets on the same inputs and compare them pair by pair; exit 1 if a bit-exact pair differs."""
    import json

    from ..artifact import load_artifact
    from ..atomic import atomic_write
    from ..finite import naming_file
    from ..presentation import print_verify
    from ..verify import check_runnable, default_targets, parse_targets

    graphs, _ = load_artifact(artifact)
    names = parse_targets(targets) if targets is not None else default_targets(graphs)
    if len(names) < 2:
        check_runnable("onnx", graphs)      # names the kind that leaves only one target
        raise LmhtcError(f"{artifact}: only the {names[0]} target runs this artifact; nothing to compare")
    for name in names:
        check_runnable(name, graphs)        # a target that cannot run this artifact is refused before any work
    dask = on_dask(workers, scheduler, resume)
    if targets is None and "lava" in names and dask:
        names.remove("lava")
        typer.echo("note: lava is left out on Dask workers (it needs the 'fork' start method); verify it in-process")
    if "lava" in names and dask:
        raise LmhtcError("--targets lava cannot run on Dask workers (Lava's runtime needs the 'fork' start method, "
                         "Dask workers use 'spawn'); verify lava in-process, or leave it out of --targets")
    with naming_file(artifact):          # a runner's non-finite outputs name its target; the file is added here
        runs, pairs, n_inputs = _verify_runs(artifact, inputs, graphs, names, limit, batch_size, progress, dask,
                                             workers, scheduler, resume)
    print_verify(n_inputs, runs, pairs)
    if json_out is not None:
        doc = {"artifact": str(artifact), "inputs": n_inputs, "targets": names,
               "seconds": {r.name: r.seconds for r in runs}, "pairs": [p.to_json() for p in pairs]}
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=2)))
    failed = [f"{p.a} vs {p.b}" for p in pairs if p.failed]
    if failed:
        typer.echo(f"FAILED: bit-exact pairs differ: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
    typer.echo("ok: every integer pair is bit-exact" if any(p.required for p in pairs) else "ok")


def _verify_runs(artifact, inputs, graphs, names, limit, batch_size, progress, dask, workers, scheduler, resume):
    """verify's runs: (target runs, compared pairs, number of inputs), in-process for per-step sequences,
    else through the shard runner (in-process or on Dask)."""
    from ..jobs import Verify
    from ..sources import open_inputs
    from ..verify import runs_and_pairs
    from ..verify import verify as verify_runs

    graph = next(iter(graphs.values()))
    if graph.input.encoding == "sequence":     # an imported NIR network: per-step sequences, in-process
        if dask:
            raise LmhtcError(f"{artifact}: a network with per-step inputs is verified in-process; leave out "
                             f"--workers/--scheduler/--resume")
        x, _ = artifact_inputs(inputs, graph, limit, sequences=True)
        runs, pairs = verify_runs(graphs, x, names, progress=progress, batch_size=batch_size)
        n_inputs = x.shape[1] if x.ndim == len(graph.input.input_shape) + 2 else len(x)
    else:
        if not dask:
            artifact_inputs(inputs, graph, limit)      # the input gate, before any work
        source = open_inputs(inputs, limit)
        record = sharded(Verify(tuple(names)), artifact, source, batch_size, workers, scheduler, resume, progress,
                         graphs)
        runs, pairs = runs_and_pairs(record, names)
        n_inputs = len(source)
    return runs, pairs, n_inputs


@user_errors
def report(
    artifact: Path = typer.Argument(..., help="compiled artifact"),
    inputs: Path = typer.Option(..., help=".npz with x [N,C,H,W] (and optionally y)"),
    mode: Optional[str] = typer.Option(None, help="int (bit-accurate runtime) or float (reference executor); "
                                                  "default: int when the artifact has an integer network"),
    graph: Optional[str] = typer.Option(None, help="float graph for --mode float: compiled (default) or source"),
    energy_model: str = typer.Option("45nm", "--energy-model", help="built-in energy model (45nm, loihi) or a JSON file"),
    hardware: str = typer.Option("loihi2", help="core description for the resource estimate: loihi1, loihi2 or a JSON file"),
    limit: Optional[int] = typer.Option(None, help="use the first N images only"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the report as JSON"),
    plots: Optional[Path] = typer.Option(None, help="directory for the PNG plots"),
    batch_size: int = typer.Option(16),
    progress: ProgressOpt = True,
    workers: WorkersOpt = None, scheduler: SchedulerOpt = None, resume: ResumeOpt = None,
):
    """SOPs, energy and hardware resources of an artifact's network, per layer and in total, measured on inputs."""
    import json

    from ..artifact import load_artifact
    from ..atomic import atomic_write
    from ..cost.energy import load_energy_model
    from ..cost.hardware import load_hardware
    from ..cost.dynamic import Activity
    from ..jobs import Report
    from ..pipeline import cost_graph_name
    from ..report import build_report, print_report, report_from_activity
    from ..sources import open_inputs

    energy = load_energy_model(energy_model)      # bad options fail before any work
    core = load_hardware(hardware)
    if plots is not None and plots.exists() and not plots.is_dir():
        raise LmhtcError(f"{plots}: --plots needs a directory, and this is a file")
    if mode not in (None, "int", "float"):
        raise LmhtcError(f"--mode must be int or float, got {mode!r}")
    graphs, meta = load_artifact(artifact)
    mode, graph = cost_graph_name(graphs, mode, graph, artifact)
    from ..cost.fanout import cost_graph

    cg = cost_graph(graphs[graph])       # a graph the cost passes cannot count fails before any input is read
    spec = meta.get("model_spec", {})
    info = {"artifact": artifact.name, "arch": spec.get("arch")}
    if on_dask(workers, scheduler, resume):
        source = open_inputs(inputs, limit)
        activity = Activity(**sharded(Report(mode, graph), artifact, source, batch_size, workers, scheduler, resume,
                                      progress, graphs))
        result = report_from_activity(graphs[graph], activity, energy, core, y=source.labels(), graph_name=graph,
                                      meta=info)
    else:       # in-process: the gate (per-step sequences too, in float mode), then the same per-batch reduction
        x, y = artifact_inputs(inputs, graphs[graph], limit,
                                sequences=mode == "float" or graphs[graph].input.encoding == "sequence")
        result = build_report(graphs[graph], x, mode, energy, core, y=y, graph_name=graph, batch_size=batch_size,
                              progress=progress, meta=info, cg=cg)
    print_report(result)
    if plots is not None:
        from ..report_plots import write_report_plots

        for path in write_report_plots(result, plots):
            typer.echo(f"wrote {path}")
    if json_out is not None:
        text = json.dumps(result, indent=1)
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(text))
        typer.echo(f"wrote {json_out}")


@user_errors
def sensitivity(
    artifact: Path = typer.Argument(..., help="compiled artifact"),
    inputs: Path = typer.Option(..., help=".npz with x [N,C,H,W]: the data agreement is measured on"),
    bits: int = typer.Option(4, help="the width of the one layer under test (the rest: widest setting)"),
    calib: Optional[Path] = typer.Option(None, help=".npz with x: calibration data for the integer lowering"),
    calib_limit: int = typer.Option(256),
    limit: Optional[int] = typer.Option(None, help="use the first N images only"),
    quant_method: str = typer.Option("auto", "--quant-method", help="auto (mse-ta below 8 bits, bias from 8), maxabs, bias, mse or mse-ta"),
    plot: Optional[Path] = typer.Option(None, help="write the per-layer plot (PNG)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the table as JSON"),
    progress: ProgressOpt = True,
):
    """Per-layer sensitivity: each layer alone at --bits, the rest widest; which layer to keep wider."""
    from ..sensitivity_report import sensitivity_command

    sensitivity_command(artifact, inputs, bits, calib, calib_limit, limit, quant_method, plot, json_out, progress,
                        load_inputs, limited)
