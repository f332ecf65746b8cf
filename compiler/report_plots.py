"""PNG plots of a cost report (the record of ``lmhtc.compiler.report.build_report``), matplotlib Agg.

Four files in a directory: ``firing_rate.png`` (per layer), ``sops_per_layer.png``
(measured and worst case), ``energy.png`` (SNN vs equivalent ANN, per layer and
in total, the SNN split by kind of operation) and ``firing_rate_per_step.png``
(a layers × steps map, the per-step activity). Each file is written atomically.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import LmhtcError
from .plots import save_png, plt

FILES = ("firing_rate.png", "sops_per_layer.png", "energy.png", "firing_rate_per_step.png")


def _title(report: dict, what: str) -> str:
    name = report.get("arch") or report.get("artifact") or "network"
    return f"{name} ({report['graph']} graph, {report['mode']} mode, {report['images']} images): {what}"


def _layer_axis(ax, names: list[str]) -> None:
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)


def plot_firing_rate(report: dict, path: str | os.PathLike) -> Path:
    layers = [layer for layer in report["layers"] if layer["firing_rate"] is not None]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(layers) + 2), 4))
    ax.bar(range(len(layers)), [layer["firing_rate"] for layer in layers], color="tab:blue")
    _layer_axis(ax, [layer["name"] for layer in layers])
    ax.set_ylabel("spikes per neuron per step")
    ax.set_title(_title(report, "firing rate per layer"), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return save_png(fig, path)


def plot_sops(report: dict, path: str | os.PathLike) -> Path:
    layers = report["layers"]
    idx = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(layers) + 2), 4))
    ax.bar(idx, [layer["sops_per_image"] for layer in layers], color="tab:orange", label="measured SOPs / image")
    ax.plot(idx, [layer["worst_case_sops"] for layer in layers], "k_", ms=12, mew=1.5,
            label="worst case (every neuron, top level, every step)")
    _layer_axis(ax, [layer["name"] for layer in layers])
    ax.set_yscale("log")
    top = max([layer["worst_case_sops"] for layer in layers] + [layer["sops_per_image"] for layer in layers] + [1])
    ax.set_ylim(top=top * 20)          # room for the legend above the bars
    ax.set_ylabel("synaptic operations into the layer")
    ax.set_title(_title(report, f"SOPs per layer (total {report['totals']['sops_per_image'] / 1e9:.4g} G)"),
                 fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    return save_png(fig, path)


def plot_energy(report: dict, path: str | os.PathLike) -> Path:
    layers = report["layers"]
    t = report["totals"]
    em = report["energy_model"]
    idx = np.arange(len(layers))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(max(8.0, 0.4 * len(layers) + 4), 4),
                                  gridspec_kw={"width_ratios": [4, 1]})
    w = 0.4
    ax.bar(idx - w / 2, [1e3 * layer["energy_mj_per_image"] for layer in layers], w, label="SNN", color="tab:green")
    ax.bar(idx + w / 2, [1e3 * layer["ann_energy_mj_per_image"] for layer in layers], w, label="equivalent ANN",
           color="tab:gray")
    _layer_axis(ax, [layer["name"] for layer in layers])
    ax.set_yscale("log")
    ax.set_ylabel("energy per image (uJ)")
    ax.set_title(_title(report, f"energy, model {em['name']}"), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    parts = t["energy_breakdown_mj"]
    bottom = 0.0
    for key, label, color in (("sop", "SNN SOPs", "tab:green"), ("mac", "SNN analog MACs", "tab:olive"),
                              ("neuron_update", "SNN neuron updates", "tab:cyan")):
        ax2.bar(0, parts[key], bottom=bottom, color=color, label=label)
        bottom += parts[key]
    ax2.bar(1, t["ann_energy_mj_per_image"], color="tab:gray", label="ANN MACs")
    ax2.set_xticks([0, 1])
    ax2.set_xticklabels(["SNN", "ANN"])
    ax2.set_ylabel("total energy per image (mJ)")
    ratio = t["energy_ratio_snn_to_ann"]
    ax2.set_title("total" + (f": SNN/ANN = {ratio:.3g}" if ratio is not None else ""), fontsize=9)
    ax2.legend(fontsize=7)
    return save_png(fig, path)


def plot_rate_per_step(report: dict, path: str | os.PathLike) -> Path:
    layers = [layer for layer in report["layers"] if layer["firing_rate_per_step"] is not None]
    rates = np.array([layer["firing_rate_per_step"] for layer in layers]).reshape(len(layers), -1)
    steps = rates.shape[1]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * steps + 4), max(3.0, 0.25 * len(layers) + 1.5)))
    im = ax.imshow(rates, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels([layer["name"] for layer in layers], fontsize=7)
    ax.set_xticks(range(steps))
    ax.set_xlabel("time-step")
    window = report.get("window") or 1
    for k in range(window, steps, window):      # window boundaries of a reparameterized network
        ax.axvline(k - 0.5, color="w", lw=1, ls="--")
    fig.colorbar(im, ax=ax, label="spikes per neuron")
    ax.set_title(_title(report, "firing rate per step"), fontsize=9)
    return save_png(fig, path)


def write_report_plots(report: dict, directory: str | os.PathLike) -> list[Path]:
    """The four PNG files of ``report`` in ``directory`` (created if needed)."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise LmhtcError(f"{d}: --plots needs a directory, and this is a file")
    return [plot_firing_rate(report, d / FILES[0]), plot_sops(report, d / FILES[1]), plot_energy(report, d / FILES[2]),
            plot_rate_per_step(report, d / FILES[3])]
