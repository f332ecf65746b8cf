"""The ``lmhtc`` command line.

Every user error ends in one line on stderr (``error: ...`` naming the file,
layer or key at fault) and exit status 2; no partial output file is left.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from . import __version__
from .errors import LmhtcError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lmhtc: deployment compiler for LM-HT spiking neural networks.")

EXIT_USER_ERROR = 2


def user_errors(fn):
    """Turn an LmhtcError raised by a command into ``error: ...`` on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LmhtcError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None

    return wrapper


def parse_shape(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(","))
    except ValueError:
        raise LmhtcError(f"--input-shape must look like 3,32,32, got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise LmhtcError(f"--input-shape must be three positive sizes C,H,W, got {text!r}")
    return shape


def load_inputs(path: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``x`` [N,C,H,W] float32 (and ``y`` if present) from an .npz file."""
    if not path.is_file():
        raise LmhtcError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data:
                raise LmhtcError(f"{path}: no array 'x' (found: {', '.join(data.files) or 'nothing'})")
            x = data["x"]
            y = data["y"] if "y" in data else None
    except LmhtcError:
        raise
    except Exception as exc:  # numpy raises many types for a bad file
        raise LmhtcError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if x.ndim != 4:
        raise LmhtcError(f"{path}: 'x' must be [N,C,H,W], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise LmhtcError(f"{path}: 'x' must be floating point, got {x.dtype}")
    return x.astype(np.float32, copy=False), y


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

    from .checkpoint import ModelSpec, save_checkpoint
    from .data import form_for_shape, load_digits_dataset
    from .recipes import get_recipe
    from .training import TrainConfig
    from .training import train as run_training
    from .zoo import build_snn, get_arch

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
    arch: Optional[str] = typer.Option(None, help="architecture (needed without a sidecar)"),
    levels: Optional[int] = typer.Option(None, "--levels", "-L"),
    timesteps: Optional[int] = typer.Option(None, "--timesteps", "-T"),
    recipe: Optional[str] = typer.Option(None, help="direct or hybrid (default direct)"),
    num_classes: Optional[int] = typer.Option(None),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W (default: the arch's)"),
    inputs: Optional[Path] = typer.Option(None, help=".npz with x [N,C,H,W] and y [N] (default: digits test set)"),
    limit: Optional[int] = typer.Option(None, help="evaluate the first N images only"),
    batch_size: int = typer.Option(64),
    progress: bool = typer.Option(True),
):
    """Run a checkpoint's LM-HT network in PyTorch and print its accuracy."""
    from .checkpoint import load_snn, resolve_spec
    from .data import form_for_shape, load_digits_dataset
    from .training import accuracy, predict

    spec = resolve_spec(checkpoint, arch, levels, timesteps, recipe, num_classes, parse_shape(input_shape))
    model = load_snn(checkpoint, spec)
    if inputs is not None:
        x, y = load_inputs(inputs)
        if y is None:
            raise LmhtcError(f"{inputs}: no labels 'y' to measure accuracy against")
    else:
        try:
            split = load_digits_dataset(form_for_shape(spec.input_shape)).test
        except ValueError as exc:
            raise LmhtcError(f"{checkpoint}: no default data set: {exc}; pass --inputs") from None
        x, y = split.x, split.y
    if tuple(x.shape[1:]) != tuple(spec.input_shape):
        raise LmhtcError(f"inputs have shape {tuple(x.shape[1:])}, the network expects {tuple(spec.input_shape)}")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    out = predict(model, x, batch_size, progress=progress)
    typer.echo(f"{spec.arch} L={spec.levels} T={spec.timesteps} recipe={spec.recipe}: {len(y)} images")
    typer.echo(f"accuracy: {100 * accuracy(out, y):.2f} %")


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


def main() -> None:
    """Console entry point."""
    app(prog_name="lmhtc")


if __name__ == "__main__":
    main()
