"""What the ``lmhtc convert`` and ``lmhtc conversion-report`` commands do (the CLI functions call these).

Every user error is a ConversionError / LmhtcError naming the file, layer or flag;
every output file is written atomically.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from .. import __version__
from ..atomic import atomic_write
from .ann import ANN_FORMS, ConversionError, layer_maxima, load_ann
from .schemes import (SCHEMES, MSATConfig, apply_scheme, confidences_text, describe, parse_confidence,
                      preset_for)

METHODS = ("hybrid", "msat", "tb-max", "tb-0.7")
LoadInputs = Callable[[Path], tuple[np.ndarray, Optional[np.ndarray]]]


@dataclass
class AnnSource:
    path: Path
    arch: Optional[str]
    form: str
    num_classes: int
    input_shape: Optional[tuple[int, int, int]]
    q_levels: int

    def load(self):
        if self.arch is None:
            raise ConversionError(f"{self.path}: an ANN checkpoint has no sidecar; give --arch (see `lmhtc zoo`)")
        if self.form not in ANN_FORMS:
            raise ConversionError(f"--from must be one of {', '.join(ANN_FORMS)}, got {self.form!r}")
        if self.q_levels < 1:
            raise ConversionError(f"--q-levels must be >= 1, got {self.q_levels}")
        from ..zoo import get_arch

        shape = self.input_shape or get_arch(self.arch).default_input_shape
        return load_ann(self.path, self.arch, self.form, self.num_classes, shape, self.q_levels), tuple(shape)


def msat_config(arch: str, spike_confidence: Optional[str], confidence_steps: Optional[int], v_t: float,
                seed: int) -> MSATConfig:
    """The paper's preset for ``arch`` with the command-line spike confidence, V_T and seed.

    Spike confidence stays off unless --spike-confidence gives some p < 1; its number of early steps is
    --confidence-steps, or a quarter of T when not given (0 in the config); --confidence-steps 0 turns it off.
    """
    ps = parse_confidence(spike_confidence)
    if confidence_steps is not None and confidence_steps < 0:
        raise ConversionError(f"--confidence-steps must be >= 0, got {confidence_steps}")
    if confidence_steps == 0:
        ps = (1.0,)
    return replace(preset_for(arch), v_t=float(v_t), confidence=ps, confidence_steps=int(confidence_steps or 0),
                   seed=int(seed))


def _check_inputs(x: np.ndarray, shape: Sequence[int], path: Path) -> None:
    if tuple(x.shape[1:]) != tuple(shape):
        raise ConversionError(f"{path}: inputs have shape {tuple(x.shape[1:])}, the network expects {tuple(shape)}")


# -- lmhtc convert -------------------------------------------------------------------------------

def convert_command(src: AnnSource, output: Path, method: str, levels: Optional[int], timesteps: Optional[int],
                    finetune_epochs: int, finetune_lr: float, finetune_images: Optional[int],
                    calib: Optional[Path], calib_limit: int,
                    spike_confidence: Optional[str], confidence_steps: Optional[int], v_t: float, seed: int,
                    progress: bool, load_inputs: LoadInputs) -> None:
    if method not in METHODS:
        raise ConversionError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if timesteps is None:
        raise ConversionError("give --timesteps (-T): the SNN's time-steps")
    if timesteps < 1:
        raise ConversionError(f"--timesteps must be >= 1, got {timesteps}")
    if method == "hybrid":
        if src.form != "qcfs":
            raise ConversionError("--method hybrid converts a QCFS ANN (--from qcfs); a ReLU ANN has no QCFS "
                                  "thresholds to become LM-HT thresholds (use --method msat)")
        if levels is None:
            raise ConversionError("--method hybrid needs --levels (-L): the LM-HT neurons' levels")
        if calib is not None or spike_confidence is not None:
            raise ConversionError("--calib and --spike-confidence belong to --method msat/tb-*, not hybrid")
        _convert_hybrid(src, output, levels, timesteps, finetune_epochs, finetune_lr, finetune_images, seed,
                        progress)
    else:
        if finetune_epochs:
            raise ConversionError("--finetune-epochs belongs to --method hybrid")
        if calib is None:
            raise ConversionError(f"--method {method} needs --calib X.npz: θ_max is the largest ANN activation "
                                  f"of each layer on calibration data")
        if method != "msat" and spike_confidence is not None:
            raise ConversionError("--spike-confidence belongs to --method msat")
        _convert_threshold(src, output, method, timesteps, calib, calib_limit, spike_confidence, confidence_steps,
                           v_t, seed, progress, load_inputs)


def _convert_hybrid(src: AnnSource, output: Path, levels: int, timesteps: int, finetune_epochs: int,
                    finetune_lr: float, finetune_images: Optional[int], seed: int, progress: bool) -> None:
    from ..checkpoint import check_checkpoint_output, save_checkpoint
    from .qcfs import convert_qcfs

    check_checkpoint_output(output)
    if finetune_epochs < 0:
        raise ConversionError(f"--finetune-epochs must be >= 0, got {finetune_epochs}")
    if finetune_epochs and not finetune_lr > 0:
        raise ConversionError(f"--finetune-lr must be > 0, got {finetune_lr}")
    if finetune_images is not None and finetune_images < 1:
        raise ConversionError(f"--finetune-images must be >= 1, got {finetune_images}")
    ann, shape = src.load()
    snn, spec = convert_qcfs(ann, src.arch, levels, timesteps, src.num_classes, shape, str(src.path))
    typer.echo(f"{src.arch}: QCFS ANN -> LM-HT (L={levels}, T={timesteps}, hybrid recipe: θ from QCFS, "
               f"v_init 0.5, M = 0, a = 0, first-neuron input scale {spec.input_scale:g})")
    extra = {"epoch": 0, "lmhtc_version": __version__, "converted_from": src.path.name, "seed": seed,
             "finetune_epochs": finetune_epochs, "finetune_images": finetune_images or 0}
    if finetune_epochs:
        import torch

        from ..data import Split, form_for_shape, load_digits_dataset
        from ..training import TrainConfig, accuracy, predict, train

        try:
            data = load_digits_dataset(form_for_shape(shape))
        except ValueError as exc:
            raise ConversionError(f"--finetune-epochs trains on the digits data: {exc}") from None
        if src.num_classes != 10:
            raise ConversionError(f"--finetune-epochs trains on the 10-class digits data; --num-classes is "
                                  f"{src.num_classes}")
        before = accuracy(predict(snn, data.test.x), data.test.y)
        typer.echo(f"before fine-tuning: test accuracy {100 * before:.2f} % ({len(data.test)} digits test images)")
        torch.manual_seed(seed)
        cfg = TrainConfig(epochs=finetune_epochs, batch_size=64, lr=finetune_lr, optimizer="sgd", seed=seed,
                          progress=progress)
        train_split = data.train if finetune_images is None else \
            Split(data.train.x[:finetune_images], data.train.y[:finetune_images])
        typer.echo(f"fine-tuning (STBP, SGD lr {finetune_lr:g}, {finetune_epochs} epoch(s)) on "
                   f"{len(train_split)} digits training images")
        result = train(snn, train_split, data.test, cfg)
        snn.eval()
        spec = replace(spec, normalization=data.normalization())
        extra.update(epoch=finetune_epochs - 1, max_acc1=result.test_accuracy, acc_before_finetune=before)
        typer.echo(f"after {finetune_epochs} fine-tuning epoch(s): test accuracy {100 * result.test_accuracy:.2f} %")
    save_checkpoint(output, snn, spec, extra)
    typer.echo(f"wrote {output} and {output.with_suffix('.json')} (compile it with `lmhtc compile {output} -o ART`)")


def _convert_threshold(src: AnnSource, output: Path, method: str, timesteps: int, calib: Path, calib_limit: int,
                       spike_confidence: Optional[str], confidence_steps: Optional[int], v_t: float, seed: int,
                       progress: bool, load_inputs: LoadInputs) -> None:
    from ..artifact import save_artifact
    from ..frontends.checkpoint import file_sha256
    from .ann import if_graph

    if calib_limit < 1:
        raise ConversionError(f"--calib-limit must be >= 1, got {calib_limit}")
    cx, _ = load_inputs(calib)
    cx = cx[:calib_limit]
    config = msat_config(src.arch or "", spike_confidence, confidence_steps, v_t, seed)
    ann, shape = src.load()
    _check_inputs(cx, shape, calib)
    thresholds = layer_maxima(ann, cx, progress=progress)
    base = if_graph(ann, timesteps, thresholds, shape)
    graph = apply_scheme(base, method if method != "msat" or not config.confidence_on else "msat-sc", config)
    spec = {"arch": src.arch, "levels": 1, "timesteps": timesteps, "recipe": f"conversion ({method})",
            "num_classes": src.num_classes, "input_shape": list(shape), "v_init": 0.5, "input_scale": 1.0}
    conversion = {**graph.meta["conversion"], "method": method, "from": src.form, "ann_checkpoint": src.path.name,
                  "ann_sha256": file_sha256(src.path), "calibration_images": int(len(cx))}
    graph.meta.update(model_spec=spec)
    save_artifact(output, {"compiled": graph}, {"model_spec": spec, "conversion": conversion})
    _print_thresholds(graph, method)
    typer.echo(f"wrote {output}: {len(thresholds)} neuron layers, T={timesteps} "
               f"(run it with `lmhtc simulate {output} --inputs X.npz -o OUT.npz --mode float`)")


def _print_thresholds(graph, method: str) -> None:
    from .msat_node import MSATNeuron

    layers = graph.nodes_of(MSATNeuron) if method == "msat" else graph.neuron_layers()
    scheme = graph.meta["conversion"]["scheme"]
    typer.echo(f"{SCHEMES[scheme]}, {graph.steps} steps")
    if method == "msat":
        config = MSATConfig(**{**graph.meta["conversion"]["msat"],
                               "confidence": tuple(graph.meta["conversion"]["msat"]["confidence"])})
        typer.echo(f"MSAT: {describe(config)}; {confidences_text(config, [n.name for n in layers])}")
    table = Table()
    for col in ("layer", "θ_max", "θ(0)" if method == "msat" else "θ", "p"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for n in layers:
        if isinstance(n, MSATNeuron):
            table.add_row(n.name, f"{n.theta_max:.4g}", f"{n.initial_fraction() * n.theta_max:.4g}",
                          f"{n.confidence:g}")
        else:
            table.add_row(n.name, "", f"{n.threshold:.4g}", "1")
    Console(width=160).print(table)


# -- lmhtc conversion-report ---------------------------------------------------------------------

def _parse_steps(text: str) -> list[int]:
    try:
        steps = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ConversionError(f"--timesteps must be comma-separated integers, got {text!r}") from None
    if not steps or min(steps) < 1:
        raise ConversionError(f"--timesteps must list positive integers, got {text!r}")
    return steps


def _parse_schemes(text: str) -> list[str]:
    schemes = [s.strip() for s in text.split(",") if s.strip()]
    for s in schemes:
        if s not in SCHEMES:
            raise ConversionError(f"--schemes: unknown scheme {s!r}; choose from {', '.join(SCHEMES)}")
    if not schemes:
        raise ConversionError("--schemes must name at least one scheme")
    return schemes


def report_command(src: AnnSource, inputs: Path, calib: Path, calib_limit: int, timesteps: str, schemes: str,
                   errors_at: Optional[int], pairs: str, spike_confidence: Optional[str],
                   confidence_steps: Optional[int], v_t: float, seed: int, limit: Optional[int],
                   plots: Path, json_out: Optional[Path], progress: bool, load_inputs: LoadInputs) -> None:
    from .curve import accuracy_curve
    from .plots import plot_curve, plot_deviation, plot_errors
    from .qcfs import hybrid_deviation, parse_pairs

    steps = _parse_steps(timesteps)
    scheme_list = _parse_schemes(schemes)
    lt_pairs = parse_pairs(pairs)
    if lt_pairs and src.form != "qcfs":
        raise ConversionError("--pairs (the Theorem 4.4 table) needs a QCFS ANN (--from qcfs); pass --pairs '' to skip")
    if errors_at is None:
        errors_at = 32 if 32 in steps else steps[-1]
    if errors_at not in steps:
        raise ConversionError(f"--errors-at {errors_at} is not one of --timesteps {timesteps}")
    if limit is not None and limit < 1:
        raise ConversionError(f"--limit must be >= 1, got {limit}")
    if calib_limit < 1:
        raise ConversionError(f"--calib-limit must be >= 1, got {calib_limit}")
    x, y = load_inputs(inputs)
    if y is None:
        raise ConversionError(f"{inputs}: no labels 'y' to measure accuracy against")
    cx = load_inputs(calib)[0][:calib_limit]
    x, y = x[:limit], y[:limit]
    # spike confidence of the msat-sc scheme: the flags' setting, else the default one (schemes.py)
    config = msat_config(src.arch or "", spike_confidence, confidence_steps, v_t, seed)
    ann, shape = src.load()
    _check_inputs(x, shape, inputs)
    _check_inputs(cx, shape, calib)
    thresholds = layer_maxima(ann, cx, progress=progress)
    curve = accuracy_curve(ann, x, y, thresholds, steps, scheme_list, config, shape, errors_at, progress=progress)
    _print_curve(curve, src.arch)
    written = [plot_curve(curve, plots / "accuracy_vs_T.png",
                          f"{src.arch}: ANN → SNN conversion, accuracy vs T ({curve.images} images)")]
    for scheme, errs in curve.errors.items():
        _print_errors(errs, f"{SCHEMES[scheme]}, T = {errs.steps}")
        written.append(plot_errors(errs, plots / f"errors_{scheme}_T{errs.steps}.png",
                                   f"{src.arch}, {SCHEMES[scheme]}, T = {errs.steps}: error per layer"))
    deviation = {}
    if lt_pairs:
        deviation = hybrid_deviation(ann, src.arch, x, lt_pairs, y, src.num_classes, shape, progress=progress)
        _print_deviation(deviation, src.arch)
        written.append(plot_deviation(deviation, plots / "theorem44_deviation.png",
                                      f"{src.arch}: QCFS ANN vs converted LM-HT (before fine-tuning), {len(y)} images"))
    for path in written:
        typer.echo(f"wrote {path}")
    if json_out is not None:
        doc = {"arch": src.arch, "ann_checkpoint": src.path.name, "calibration_images": int(len(cx)),
               "theta_max": thresholds, "msat": config.to_json(), "curve": curve.to_json(),
               "theorem44": [{"levels": lv, "timesteps": ts, **e.to_json()} for (lv, ts), e in deviation.items()]}
        text = json.dumps(doc, indent=1)
        atomic_write(json_out, lambda tmp: Path(tmp).write_text(text))
        typer.echo(f"wrote {json_out}")


def _print_curve(curve, arch: Optional[str]) -> None:
    table = Table(title=f"{arch}: accuracy vs time-steps on {curve.images} images "
                        f"(ANN {100 * curve.ann_accuracy:.2f} %)")
    table.add_column("scheme")
    for t in curve.timesteps:
        table.add_column(f"T={t}", justify="right")
    table.add_column("T within 1 pp of ANN", justify="right")
    for scheme, accs in curve.accuracy.items():
        reach = curve.steps_to_reach(scheme)
        table.add_row(SCHEMES[scheme], *[f"{100 * a:.2f} %" for a in accs], "-" if reach is None else str(reach))
    table.add_row("ANN", *[f"{100 * curve.ann_accuracy:.2f} %"] * len(curve.timesteps), "", end_section=True)
    Console(width=160).print(table)


def _print_errors(errs, title: str) -> None:
    table = Table(title=f"conversion error per layer: {title} (means per neuron in ANN units; "
                        f"quantization + clip + SIN = local; local + inherited + ANN = total)")
    cols = ("layer", "quantization", "clip", "SIN", "local", "inherited", "ANN vs ReLU", "total", "mean |total|",
            "SIN share", "SIN ratio t=0")
    for col in cols:
        table.add_column(col, justify="left" if col == "layer" else "right")
    for layer in errs.layers:
        table.add_row(layer.layer, *[f"{getattr(layer, k):+.4f}" for k in
                                     ("quantization", "clip", "sin", "local", "inherited", "ann", "total")],
                      f"{layer.total_abs:.4f}", f"{100 * layer.sin_share:.2f} %",
                      f"{100 * layer.sin_ratio[0]:.1f} %" if layer.sin_ratio else "")
    Console(width=200).print(table)
    typer.echo(f"accuracy {100 * errs.accuracy:.2f} % (ANN {100 * errs.ann_accuracy:.2f} %) on {errs.images} images")


def _print_deviation(table_data: dict, arch: Optional[str]) -> None:
    pairs = list(table_data)
    table = Table(title=f"{arch}: Theorem 4.4 on data — mean |LM-HT mean output / L − QCFS ANN activation| per "
                        f"layer (before fine-tuning)")
    table.add_column("layer")
    for lv, ts in pairs:
        table.add_column(f"L={lv} T={ts}", justify="right")
    names = [layer.layer for layer in table_data[pairs[0]].layers]
    for i, name in enumerate(names):
        table.add_row(name, *[f"{table_data[p].layers[i].total_abs:.4f}" for p in pairs])
    table.add_row("accuracy", *[f"{100 * table_data[p].accuracy:.2f} %" for p in pairs], end_section=True)
    Console(width=200).print(table)

