"""What the command modules share: the common options, the output/error rule every command runs
under (``user_errors``), the input gate and the Dask/in-process switch.

Invariant: every user error of a command ends in one line on stderr (``error: ...`` naming the file,
layer or key at fault) and exit status 2 (``internal error: ...`` and 3 for a bug); no partial output
file is left (compiler/atomic.py, compiler/failures.py).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from ..errors import LmhtcError

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

OUTPUT_PARAMS = ("output", "json_out", "plot", "plots")   # every other Path argument of a command is an input


def user_errors(fn):
    """Run a command under the output rule (compiler/atomic.py) with its Path arguments as inputs, and turn
    every exception into one line on stderr (compiler/failures.py): ``error: ...`` and exit status 2 for
    bad input, ``internal error: ...`` and exit status 3 for a bug; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..failures import one_line_failure, run_guarded

        try:
            return run_guarded(fn, args, kwargs, OUTPUT_PARAMS)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:  # noqa: BLE001  (the one place that turns any failure into one line)
            line, code = one_line_failure(exc)
            typer.echo(line, err=True)
            raise typer.Exit(code) from None

    return wrapper


def on_dask(workers, scheduler, resume) -> bool:
    """Whether a command runs through Dask shards (--workers, --scheduler or --resume given)."""
    return workers is not None or scheduler is not None or resume is not None


def sharded(job, artifact: Path, source, batch_size: int, workers, scheduler, resume, progress: bool,
            graphs=None) -> dict:
    """Run ``job`` over the inputs in batches, in-process or on Dask (--workers/--scheduler); the combined record."""
    from ..distributed import run_job

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
    from ..flags import parse_sizes

    return parse_sizes(text, "3,32,32", rank=3)


def load_inputs(path: Path, limit: Optional[int] = None, shape=None, classes: Optional[int] = None,
                need_labels: bool = False, steps: Optional[int] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``x`` [N,C,H,W] float32 (and ``y`` if present) from an .npz file, through the input gate
    (lmhtc/array_gate.py): finite, N >= 1, the network's ``shape``, labels checked, ``limit`` samples read.
    With ``steps``, a per-step sequence [steps, N, *shape] is accepted too."""
    from lmhtc.array_gate import read_inputs

    return read_inputs(path, LmhtcError, limit=limit, shape=shape, classes=classes, need_labels=need_labels,
                       steps=steps)


def artifact_inputs(path: Path, graph, limit: Optional[int] = None, need_labels: bool = False,
                     sequences: bool = False):
    """``load_inputs`` against an artifact graph's input shape and number of classes (and, with
    ``sequences``, its number of steps for a per-step input sequence)."""
    return load_inputs(path, limit, tuple(graph.input.input_shape), graph.readout.shape[0], need_labels,
                       steps=graph.steps if sequences else None)



def spec_from_flags(checkpoint, arch, levels, timesteps, recipe, num_classes, input_shape):
    """The ModelSpec of a checkpoint: its sidecar, overridden by the flags given (compiler/checkpoint.py)."""
    from ..checkpoint import resolve_spec

    return resolve_spec(checkpoint, arch, levels, timesteps, recipe, num_classes, parse_shape(input_shape))


def limited(x, y, limit):
    """The first ``limit`` samples of ``x`` (and ``y``); ``--limit`` must be >= 1."""
    if limit is not None:
        if limit < 1:
            raise LmhtcError(f"--limit must be >= 1, got {limit}")
        x = x[:limit]
        y = None if y is None else y[:limit]
    return x, y


def limited_samples(graph, x, y, limit):
    """``--limit`` on samples: axis 0 of [N, ...], axis 1 of a per-step sequence [steps, N, ...]."""
    from ..executor import is_sequence

    seq = is_sequence(graph, x)
    x, y = limited(x.swapaxes(0, 1) if seq else x, y, limit)
    return (x.swapaxes(0, 1) if seq else x), y
