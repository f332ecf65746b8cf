"""PNG plots (matplotlib, Agg) of the conversion experiments: accuracy vs T, error terms, Theorem 4.4 deviation."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..plots import save_png  # noqa: E402
from .analysis import ConversionErrors  # noqa: E402
from .schemes import SCHEMES  # noqa: E402


def _short(name: str) -> str:
    return name.replace("residual_function", "rf").replace("_x", "")


def plot_curve(result, path: str | os.PathLike, title: str = "") -> Path:
    """Accuracy vs T (log-2 axis), one line per scheme, the ANN's accuracy as a dashed line."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for scheme, accs in result.accuracy.items():
        ax.plot(result.timesteps, [100 * a for a in accs], "o-", label=SCHEMES.get(scheme, scheme))
    ax.axhline(100 * result.ann_accuracy, color="k", ls="--", lw=1, label=f"ANN ({100 * result.ann_accuracy:.2f} %)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(result.timesteps)
    ax.set_xticklabels([str(t) for t in result.timesteps])
    ax.set_xlabel("time-steps T")
    ax.set_ylabel(f"accuracy on {result.images} images (%)")
    ax.set_title(title or "ANN → SNN conversion: accuracy vs time-steps")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return save_png(fig, path)


def plot_errors(errors: ConversionErrors, path: str | os.PathLike, title: str = "") -> Path:
    """Left: per-layer signed error terms (stacked: quantization, clip, SIN, inherited, ANN) and the total.
    Right: the SIN ratio over time, one line per layer (darker = deeper)."""
    names = [_short(layer.layer) for layer in errors.layers]
    idx = np.arange(len(names))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    pos = np.zeros(len(names))
    neg = np.zeros(len(names))
    for term, color in (("quantization", "tab:blue"), ("clip", "tab:orange"), ("sin", "tab:red"),
                        ("inherited", "tab:gray"), ("ann", "tab:olive")):
        vals = np.array([getattr(layer, term) for layer in errors.layers])
        base = np.where(vals >= 0, pos, neg)
        ax.bar(idx, vals, bottom=base, color=color, label={"sin": "SIN", "ann": "ANN vs ReLU"}.get(term, term))
        pos += np.clip(vals, 0, None)
        neg += np.clip(vals, None, 0)
    ax.plot(idx, [layer.total for layer in errors.layers], "k_", ms=14, mew=2, label="total (r − a)")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(idx)
    ax.set_xticklabels(names, rotation=70, fontsize=7)
    ax.set_ylabel("mean error per neuron (ANN units)")
    ax.set_title(title or f"conversion error per layer (T = {errors.steps})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    cmap = plt.get_cmap("viridis")
    steps = np.arange(errors.steps)
    for i, layer in enumerate(errors.layers):
        ax2.plot(steps, layer.sin_ratio, color=cmap(i / max(1, len(errors.layers) - 1)), lw=1)
    ax2.set_xlabel("time-step")
    ax2.set_ylabel("SIN ratio (inactivated share of firing neurons)")
    ax2.set_title("SIN ratio over time (dark: first layer, yellow: last)")
    ax2.grid(alpha=0.3)
    return save_png(fig, path)


def plot_deviation(table: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Theorem 4.4 on data: mean |LM-HT mean output / L − ANN activation| per layer, one line per (L, T)."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    names = None
    for (levels, steps), errs in table.items():
        names = [_short(layer.layer) for layer in errs.layers]
        ax.plot(range(len(names)), [layer.total_abs for layer in errs.layers], "o-", ms=3,
                label=f"L={levels}, T={steps} (L·T={levels * steps})")
    if names:
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=70, fontsize=7)
    ax.set_ylabel("mean |Δ| (ANN units)")
    ax.set_title(title or "QCFS ANN vs converted LM-HT (before fine-tuning), per layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)
