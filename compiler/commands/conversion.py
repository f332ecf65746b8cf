"""ANN-to-SNN commands: ``convert`` and ``conversion-report`` (the work is in compiler/convert/commands.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import LmhtcError
from .common import (ArchOpt, ClassesOpt, LevelsOpt, ProgressOpt, ShapeOpt, StepsOpt, load_inputs, parse_shape,
                     user_errors)


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
    from ..convert.commands import AnnSource, convert_command

    src = AnnSource(ann, arch, from_, num_classes or 10, parse_shape(input_shape), q_levels)
    convert_command(src, output, method, levels, timesteps, finetune_epochs, finetune_lr, finetune_images, calib,
                    calib_limit, spike_confidence, confidence_steps, v_t, seed, progress, load_inputs)


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
    from ..convert.commands import AnnSource, report_command

    src = AnnSource(ann, arch, from_, num_classes or 10, parse_shape(input_shape), q_levels)
    report_command(src, inputs, calib, calib_limit, timesteps, schemes, errors_at, pairs, spike_confidence,
                   confidence_steps, v_t, seed, limit, plots, json_out, progress, load_inputs)
