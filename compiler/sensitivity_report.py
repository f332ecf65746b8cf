"""``lmhtc sensitivity``: the per-layer sensitivity table, its JSON and its PNG (compiler/sensitivity.py)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import typer

from .errors import LmhtcError


def plot_sensitivity(result, path: str | os.PathLike, title: str = "") -> Path:
    from .plots import plt, save_png

    rows = result.rows
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows)), 4))
    pos = range(len(rows))
    ax.bar([p - 0.2 for p in pos], [100 * r.agreement for r in rows], 0.4, label="argmax agreement")
    ax.bar([p + 0.2 for p in pos], [100 * r.spikes_last for r in rows], 0.4, label="spike agreement, last layer")
    ax.axhline(100 * result.widest_agreement, color="k", ls="--", lw=1, label="all layers widest")
    ax.set_xticks(list(pos), [r.layer for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"% on {result.images} images")
    ax.set_title(title or f"one layer at {result.bits} bits ({result.method}), the rest widest")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return save_png(fig, path)


def sensitivity_command(artifact: Path, inputs: Path, bits: int, calib, calib_limit: int, limit, method: str,
                        plot, json_out, progress: bool, load_inputs, limited) -> None:
    from rich.console import Console
    from rich.table import Table

    from .artifact import load_artifact
    from .atomic import atomic_write
    from .passes.quantize import METHODS
    from .sensitivity import layer_sensitivity

    if not 2 <= bits <= 16:
        raise LmhtcError(f"--bits must lie between 2 and 16, got {bits}")
    if method != "auto" and method not in METHODS:
        raise LmhtcError(f"--quant-method must be auto or one of {', '.join(METHODS)}, got {method!r}")
    graphs, meta = load_artifact(artifact)
    x, _ = limited(*load_inputs(inputs), limit)
    cx = None if calib is None else limited(*load_inputs(calib), calib_limit)[0]
    result = layer_sensitivity(graphs["compiled"], x, bits, cx, method, progress=progress)
    table = Table(title=f"{artifact.name}: one layer at {bits} bits ({method}), the rest widest, {result.images} "
                        f"images (all widest: {100 * result.widest_agreement:.2f} % argmax agreement)")
    for col in ("layer", "argmax agreement", "spike agreement (layer)", "spike agreement (last layer)"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    pct = lambda v: "" if math.isnan(v) else f"{100 * v:.2f} %"   # noqa: E731
    for r in result.rows:
        table.add_row(r.layer, pct(r.agreement), pct(r.spikes_layer), pct(r.spikes_last))
    Console(width=160).print(table)
    typer.echo(f"keep wider: {result.keep_wider}")
    if plot is not None:
        plot_sensitivity(result, plot, f"{meta.get('model_spec', {}).get('arch', artifact.name)}: one layer at "
                                       f"{bits} bits ({method}), the rest widest")
        typer.echo(f"wrote {plot}")
    if json_out is not None:
        text = json.dumps(result.to_json(), indent=2)
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(text))
        typer.echo(f"wrote {json_out}")
