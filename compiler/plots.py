"""PNG plots (matplotlib, Agg backend) of results a person would rather look at."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import atomic_write  # noqa: E402


def save_png(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG atomically (temporary file, then rename) and close it."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


def plot_bits_sweep(sweep, path: str | os.PathLike, title: str = "") -> Path:
    rows = [r for r in sweep.rows if r.setting != "widest"]
    fig, ax = plt.subplots(figsize=(6, 4))
    methods = list(dict.fromkeys(getattr(r, "method", "") for r in rows))
    for m in methods:           # one line per lowering method
        mr = [r for r in rows if getattr(r, "method", "") == m]
        ax.plot([r.weight_bits for r in mr], [100 * r.accuracy for r in mr], "o-",
                label="integer runtime" + (f" ({m})" if len(methods) > 1 else ""))
    ax.axhline(100 * sweep.float_source_accuracy, color="k", ls="--", lw=1, label="float LM-HT (as trained)")
    widest = [r for r in sweep.rows if r.setting == "widest"]
    if widest:
        ax.axhline(100 * widest[0].accuracy, color="tab:green", ls=":", lw=1, label="integer, widest setting")
    values = [100 * r.accuracy for r in sweep.rows] + [100 * sweep.float_source_accuracy]
    ax.set_ylim(max(0.0, min(values) - 2.0), min(100.5, max(values) + 1.0))   # a few points of context
    ax.set_xlabel("weight mantissa bits")
    ax.set_ylabel(f"accuracy on {sweep.images} images (%)")
    ax.set_title(title or "integer lowering: accuracy vs weight bits")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return save_png(fig, path)
