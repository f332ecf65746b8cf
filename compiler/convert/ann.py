"""The ANN side of ANN → SNN conversion.

An ANN here is a zoo network in one of two forms (``ANN_FORMS``):

* ``qcfs`` — the authors' QCFS ANN (``ann_models``: ResNet-20, VGG-16, …), activations
  ``QCFS`` with their learnt threshold ``thresh``;
* ``relu`` — the same architecture with plain ``nn.ReLU`` activations (no ``thresh`` keys).

Each activation module becomes one neuron layer of the SNN, named like the module,
so ANN activations and SNN outputs are matched by name. ``if_graph`` builds the
IF network of threshold balancing: every activation → an IF neuron (soft reset, λ = 1,
no T-GIM) with threshold θ = the layer's maximum ANN activation on calibration data,
membranes starting at θ/2, BatchNorm folded.
"""
from __future__ import annotations

import copy
import os
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import load_state_strict, read_checkpoint
from ..errors import LmhtcError
from ..frontends.torch_fx import trace_to_ir
from ..ir import Graph, TemporalMix
from ..neurons import QCFS, IFNeuron
from ..passes import fold_batchnorm
from ..zoo import build_qcfs_ann
from ..zoo.hybrid import wrap_layers_per_step

ANN_FORMS = ("qcfs", "relu")
ACTIVATIONS = (QCFS, nn.ReLU)


class ConversionError(LmhtcError):
    """A network or option that the conversion cannot handle; the message names the layer or flag."""


def build_ann(arch: str, form: str = "qcfs", num_classes: int = 10, input_shape: Sequence[int] | None = None,
              q_levels: int = 8) -> nn.Module:
    """The zoo ANN of ``arch`` in ``form`` (QCFS activations, or the same net with ReLU)."""
    if form not in ANN_FORMS:
        raise ConversionError(f"--from must be one of {', '.join(ANN_FORMS)}, got {form!r}")
    model = build_qcfs_ann(arch, num_classes, q_levels, input_shape)
    if form == "relu":
        _replace(model, lambda m: isinstance(m, QCFS), lambda name, m: nn.ReLU())
    return model


def load_ann(path: str | os.PathLike, arch: str, form: str = "qcfs", num_classes: int = 10,
             input_shape: Sequence[int] | None = None, q_levels: int = 8) -> nn.Module:
    """Load an ANN checkpoint (authors' format) strictly into the zoo ANN of ``arch`` (eval mode)."""
    model = build_ann(arch, form, num_classes, input_shape, q_levels)
    state, _ = read_checkpoint(path)
    has_thresh = any(k.endswith(".thresh") for k in state)
    if form == "relu" and has_thresh:
        raise ConversionError(f"{path}: holds QCFS thresholds ({next(k for k in state if k.endswith('.thresh'))}); "
                              f"it is a QCFS ANN: use --from qcfs")
    if form == "qcfs" and not has_thresh and state:
        raise ConversionError(f"{path}: has no QCFS thresholds (*.thresh keys); a plain ReLU ANN needs --from relu")
    load_state_strict(model, state, str(path), f"the {form.upper()} ANN of --arch {arch}", give=True)
    return model.eval()


def activation_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ANN's activation modules (QCFS or ReLU) in registration order: one neuron layer each."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ACTIVATIONS)]


@torch.no_grad()
def ann_layer_values(model: nn.Module, x: torch.Tensor,
                     names: Iterable[str] | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(pre-activation, activation) of the activation layers (all, or ``names``) for one batch ``x``."""
    wanted = None if names is None else set(names)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for name, m in activation_layers(model):
        if wanted is None or name in wanted:
            handles.append(m.register_forward_hook(
                lambda mod, inp, res, name=name: out.__setitem__(name, (inp[0], res))))
    try:
        model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return out


def ann_activations(model: nn.Module, x: torch.Tensor, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Outputs of the activation layers (all, or ``names``) for one batch ``x``, keyed by module name."""
    return {name: post for name, (_, post) in ann_layer_values(model, x, names).items()}


@torch.no_grad()
def ann_logits(model: nn.Module, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    model.eval()
    xt = torch.as_tensor(x)
    return torch.cat([model(xt[i:i + batch_size]) for i in range(0, len(xt), batch_size)]).numpy()


def layer_maxima(model: nn.Module, x: np.ndarray, batch_size: int = 64, progress: bool = False) -> dict[str, float]:
    """θ_max of every activation layer: its raw maximum ANN activation on ``x`` (MSAT Algorithm 1).

    A layer that never activates on ``x`` has no usable threshold: a ConversionError names it.
    """
    xt = torch.as_tensor(x)
    peaks: dict[str, float] = {name: -np.inf for name, _ in activation_layers(model)}
    for i in tqdm(range(0, len(xt), batch_size), desc="calibrate θ_max", disable=not progress, unit="batch"):
        for name, act in ann_activations(model, xt[i:i + batch_size]).items():
            peaks[name] = max(peaks[name], float(act.max()))
    for name, peak in peaks.items():
        if not peak > 0:
            raise ConversionError(f"activation layer {name!r} never activates on the {len(xt)} calibration "
                                  f"images (max {peak:g}); give more or other --calib data")
    return peaks


def _replace(model: nn.Module, match, make, prefix: str = "") -> None:
    for name, child in list(model.named_children()):
        path = f"{prefix}.{name}" if prefix else name
        if match(child):
            setattr(model, name, make(path, child))
        else:
            _replace(child, match, make, path)


def if_network(ann: nn.Module, timesteps: int, thresholds: dict[str, float], v_init: float = 0.5) -> nn.Module:
    """A copy of ``ann`` as an IF network over ``timesteps`` steps: activation ``name`` → IF neuron with
    threshold ``thresholds[name]`` and initial membrane ``v_init``·θ (the ANN is not modified)."""
    if not hasattr(ann, "spiking"):
        raise ConversionError(f"{type(ann).__name__} has no spiking mode; convert a zoo ANN (see `lmhtc zoo`)")
    missing = [name for name, _ in activation_layers(ann) if name not in thresholds]
    if missing:
        raise ConversionError(f"no threshold for activation layer {missing[0]!r}")
    model = wrap_layers_per_step(copy.deepcopy(ann))
    _replace(model, lambda m: isinstance(m, ACTIVATIONS),
             lambda name, m: IFNeuron(timesteps, float(thresholds[name]), v_init))
    model.spiking = True
    model.T = timesteps
    return model.eval()


def drop_identity_mixes(graph: Graph) -> Graph:
    """A copy of ``graph`` without T-GIM nodes whose Ω is the identity (outputs unchanged exactly)."""
    g = graph.copy()
    for node in g.nodes_of(TemporalMix):
        if np.array_equal(node.omega, np.eye(g.steps)):
            g.remove_passthrough(node.name)
    return g


def if_graph(ann: nn.Module, timesteps: int, thresholds: dict[str, float], input_shape: Sequence[int],
             v_init: float = 0.5, meta: dict | None = None) -> Graph:
    """The IR of ``if_network``: IF neurons (``Neuron``, levels 1, λ = 1), BatchNorm folded, no identity T-GIM."""
    if timesteps < 1:
        raise ConversionError(f"--timesteps must be >= 1, got {timesteps}")
    graph = trace_to_ir(if_network(ann, timesteps, thresholds, v_init), tuple(input_shape), timesteps, meta)
    graph = drop_identity_mixes(fold_batchnorm(graph))
    graph.meta["conversion"] = {"scheme": "tb-max", "thresholds": dict(thresholds), "v_init": v_init}
    return graph
