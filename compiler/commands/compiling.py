"""Commands that build and read artifacts: ``compile``, ``exactness``, ``inspect``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import LmhtcError
from .common import (ArchOpt, ClassesOpt, LevelsOpt, ProgressOpt, RecipeOpt, ResumeOpt, SchedulerOpt, ShapeOpt,
                     StepsOpt, WorkersOpt, artifact_inputs, load_inputs, on_dask, sharded, spec_from_flags,
                     user_errors)


@user_errors
def compile_cmd(
    checkpoint: Path = typer.Argument(..., help="checkpoint (.pth): lmhtc zoo (with sidecar) or the authors' format"),
    output: Path = typer.Option(..., "-o", "--output", help="artifact file to write (.lmhtc)"),
    arch: ArchOpt = None, levels: LevelsOpt = None, timesteps: StepsOpt = None, recipe: RecipeOpt = None,
    num_classes: ClassesOpt = None, input_shape: ShapeOpt = None,
    no_reparam: bool = typer.Option(False, "--no-reparam", help="keep the M-HT neurons (compile the network as trained)"),
    reparam: Optional[str] = typer.Option(None, "--reparam",
                                          help="window schedule: exact (front-loaded, lossless) or uniform (the "
                                               "authors' I/L per step); default: see README"),
    check: Optional[Path] = typer.Option(None, help=".npz with x: measure the reparameterization's exactness on it"),
    check_limit: int = typer.Option(32, help="images of --check to use"),
    calib: Optional[Path] = typer.Option(None, help=".npz with x: calibration data for the integer lowering"),
    calib_limit: int = typer.Option(256, help="images of --calib to use"),
    weight_bits: Optional[int] = typer.Option(None, help="integer weight mantissa bits, 2-16 (default 8)"),
    per_layer: bool = typer.Option(False, "--per-layer", help="one weight scale per layer (default: per output channel)"),
    quant_method: Optional[str] = typer.Option(None, "--quant-method",
                                               help="auto (default: mse-ta below 8 bits, bias from 8), maxabs, "
                                                    "bias, mse or mse-ta; see README"),
    mixed_precision: Optional[float] = typer.Option(None, "--mixed-precision",
                                                    help="argmax-agreement budget (0-1] on --calib: layers start at "
                                                         "--weight-bits and the most sensitive widen to 8 bits"),
    no_int: bool = typer.Option(False, "--no-int", help="skip the integer lowering"),
    progress: ProgressOpt = True,
):
    """Compile a checkpoint to an lmhtc artifact (BN folding, reparameterization, integer lowering)."""
    from .. import pipeline
    from ..artifact import save_artifact
    from ..presentation import lowering_line, mixed_precision_line, print_exactness

    if check is not None and no_reparam:
        raise LmhtcError("--check measures a reparameterization; it cannot be used with --no-reparam")
    schedule = pipeline.window_schedule(reparam, keep_mht=no_reparam)
    spec = spec_from_flags(checkpoint, arch, levels, timesteps, recipe, num_classes, input_shape)
    config = pipeline.quant_config(weight_bits, not per_layer, quant_method)    # bad options fail before any work
    pipeline.check_mixed_precision(mixed_precision, calib is not None, config)
    shape = spec.input_shape
    cx = None if calib is None or no_int else load_inputs(calib, calib_limit, shape)[0]
    cxy = None if check is None else load_inputs(check, check_limit, shape, spec.num_classes)
    graphs = pipeline.compile_checkpoint(checkpoint, spec, reparam=not no_reparam,
                                         schedule=schedule or pipeline.DEFAULT_SCHEDULE)
    meta = pipeline.artifact_meta(spec, graphs, not no_reparam)
    compiled = graphs["compiled"]
    typer.echo(f"{spec.arch}: {len(compiled.neuron_layers())} neuron layers, L={spec.levels}, T={spec.timesteps} "
               f"-> {'LIF' if not no_reparam else 'M-HT'} network over {compiled.steps} steps "
               f"(passes: {', '.join(compiled.meta.get('passes', []))})")
    if check is not None:
        from ..exactness import exactness_report

        report = exactness_report(graphs["source"], compiled, cxy[0], progress=progress)
        meta["exactness"] = report.to_json()
        print_exactness(report)
    if not no_int:
        required = pipeline.lowering_required(None, calib is not None,
                                              weight_bits is not None or quant_method is not None)
        if mixed_precision is not None:
            config, meta["mixed_precision"], mp = pipeline.mixed_precision(compiled, cx, config, mixed_precision,
                                                                           progress)
            typer.echo(mixed_precision_line(mp, config.weight_bits, mixed_precision))
        integer, why_not = pipeline.lower_integer(compiled, config, cx, required=required, progress=progress)
        if integer is None:
            typer.echo(f"note: no integer lowering ({why_not}); the artifact holds the float network only")
        else:
            graphs["integer"] = integer
            typer.echo(lowering_line(integer.meta["quantization"]))
    save_artifact(output, graphs, meta)
    typer.echo(f"wrote {output}")


@user_errors
def exactness(
    artifact: Path = typer.Argument(..., help="compiled artifact"),
    inputs: Path = typer.Option(..., help=".npz with x [N,C,H,W]"),
    limit: Optional[int] = typer.Option(None, help="use the first N images only"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the report as JSON"),
    compare_schedules: bool = typer.Option(True, "--compare-schedules/--no-compare-schedules",
                                           help="also measure the other window schedule(s) on the same data"),
    batch_size: int = typer.Option(32),
    progress: ProgressOpt = True,
    workers: WorkersOpt = None, scheduler: SchedulerOpt = None, resume: ResumeOpt = None,
):
    """Measure how exact an artifact's reparameterization is, layer by layer, on data."""
    import json

    from ..artifact import load_artifact
    from ..atomic import atomic_write
    from ..exactness import finish_exactness
    from ..jobs import Exactness
    from ..passes.reparameterize import SCHEDULES
    from ..presentation import print_exactness, print_schedule_comparison
    from ..sources import open_inputs

    graphs, _ = load_artifact(artifact)
    if "compiled" not in graphs or "source" not in graphs or not graphs["compiled"].meta.get("reparameterized"):
        raise LmhtcError(f"{artifact}: was compiled with --no-reparam; there is no reparameterization to measure")
    if on_dask(workers, scheduler, resume):
        source = open_inputs(inputs, limit)
    else:
        artifact_inputs(inputs, graphs["compiled"], limit)          # the input gate, before any work
        source = open_inputs(inputs, limit)
    schedule = str(graphs["compiled"].meta.get("schedule"))
    job = Exactness(tuple(n for n in SCHEDULES if n != schedule) if compare_schedules else ())
    rec = sharded(job, artifact, source, batch_size, workers, scheduler, resume, progress, graphs)
    report = finish_exactness(rec["main"])
    print_exactness(report)
    others = {name: finish_exactness(r) for name, r in rec["others"].items()}
    if compare_schedules:
        print_schedule_comparison({report.schedule: report, **others})
    if json_out is not None:
        doc = report.to_json()
        if others:
            doc["other_schedules"] = {name: r.to_json() for name, r in others.items()}
        text = json.dumps(doc, indent=2)
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(text))


@user_errors
def inspect(artifact: Path = typer.Argument(..., help="compiled artifact"),
            graph: str = typer.Option("compiled", help="compiled or source")):
    """Print an artifact's layer table."""
    from ..artifact import load_artifact
    from ..ir import summary_rows
    from ..presentation import print_layer_table

    graphs, meta = load_artifact(artifact)
    if graph not in graphs:
        raise LmhtcError(f"{artifact}: no graph {graph!r} (has: {', '.join(graphs)})")
    g = graphs[graph]
    spec = meta.get("model_spec", {})
    rows = summary_rows(g)
    title = (f"{artifact.name}: {spec.get('arch', '?')} ({spec.get('recipe', '?')} recipe), {graph} graph, "
             f"{g.steps} steps, {'reparameterized, ' + str(g.meta.get('schedule')) + ' schedule' if g.meta.get('reparameterized') else 'M-HT neurons'}")
    if "nir" in meta:   # imported with import-nir
        title = (f"{artifact.name}: NIR graph ({meta['nir']['dialect']} dialect, dt {meta['nir']['dt']:g} s, "
                 f"reset {meta['nir']['reset']}), {graph} graph, {g.steps} steps")
    print_layer_table(title, rows)
    if "exactness" in meta:
        ex = meta["exactness"]
        typer.echo(f"exactness at compile time: {100 * ex['fraction']:.4f} % of (neuron, window) pairs exact "
                   f"on {ex['images']} images")
