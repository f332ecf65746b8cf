"""The ``lmhtc`` command line.

Every user error ends in one line on stderr (``error: ...`` naming the file,
layer or key at fault) and exit status 2; no partial output file is left.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from . import __version__
from .errors import LmhtcError
from .lowering import require_graph

ArchOpt = Annotated[Optional[str], typer.Option("--arch", help="architecture (needed without a sidecar; see `lmhtc zoo`)")]
LevelsOpt = Annotated[Optional[int], typer.Option("--levels", "-L", help="threshold levels L")]
StepsOpt = Annotated[Optional[int], typer.Option("--timesteps", "-T", help="time-steps T")]
RecipeOpt = Annotated[Optional[str], typer.Option("--recipe", help="direct or hybrid (default direct)")]
ClassesOpt = Annotated[Optional[int], typer.Option("--num-classes", help="number of classes (default 10)")]
ShapeOpt = Annotated[Optional[str], typer.Option("--input-shape", help="C,H,W (default: the arch's, 3,32,32 for CIFAR nets)")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="show progress bars")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="run on a local Dask cluster of N worker "
                                                                     "processes (one thread each)")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler", help="run on the Dask scheduler at ADDRESS "
                                                                         "(e.g. tcp://127.0.0.1:8786)")]
ResumeOpt = Annotated[Optional[Path], typer.Option("--resume", help="keep finished shards in DIR; a re-run "
                                                                    "computes only the missing ones")]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lmhtc: deployment compiler for LM-HT spiking neural networks.")

EXIT_USER_ERROR = 2


OUTPUT_PARAMS = ("output", "json_out", "plot", "plots")   # every other Path argument of a command is an input


def user_errors(fn):
    """Run a command under the output rule (compiler/atomic.py) with its Path arguments as inputs, and turn
    every exception into one line on stderr (compiler/failures.py): ``error: ...`` and exit status 2 for
    bad input, ``internal error: ...`` and exit status 3 for a bug; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .failures import one_line_failure, run_guarded

        try:
            return run_guarded(fn, args, kwargs, OUTPUT_PARAMS)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:  # noqa: BLE001  (the one place that turns any failure into one line)
            line, code = one_line_failure(exc)
            typer.echo(line, err=True)
            raise typer.Exit(code) from None

    return wrapper


def _on_dask(workers, scheduler, resume) -> bool:
    """Whether a command runs through Dask shards (--workers, --scheduler or --resume given)."""
    return workers is not None or scheduler is not None or resume is not None


def sharded(job, artifact: Path, source, batch_size: int, workers, scheduler, resume, progress: bool,
            graphs=None) -> dict:
    """Run ``job`` over the inputs in batches, in-process or on Dask (--workers/--scheduler); the combined record."""
    from .distributed import run_job

    expected = next((tuple(n.input_shape) for g in (graphs or {}).values() for n in g.topo()
                     if hasattr(n, "input_shape")), None)
    if expected is not None and tuple(source.sample_shape) != expected:
        raise LmhtcError(f"inputs have per-sample shape {tuple(source.sample_shape)}, the network expects {expected}")
    record, stats = run_job(job, artifact, source, batch_size, workers=workers, scheduler=scheduler,
                            resume=resume, progress=progress, graphs=graphs)
    if resume is not None:
        typer.echo(f"resume: {stats.reused} of {stats.shards} shards from {resume}, computed {stats.computed}")
    return record


def parse_shape(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    """``--input-shape`` C,H,W of the zoo networks (compiler/flags.py ``parse_sizes``)."""
    from .flags import parse_sizes

    return parse_sizes(text, "3,32,32", rank=3)


def load_inputs(path: Path, limit: Optional[int] = None, shape=None, classes: Optional[int] = None,
                need_labels: bool = False, steps: Optional[int] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``x`` [N,C,H,W] float32 (and ``y`` if present) from an .npz file, through the input gate
    (lmhtc/array_gate.py): finite, N >= 1, the network's ``shape``, labels checked, ``limit`` samples read.
    With ``steps``, a per-step sequence [steps, N, *shape] is accepted too."""
    from lmhtc.array_gate import read_inputs

    return read_inputs(path, LmhtcError, limit=limit, shape=shape, classes=classes, need_labels=need_labels,
                       steps=steps)


def _artifact_inputs(path: Path, graph, limit: Optional[int] = None, need_labels: bool = False,
                     sequences: bool = False):
    """``load_inputs`` against an artifact graph's input shape and number of classes (and, with
    ``sequences``, its number of steps for a per-step input sequence)."""
    return load_inputs(path, limit, tuple(graph.input.input_shape), graph.readout.shape[0], need_labels,
                       steps=graph.steps if sequences else None)


@app.command()
@user_errors
def train(
    arch: str = typer.Option("digitsnet", help="zoo architecture (see `lmhtc zoo`)"),
    levels: int = typer.Option(2, "--levels", "-L", help="threshold levels L"),
    timesteps: int = typer.Option(2, "--timesteps", "-T", help="time-steps T"),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W: 1,8,8 or 3,32,32 (default: the arch's)"),
    epochs: int = typer.Option(20, help="training epochs"),
    batch_size: int = typer.Option(64, help="batch size"),
    lr: float = typer.Option(0.01, help="peak learning rate (cosine schedule)"),
    optimizer: str = typer.Option("adamw", help="adamw or sgd (Nesterov)"),
    seed: int = typer.Option(0, help="random seed"),
    output: Path = typer.Option(Path("model.pth"), "-o", "--output", help="checkpoint path (+ .json sidecar)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
):
    """Train an LM-HT network (STBP, direct recipe) on the digits data and save it."""
    import torch

    from .checkpoint import ModelSpec, check_checkpoint_output, save_checkpoint
    from .data import form_for_shape, load_digits_dataset
    from .recipes import get_recipe
    from .training import TrainConfig
    from .training import train as run_training
    from .zoo import build_snn, get_arch

    check_checkpoint_output(output)
    spec_arch = get_arch(arch)
    shape = parse_shape(input_shape) or spec_arch.default_input_shape
    try:
        form = form_for_shape(shape)
    except ValueError as exc:
        raise LmhtcError(f"--input-shape: {exc}") from None
    if optimizer not in ("adamw", "sgd"):
        raise LmhtcError(f"--optimizer must be adamw or sgd, got {optimizer!r}")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise LmhtcError("--epochs and --batch-size must be >= 1 and --lr > 0")
    torch.manual_seed(seed)
    data = load_digits_dataset(form)
    model = build_snn(arch, levels, timesteps, 10, "direct", shape)
    recipe = get_recipe("direct")
    typer.echo(f"training {arch} (L={levels}, T={timesteps}) on digits {'x'.join(map(str, shape))}: "
               f"{len(data.train)} train / {len(data.test)} test images, {epochs} epochs")
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed,
                      progress=progress)
    result = run_training(model, data.train, data.test, cfg)
    spec = ModelSpec(arch=arch, levels=levels, timesteps=timesteps, recipe="direct", num_classes=10,
                     input_shape=shape, v_init=recipe.v_init, input_scale=recipe.input_scale(levels),
                     normalization=data.normalization())
    save_checkpoint(output, model, spec, {"epoch": epochs - 1, "max_acc1": result.test_accuracy,
                                          "lmhtc_version": __version__, "seed": seed})
    typer.echo(f"saved {output} and {output.with_suffix('.json')}")
    typer.echo(f"test accuracy: {100 * result.test_accuracy:.2f} %")


@app.command()
@user_errors
def evaluate(
    checkpoint: Path = typer.Argument(..., help="checkpoint (.pth): lmhtc zoo (with sidecar) or the authors' format"),
    arch: ArchOpt = None, levels: LevelsOpt = None, timesteps: StepsOpt = None, recipe: RecipeOpt = None,
    num_classes: ClassesOpt = None, input_shape: ShapeOpt = None,
    inputs: Optional[Path] = typer.Option(None, help=".npz with x [N,C,H,W] and y [N] (default: digits test set)"),
    limit: Optional[int] = typer.Option(None, help="evaluate the first N images only"),
    batch_size: int = typer.Option(64),
    progress: ProgressOpt = True,
):
    """Run a checkpoint's LM-HT network in PyTorch and print its accuracy."""
    from .checkpoint import load_snn
    from .data import form_for_shape, load_digits_dataset
    from .training import accuracy, predict

    spec = _spec_from_flags(checkpoint, arch, levels, timesteps, recipe, num_classes, input_shape)
    model = load_snn(checkpoint, spec)
    if inputs is not None:
        x, y = load_inputs(inputs, limit, spec.input_shape, spec.num_classes, need_labels=True)
    else:
        try:
            split = load_digits_dataset(form_for_shape(spec.input_shape)).test
        except ValueError as exc:
            raise LmhtcError(f"{checkpoint}: no default data set: {exc}; pass --inputs") from None
        x, y = split.x, split.y
    if tuple(x.shape[1:]) != tuple(spec.input_shape):
        raise LmhtcError(f"inputs have shape {tuple(x.shape[1:])}, the network expects {tuple(spec.input_shape)}")
    x, y = _limited(x, y, limit)
    out = predict(model, x, batch_size, progress=progress)
    typer.echo(f"{spec.arch} L={spec.levels} T={spec.timesteps} recipe={spec.recipe}: {len(y)} images")
    typer.echo(f"accuracy: {100 * accuracy(out, y):.2f} %")


def _spec_from_flags(checkpoint, arch, levels, timesteps, recipe, num_classes, input_shape):
    from .checkpoint import resolve_spec

    return resolve_spec(checkpoint, arch, levels, timesteps, recipe, num_classes, parse_shape(input_shape))


def _limited(x, y, limit):
    if limit is not None:
        if limit < 1:
            raise LmhtcError(f"--limit must be >= 1, got {limit}")
        x = x[:limit]
        y = None if y is None else y[:limit]
    return x, y


def _limited_samples(graph, x, y, limit):
    """``--limit`` on samples: axis 0 of [N, ...], axis 1 of a per-step sequence [steps, N, ...]."""
    from .executor import is_sequence

    seq = is_sequence(graph, x)
    x, y = _limited(x.swapaxes(0, 1) if seq else x, y, limit)
    return (x.swapaxes(0, 1) if seq else x), y


@app.command("compile")
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
    from .artifact import save_artifact
    from .passes.quantize import QuantConfig
    from .passes.reparameterize import DEFAULT_SCHEDULE, SCHEDULES
    from .pipeline import artifact_meta, compile_checkpoint, lower_integer

    if check is not None and no_reparam:
        raise LmhtcError("--check measures a reparameterization; it cannot be used with --no-reparam")
    if reparam is not None and no_reparam:
        raise LmhtcError("--reparam picks a reparameterization schedule; it cannot be used with --no-reparam")
    schedule = DEFAULT_SCHEDULE if reparam is None else reparam
    if schedule not in SCHEDULES:
        raise LmhtcError(f"--reparam must be one of {', '.join(SCHEDULES)}, got {reparam!r}")
    spec = _spec_from_flags(checkpoint, arch, levels, timesteps, recipe, num_classes, input_shape)
    config = QuantConfig(weight_bits=8 if weight_bits is None else weight_bits, per_channel=not per_layer,
                         **({} if quant_method is None else {"method": quant_method}))
    config.check()     # bad options fail before any work
    if mixed_precision is not None and (calib is None or not 0 < mixed_precision <= 1 or config.weight_bits >= 8):
        raise LmhtcError("--mixed-precision needs --calib, a budget in (0, 1] and --weight-bits below 8, got "
                         f"{mixed_precision} with {'no ' if calib is None else ''}--calib and "
                         f"--weight-bits {config.weight_bits}")
    shape = spec.input_shape
    cx = None if calib is None or no_int else load_inputs(calib, calib_limit, shape)[0]
    cxy = None if check is None else load_inputs(check, check_limit, shape, spec.num_classes)
    graphs = compile_checkpoint(checkpoint, spec, reparam=not no_reparam, schedule=schedule)
    meta = artifact_meta(spec, graphs, not no_reparam)
    compiled = graphs["compiled"]
    typer.echo(f"{spec.arch}: {len(compiled.neuron_layers())} neuron layers, L={spec.levels}, T={spec.timesteps} "
               f"-> {'LIF' if not no_reparam else 'M-HT'} network over {compiled.steps} steps "
               f"(passes: {', '.join(compiled.meta.get('passes', []))})")
    if check is not None:
        from .exactness import exactness_report

        report = exactness_report(graphs["source"], compiled, cxy[0], progress=progress)
        meta["exactness"] = report.to_json()
        _print_exactness(report)
    if not no_int:
        explicit = calib is not None or weight_bits is not None or quant_method is not None
        if mixed_precision is not None:
            from dataclasses import replace

            from .mixed import choose_widths

            mp = choose_widths(compiled, cx, config.weight_bits, 8, mixed_precision, config.lowering, progress=progress)
            config = replace(config, layer_bits=mp.layer_bits)
            meta["mixed_precision"] = {"budget": mixed_precision, "agreement": mp.agreement, "met": mp.met,
                                       "layer_bits": dict(mp.layer_bits), "sensitivity": mp.sensitivity.to_json()}
            typer.echo(f"mixed precision: {len(mp.layer_bits)} layer(s) at 8 bits "
                       f"({', '.join(n for n, _ in mp.layer_bits) or 'none'}), the rest at {config.weight_bits}; "
                       f"argmax agreement on --calib {100 * mp.agreement:.2f} % "
                       f"({'meets' if mp.met else 'misses'} the budget {100 * mixed_precision:.2f} %)")
        integer, why_not = lower_integer(compiled, config, cx, required=explicit, progress=progress)
        if integer is None:
            typer.echo(f"note: no integer lowering ({why_not}); the artifact holds the float network only")
        else:
            graphs["integer"] = integer
            qm = graphs["integer"].meta["quantization"]
            typer.echo(f"integer lowering: {qm['weight_bits']}-bit weights ({'per channel' if qm['per_channel'] else 'per layer'}), "
                       f"{qm['membrane_bits']}-bit membranes, input range ±{qm['input_range']:.4g} from {qm['input_rule']}; "
                       f"method {qm['method']}{_method_note(qm)}")
    save_artifact(output, graphs, meta)
    typer.echo(f"wrote {output}")


def _method_note(qm: dict) -> str:
    """What of the lowering method ran: bias correction and threshold-aware rounding need data."""
    if qm["method"] == "maxabs" or qm["bias_correction"]:
        return ""
    return " (no calibration data: scales only, no bias correction)"


def _print_exactness(report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"reparameterization exactness ({report.schedule} schedule, L={report.levels}, "
                        f"{report.images} images)")
    for col in ("layer", "(neuron, window) pairs", "matching", "fraction", "max |count - level|"):
        table.add_column(col, justify="right" if col != "layer" else "left")
    for layer in report.layers:
        table.add_row(layer.layer, str(layer.pairs), str(layer.matching), f"{layer.fraction:.6f}", str(layer.max_abs_diff))
    Console(width=160).print(table)
    typer.echo(f"all layers: {100 * report.fraction:.4f} % of (neuron, window) spike counts equal the M-HT levels")
    typer.echo(f"logits (x L) vs M-HT: argmax agreement {100 * report.argmax_agreement:.2f} %, "
               f"mean |d| {report.mean_abs_dlogits:.3g}, within 1e-3(1+|ref|): {100 * report.within_tol:.2f} %")


def _print_schedule_comparison(reports: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="window schedules side by side: share of (neuron, window) spike counts equal to the M-HT "
                        "levels")
    table.add_column("layer")
    for name in reports:
        table.add_column(name, justify="right")
    first = next(iter(reports.values()))
    for i, layer in enumerate(first.layers):
        table.add_row(layer.layer, *[f"{r.layers[i].fraction:.6f}" for r in reports.values()])
    table.add_row("all layers", *[f"{r.fraction:.6f}" for r in reports.values()], end_section=True)
    table.add_row("logits within 1e-3(1+|ref|)", *[f"{r.within_tol:.4f}" for r in reports.values()])
    table.add_row("argmax agreement", *[f"{r.argmax_agreement:.4f}" for r in reports.values()])
    Console(width=160).print(table)


@app.command()
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

    from .artifact import load_artifact
    from .atomic import atomic_write
    from .exactness import finish_exactness
    from .jobs import Exactness
    from .passes.reparameterize import SCHEDULES
    from .sources import open_inputs

    graphs, _ = load_artifact(artifact)
    if "compiled" not in graphs or "source" not in graphs or not graphs["compiled"].meta.get("reparameterized"):
        raise LmhtcError(f"{artifact}: was compiled with --no-reparam; there is no reparameterization to measure")
    if _on_dask(workers, scheduler, resume):
        source = open_inputs(inputs, limit)
    else:
        _artifact_inputs(inputs, graphs["compiled"], limit)          # the input gate, before any work
        source = open_inputs(inputs, limit)
    schedule = str(graphs["compiled"].meta.get("schedule"))
    job = Exactness(tuple(n for n in SCHEDULES if n != schedule) if compare_schedules else ())
    rec = sharded(job, artifact, source, batch_size, workers, scheduler, resume, progress, graphs)
    report = finish_exactness(rec["main"])
    _print_exactness(report)
    others = {name: finish_exactness(r) for name, r in rec["others"].items()}
    if compare_schedules:
        _print_schedule_comparison({report.schedule: report, **others})
    if json_out is not None:
        doc = report.to_json()
        if others:
            doc["other_schedules"] = {name: r.to_json() for name, r in others.items()}
        text = json.dumps(doc, indent=2)
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(text))


@app.command()
@user_errors
def inspect(artifact: Path = typer.Argument(..., help="compiled artifact"),
            graph: str = typer.Option("compiled", help="compiled or source")):
    """Print an artifact's layer table."""
    from rich.console import Console
    from rich.table import Table

    from .artifact import load_artifact
    from .ir import summary_rows

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
    table = Table(title=title)
    for col in ("node", "kind", "shape", "neurons", "synapses", "L", "T'", "threshold", "leak schedule"):
        table.add_column(col, justify="right" if col in ("neurons", "synapses", "L", "T'") else "left")
    for r in rows:
        table.add_row(r["name"], r["kind"], "x".join(map(str, r["shape"])), str(r["neurons"] or ""),
                      str(r["synapses"] or ""), str(r["levels"]), str(r["steps"]), r["threshold"], r["leak"])
    table.add_row("total", "", "", str(sum(r["neurons"] for r in rows)), str(sum(r["synapses"] for r in rows)),
                  "", "", "", "", end_section=True)
    Console(width=200).print(table)
    if "exactness" in meta:
        ex = meta["exactness"]
        typer.echo(f"exactness at compile time: {100 * ex['fraction']:.4f} % of (neuron, window) pairs exact "
                   f"on {ex['images']} images")


@app.command()
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
    from .artifact import load_artifact
    from .atomic import save_npz_atomic
    from .jobs import Simulate
    from .pipeline import simulate_arrays
    from .sources import open_inputs

    if mode not in ("float", "int"):
        raise LmhtcError(f"--mode must be float or int, got {mode!r}")
    if mode == "int":
        from lmhtc.runtime.device import resolve_device

        device = resolve_device(device)
    elif device != "cpu":
        raise LmhtcError("--device applies to --mode int only")
    graphs, _ = load_artifact(artifact)
    run_graph = require_graph(graphs, "int" if mode == "int" else "float", artifact, float_graph=graph)
    if _on_dask(workers, scheduler, resume):     # whole batches as shards; the same integers, the same floats
        source = open_inputs(inputs, limit)
        y = source.labels()
        r = sharded(Simulate(mode, "integer" if mode == "int" else graph), artifact, source, batch_size, workers,
                    scheduler, resume, progress, graphs)
        r.pop("kernels", None)
        arrays = {k: np.array(v) if isinstance(v, list) else v for k, v in r.items()}
        logits = arrays["logits"]
    else:
        x, y = _artifact_inputs(inputs, run_graph, limit,
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


@app.command()
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

    from rich.console import Console
    from rich.table import Table

    from .artifact import load_artifact
    from .atomic import atomic_write
    from .jobs import Sweep
    from .pipeline import float_graph_name
    from .sources import open_inputs
    from .sweep import finish_sweep

    try:
        widths = sorted({int(b) for b in bits.split(",") if b.strip()})
    except ValueError:
        raise LmhtcError(f"--bits must be comma-separated integers, got {bits!r}") from None
    if not widths or min(widths) < 2 or max(widths) > 16:
        raise LmhtcError(f"--bits must lie between 2 and 16, got {bits!r}")
    from .passes.quantize import METHODS

    chosen = tuple(dict.fromkeys(m.strip() for m in methods.split(",") if m.strip()))
    if not chosen or any(m not in METHODS and m != "auto" for m in chosen):
        raise LmhtcError(f"--methods must be a comma-separated subset of auto, {', '.join(METHODS)}, got {methods!r}")
    graphs, meta = load_artifact(artifact)
    base = graphs[float_graph_name(graphs, "compiled", artifact)]
    if not _on_dask(workers, scheduler, resume):
        _artifact_inputs(inputs, base, limit, need_labels=True)        # the input gate, before any work
        if calib is not None:
            load_inputs(calib, calib_limit, tuple(base.input.input_shape))
    source = open_inputs(inputs, limit)
    y = source.labels()
    if y is None:
        raise LmhtcError(f"{inputs}: no labels 'y' to measure accuracy against")
    job = Sweep(tuple(widths), True, None if calib is None else open_inputs(calib, calib_limit), chosen, spikes)
    rec = sharded(job, artifact, source, batch_size, workers, scheduler, resume, progress, graphs)
    result = finish_sweep(rec, y, job.configs())
    table = Table(title=f"{artifact.name}: integer runtime vs float LM-HT on {result.images} images "
                        f"(float LM-HT {100 * result.float_source_accuracy:.2f} %, "
                        f"float compiled {100 * result.float_compiled_accuracy:.2f} %)")
    cols = ["setting", "method", "int accuracy", "vs float LM-HT (pp)", "argmax agreement", "saturations",
            "spikes int/float"] + (["spike agr. first", "spike agr. last"] if spikes else [])
    for col in cols:
        table.add_column(col, justify="left" if col in ("setting", "method") else "right")
    for r in result.rows:
        table.add_row(r.setting, r.method, f"{100 * r.accuracy:.2f} %", f"{r.delta_pp:+.2f}", f"{100 * r.agreement:.2f} %",
                      str(r.saturations), f"{r.spike_ratio:.4f}",
                      *([f"{100 * r.spikes_first:.2f} %", f"{100 * r.spikes_last:.2f} %"] if spikes else []))
    Console(width=160).print(table)
    if plot is not None:
        from .plots import plot_bits_sweep

        plot_bits_sweep(result, plot, f"{meta.get('model_spec', {}).get('arch', artifact.name)}: accuracy vs weight bits")
        typer.echo(f"wrote {plot}")
    if json_out is not None:
        text = json.dumps(result.to_json(), indent=2)
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(text))


@app.command("import-nir")
@user_errors
def import_nir(
    model: Path = typer.Argument(..., help="NIR graph (.nir, HDF5)"),
    output: Path = typer.Option(..., "-o", "--output", help="artifact file to write (.lmhtc)"),
    dialect: Optional[str] = typer.Option(None, help="how the graph was discretized: snntorch, norse, sinabs or "
                                                     "generic (see docs/nir.md)"),
    dt: Optional[float] = typer.Option(None, "--dt", help="step length in seconds (generic: required)"),
    reset: Optional[str] = typer.Option(None, help="subtract or zero (default: the dialect's)"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="per-sample input shape, e.g. 2,8,8"),
    steps: int = typer.Option(16, "--steps", help="time-steps the artifact runs"),
    calib: Optional[Path] = typer.Option(None, help=".npz with x: calibration data for the integer lowering"),
    calib_limit: int = typer.Option(256, help="inputs of --calib to use"),
    weight_bits: Optional[int] = typer.Option(None, help="integer weight mantissa bits, 2-16 (default 8)"),
    progress: ProgressOpt = True,
):
    """Import a NIR graph (snnTorch, Norse, sinabs, ...) into an lmhtc artifact."""
    from .nir_commands import import_nir_command

    import_nir_command(model, output, dialect, dt, reset, input_shape, steps, calib, calib_limit, weight_bits,
                       progress, load_inputs, _limited)


@app.command()
@user_errors
def export(
    artifact: Path = typer.Argument(..., help="compiled artifact"),
    target: str = typer.Option(..., help="onnx (float graph), onnx-int (integer graph), lava (integer graph) "
                                         "or nir (float graph NIR expresses exactly)"),
    output: Path = typer.Option(..., "-o", "--output", help="file to write (.onnx, .nir), or a directory for lava"),
    graph: str = typer.Option("compiled", help="float graph for --target onnx/nir: compiled or source"),
    spikes: bool = typer.Option(False, "--spikes", help="onnx-int: also output every neuron layer's spike train"),
):
    """Emit an artifact's network for a target: ONNX (float or integer) or Lava."""
    from .artifact import load_artifact
    from .lowering import names
    from .pipeline import describe_export, export_model

    if target not in names(exportable=True):
        raise LmhtcError(f"--target {target!r}: choose one of {', '.join(names(exportable=True))}")
    graphs, meta = load_artifact(artifact)
    out, g = export_model(graphs, meta, target, output, artifact, graph=graph, spikes=spikes)
    typer.echo(f"wrote {out}: {describe_export(target, out, g)}")


@app.command()
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

    from rich.console import Console
    from rich.table import Table

    from .artifact import load_artifact
    from .atomic import atomic_write
    from .jobs import Verify
    from .sources import open_inputs
    from .verify import TargetRun, check_runnable, compare_runs, default_targets, parse_targets
    from .verify import verify as verify_runs

    graphs, _ = load_artifact(artifact)
    names = parse_targets(targets) if targets is not None else default_targets(graphs)
    if len(names) < 2:
        check_runnable("onnx", graphs)      # names the kind that leaves only one target
        raise LmhtcError(f"{artifact}: only the {names[0]} target runs this artifact; nothing to compare")
    for name in names:
        check_runnable(name, graphs)        # a target that cannot run this artifact is refused before any work
    dask = _on_dask(workers, scheduler, resume)
    if targets is None and "lava" in names and dask:
        names.remove("lava")
        typer.echo("note: lava is left out on Dask workers (it needs the 'fork' start method); verify it in-process")
    if "lava" in names and dask:
        raise LmhtcError("--targets lava cannot run on Dask workers (Lava's runtime needs the 'fork' start method, "
                         "Dask workers use 'spawn'); verify lava in-process, or leave it out of --targets")
    graph = next(iter(graphs.values()))
    if graph.input.encoding == "sequence":     # an imported NIR network: per-step sequences, in-process
        if dask:
            raise LmhtcError(f"{artifact}: a network with per-step inputs is verified in-process; leave out "
                             f"--workers/--scheduler/--resume")
        x, _ = _artifact_inputs(inputs, graph, limit, sequences=True)
        runs, pairs = verify_runs(graphs, x, names, progress=progress, batch_size=batch_size)
        n_inputs = x.shape[1] if x.ndim == len(graph.input.input_shape) + 2 else len(x)
    else:
        if not dask:
            _artifact_inputs(inputs, graph, limit)      # the input gate, before any work
        source = open_inputs(inputs, limit)
        record = sharded(Verify(tuple(names)), artifact, source, batch_size, workers, scheduler, resume, progress,
                         graphs)
        runs = [TargetRun(**record[name]) for name in names]
        pairs = compare_runs(runs)
        n_inputs = len(source)
    console = Console(width=120)
    console.print(f"{n_inputs} inputs; " + ", ".join(f"{r.name} {r.seconds:.2f} s" for r in runs))
    table = Table(title="pairs")
    for col in ("a", "b", "argmax agreement", "max |Δlogits|", "spikes equal", "bit-exact", "required"):
        table.add_column(col)
    for p in pairs:
        table.add_row(p.a, p.b, f"{100 * p.argmax_agreement:.2f} %", f"{p.max_abs_dlogits:.3g}",
                      "-" if p.spikes_equal is None else str(p.spikes_equal), str(p.bit_exact),
                      "bit-exact" if p.required else "-")
    console.print(table)
    spike_pairs = [p for p in pairs if p.spikes_equal is not None]
    if spike_pairs:
        layers = Table(title="spike trains per neuron layer (differing entries)")
        layers.add_column("layer")
        for p in spike_pairs:
            layers.add_column(f"{p.a} vs {p.b}")
        for layer in spike_pairs[0].layer_mismatches:
            layers.add_row(layer, *[("equal" if p.layer_mismatches.get(layer) == 0
                                     else str(p.layer_mismatches.get(layer))) for p in spike_pairs])
        console.print(layers)
    if json_out is not None:
        doc = {"artifact": str(artifact), "inputs": n_inputs, "targets": names,
               "seconds": {r.name: r.seconds for r in runs}, "pairs": [p.to_json() for p in pairs]}
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=2)))
    failed = [f"{p.a} vs {p.b}" for p in pairs if p.failed]
    if failed:
        typer.echo(f"FAILED: bit-exact pairs differ: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
    typer.echo("ok: every integer pair is bit-exact" if any(p.required for p in pairs) else "ok")


@app.command()
@user_errors
def dataset(
    output: Path = typer.Option(..., "-o", "--output", help=".npz to write (x [N,C,H,W] float32, y [N] int64)"),
    form: str = typer.Option("8", help="8 (1x8x8) or 32 (3x32x32, the fixtures' form)"),
    split: str = typer.Option("test", help="train, test or calib"),
    limit: Optional[int] = typer.Option(None, help="keep the first N images"),
):
    """Write a split of the digits data set (scikit-learn's bundled copy) as .npz."""
    from .atomic import save_npz_atomic
    from .data import FORMS, load_digits_dataset

    if form not in FORMS:
        raise LmhtcError(f"--form must be one of {', '.join(FORMS)}, got {form!r}")
    if split not in ("train", "test", "calib"):
        raise LmhtcError(f"--split must be train, test or calib, got {split!r}")
    data = getattr(load_digits_dataset(form), split)
    x, y = _limited(data.x, data.y, limit)
    save_npz_atomic(output, x=x, y=y)
    typer.echo(f"wrote {output}: x {x.shape}, y {y.shape}")


@app.command()
def zoo():
    """List the zoo architectures."""
    from .zoo import ARCHS

    for a in ARCHS.values():
        shape = "x".join(map(str, a.default_input_shape))
        typer.echo(f"{a.name:18s} {shape:10s} recipes: {','.join(a.recipes):14s} {a.description}")


@app.command()
def version():
    """Print the lmhtc version."""
    typer.echo(__version__)


@app.command()
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

    from .artifact import load_artifact
    from .atomic import atomic_write
    from .cost.energy import load_energy_model
    from .cost.hardware import load_hardware
    from .cost.dynamic import Activity
    from .jobs import Report
    from .report import build_report, print_report, report_from_activity
    from .sources import open_inputs

    energy = load_energy_model(energy_model)      # bad options fail before any work
    core = load_hardware(hardware)
    if plots is not None and plots.exists() and not plots.is_dir():
        raise LmhtcError(f"{plots}: --plots needs a directory, and this is a file")
    if mode not in (None, "int", "float"):
        raise LmhtcError(f"--mode must be int or float, got {mode!r}")
    graphs, meta = load_artifact(artifact)
    mode = mode or ("int" if "integer" in graphs else "float")
    if mode == "int":
        if graph is not None:
            raise LmhtcError("--graph selects a float graph; it applies to --mode float only")
        if "integer" not in graphs:
            require_graph(graphs, "int", artifact)                 # names a node kind without integer lowering
            raise LmhtcError(f"{artifact}: has no integer network (compiled with --no-int, or not lowerable); "
                             f"use --mode float")
        graph = "integer"
    else:
        from .pipeline import float_graph_name

        graph = float_graph_name(graphs, graph or "compiled", artifact)
    from .cost.fanout import cost_graph

    cg = cost_graph(graphs[graph])       # a graph the cost passes cannot count fails before any input is read
    spec = meta.get("model_spec", {})
    info = {"artifact": artifact.name, "arch": spec.get("arch")}
    if _on_dask(workers, scheduler, resume):
        source = open_inputs(inputs, limit)
        activity = Activity(**sharded(Report(mode, graph), artifact, source, batch_size, workers, scheduler, resume,
                                      progress, graphs))
        result = report_from_activity(graphs[graph], activity, energy, core, y=source.labels(), graph_name=graph,
                                      meta=info)
    else:       # in-process: the gate (per-step sequences too, in float mode), then the same per-batch reduction
        x, y = _artifact_inputs(inputs, graphs[graph], limit,
                                sequences=mode == "float" or graphs[graph].input.encoding == "sequence")
        result = build_report(graphs[graph], x, mode, energy, core, y=y, graph_name=graph, batch_size=batch_size,
                              progress=progress, meta=info, cg=cg)
    print_report(result)
    if plots is not None:
        from .report_plots import write_report_plots

        for path in write_report_plots(result, plots):
            typer.echo(f"wrote {path}")
    if json_out is not None:
        text = json.dumps(result, indent=1)
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(text))
        typer.echo(f"wrote {json_out}")


@app.command()
@user_errors
def convert(
    ann: Path = typer.Argument(..., help="ANN checkpoint (authors' format): a QCFS ANN, or a ReLU ANN with --from relu"),
    output: Path = typer.Option(..., "-o", "--output",
                                help="--method hybrid: LM-HT checkpoint (.pth + .json sidecar); else an artifact"),
    from_: str = typer.Option("qcfs", "--from", help="the ANN's form: qcfs or relu"),
    method: str = typer.Option("hybrid", help="hybrid (QCFS -> LM-HT checkpoint), or msat, tb-max, tb-0.7 "
                                              "(IF network with adaptive / θ_max / 0.7·θ_max thresholds -> artifact)"),
    arch: ArchOpt = None, levels: LevelsOpt = None, timesteps: StepsOpt = None, num_classes: ClassesOpt = None,
    input_shape: ShapeOpt = None,
    q_levels: int = typer.Option(8, help="the QCFS ANN's quantization levels Q"),
    finetune_epochs: int = typer.Option(0, help="hybrid: STBP fine-tuning epochs on the digits data (SGD)"),
    finetune_lr: float = typer.Option(0.01, help="hybrid: fine-tuning learning rate"),
    finetune_images: Optional[int] = typer.Option(None, help="hybrid: fine-tune on the first N training images only"),
    calib: Optional[Path] = typer.Option(None, help="msat/tb-*: .npz with x, calibration data for θ_max"),
    calib_limit: int = typer.Option(256, help="images of --calib to use"),
    spike_confidence: Optional[str] = typer.Option(None, help="msat: p of keeping an early spike, one value or one "
                                                              "per neuron layer (default: off)"),
    confidence_steps: Optional[int] = typer.Option(None, help="msat: early steps with spike confidence (default T/4)"),
    v_t: float = typer.Option(0.0, "--v-t", help="msat: V_T in units of θ_max"),
    seed: int = typer.Option(0, help="seed of fine-tuning and of the spike-confidence draws"),
    progress: ProgressOpt = True,
):
    """Convert an ANN to an SNN: QCFS -> LM-HT checkpoint (hybrid recipe), or an MSAT / threshold-balanced artifact."""
    from .convert.commands import AnnSource, convert_command

    src = AnnSource(ann, arch, from_, num_classes or 10, parse_shape(input_shape), q_levels)
    convert_command(src, output, method, levels, timesteps, finetune_epochs, finetune_lr, finetune_images, calib,
                    calib_limit, spike_confidence, confidence_steps, v_t, seed, progress, load_inputs)


@app.command("conversion-report")
@user_errors
def conversion_report(
    ann: Path = typer.Argument(..., help="ANN checkpoint (authors' format): a QCFS ANN, or a ReLU ANN with --from relu"),
    inputs: Path = typer.Option(..., help=".npz with x [N,C,H,W] and labels y"),
    calib: Path = typer.Option(..., help=".npz with x: calibration data for θ_max"),
    from_: str = typer.Option("qcfs", "--from", help="the ANN's form: qcfs or relu"),
    arch: ArchOpt = None, num_classes: ClassesOpt = None, input_shape: ShapeOpt = None,
    q_levels: int = typer.Option(8, help="the QCFS ANN's quantization levels Q"),
    calib_limit: int = typer.Option(256, help="images of --calib to use"),
    timesteps: str = typer.Option("8,16,32", help="time-steps T of the accuracy curve, comma separated"),
    schemes: str = typer.Option("tb-max,tb-0.7,msat,msat-sc", help="threshold schemes to compare"),
    errors_at: Optional[int] = typer.Option(None, help="T of the per-layer error table (default 32, else the largest)"),
    pairs: str = typer.Option("2x2,2x4,4x2,4x4", help="QCFS ANN: L x T pairs of the Theorem 4.4 table ('' skips it)"),
    spike_confidence: Optional[str] = typer.Option(None, help="msat-sc: p per layer (default 0.9 for all)"),
    confidence_steps: Optional[int] = typer.Option(None, help="msat-sc: early steps (default T/4)"),
    v_t: float = typer.Option(0.0, "--v-t", help="msat: V_T in units of θ_max"),
    seed: int = typer.Option(0, help="seed of the spike-confidence draws"),
    limit: Optional[int] = typer.Option(None, help="use the first N images of --inputs only"),
    plots: Path = typer.Option(Path("conversion-report"), help="directory for the PNG plots"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write every table as JSON"),
    progress: ProgressOpt = True,
):
    """Accuracy vs T of the conversion schemes next to the ANN, per-layer error terms, and Theorem 4.4 on data."""
    from .convert.commands import AnnSource, report_command

    src = AnnSource(ann, arch, from_, num_classes or 10, parse_shape(input_shape), q_levels)
    report_command(src, inputs, calib, calib_limit, timesteps, schemes, errors_at, pairs, spike_confidence,
                   confidence_steps, v_t, seed, limit, plots, json_out, progress, load_inputs)


@app.command()
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
    from .sensitivity_report import sensitivity_command

    sensitivity_command(artifact, inputs, bits, calib, calib_limit, limit, quant_method, plot, json_out, progress,
                        load_inputs, _limited)


def main() -> None:
    """Console entry point."""
    app(prog_name="lmhtc")


if __name__ == "__main__":
    main()
