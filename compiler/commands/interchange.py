"""Commands that move networks in and out: ``import-nir`` and ``export``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import LmhtcError
from .common import ProgressOpt, limited, load_inputs, user_errors


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
    from ..nir_commands import import_nir_command

    import_nir_command(model, output, dialect, dt, reset, input_shape, steps, calib, calib_limit, weight_bits,
                       progress, load_inputs, limited)


@user_errors
def export(
    artifact: Path = typer.Argument(..., help="compiled artifact"),
    target: str = typer.Option(..., help="onnx (float graph), onnx-int (integer graph), lava (integer graph) "
                                         "or nir (float graph NIR expresses exactly)"),
    output: Path = typer.Option(..., "-o", "--output", help="file to write (.onnx, .nir), or a directory for lava"),
    graph: str = typer.Option("compiled", help="float graph for --target onnx/nir: compiled or source"),
    spikes: bool = typer.Option(False, "--spikes", help="onnx-int: also output every neuron layer's spike train"),
    products: str = typer.Option("auto", "--products", help="onnx-int: the synaptic products, uint8 (onnxruntime's "
                                 "ConvInteger/MatMulInteger), float (float32 Conv/MatMul, exact below 2^24) or auto "
                                 "(uint8 where this CPU has VNNI/AMX, else float); the same integers either way"),
):
    """Emit an artifact's network for a target: ONNX (float or integer) or Lava."""
    from ..artifact import load_artifact
    from ..lowering import names
    from ..pipeline import describe_export, export_model
    from ...targets.onnx_int import PRODUCTS

    if target not in names(exportable=True):
        raise LmhtcError(f"--target {target!r}: choose one of {', '.join(names(exportable=True))}")
    if products not in PRODUCTS:
        raise LmhtcError(f"--products {products!r}: choose one of {', '.join(PRODUCTS)}")
    graphs, meta = load_artifact(artifact)
    out, g = export_model(graphs, meta, target, output, artifact, graph=graph, spikes=spikes, products=products)
    typer.echo(f"wrote {out}: {describe_export(target, out, g)}")
