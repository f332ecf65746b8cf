"""Commands on checkpoints and data: ``train``, ``evaluate``, ``dataset``, ``zoo``, ``version``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import __version__
from ..errors import LmhtcError
from .common import (ArchOpt, ClassesOpt, LevelsOpt, ProgressOpt, RecipeOpt, ShapeOpt, StepsOpt, limited, load_inputs,
                     parse_shape, spec_from_flags, user_errors)


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

    from ..checkpoint import ModelSpec, check_checkpoint_output, save_checkpoint
    from ..data import form_for_shape, load_digits_dataset
    from ..recipes import get_recipe
    from ..training import TrainConfig
    from ..training import train as run_training
    from ..zoo import build_snn, get_arch

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
    from ..checkpoint import load_snn
    from ..data import form_for_shape, load_digits_dataset
    from ..training import accuracy, predict

    spec = spec_from_flags(checkpoint, arch, levels, timesteps, recipe, num_classes, input_shape)
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
    x, y = limited(x, y, limit)
    out = predict(model, x, batch_size, progress=progress)
    typer.echo(f"{spec.arch} L={spec.levels} T={spec.timesteps} recipe={spec.recipe}: {len(y)} images")
    typer.echo(f"accuracy: {100 * accuracy(out, y):.2f} %")


@user_errors
def dataset(
    output: Path = typer.Option(..., "-o", "--output", help=".npz to write (x [N,C,H,W] float32, y [N] int64)"),
    form: str = typer.Option("8", help="8 (1x8x8) or 32 (3x32x32, the fixtures' form)"),
    split: str = typer.Option("test", help="train, test or calib"),
    limit: Optional[int] = typer.Option(None, help="keep the first N images"),
):
    """Write a split of the digits data set (scikit-learn's bundled copy) as .npz."""
    from ..atomic import save_npz_atomic
    from ..data import FORMS, load_digits_dataset

    if form not in FORMS:
        raise LmhtcError(f"--form must be one of {', '.join(FORMS)}, got {form!r}")
    if split not in ("train", "test", "calib"):
        raise LmhtcError(f"--split must be train, test or calib, got {split!r}")
    data = getattr(load_digits_dataset(form), split)
    x, y = limited(data.x, data.y, limit)
    save_npz_atomic(output, x=x, y=y)
    typer.echo(f"wrote {output}: x {x.shape}, y {y.shape}")


def zoo():
    """List the zoo architectures."""
    from ..zoo import ARCHS

    for a in ARCHS.values():
        shape = "x".join(map(str, a.default_input_shape))
        typer.echo(f"{a.name:18s} {shape:10s} recipes: {','.join(a.recipes):14s} {a.description}")


def version():
    """Print the lmhtc version."""
    typer.echo(__version__)
