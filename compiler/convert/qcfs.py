"""QCFS ANN → LM-HT SNN of the hybrid recipe (LM-HT paper §4.4), in the authors' checkpoint format.

The authors' hybrid pipeline wraps every per-step layer of the ANN in a time-step
container and swaps each QCFS activation for an LM-HT neuron. In state-dict keys the
wrapper adds one ``.0`` level (``conv1.0.weight`` → ``conv1.0.0.weight``), a QCFS
``thresh`` becomes the neuron's ``v_threshold`` (θ), and each neuron gains
``alpha`` = 0 (λ = sigmoid(0) + 0.5 = 1), ``mask`` = ``mask_linear`` = 0 (M = 0, every
Ω entry 1/T). The recipe adds v_init 0.5 and the first neuron's input scale L.

Invariant (Theorem 4.4): where an LM-HT neuron of the converted net receives an
input c constant over its T steps, its mean output is ``QCFS_{L·T}(c; L·θ)`` =
``L·QCFS_{L·T}(c/L; θ)`` — an L·T-level QCFS of the ANN-scale input, scaled by the
recipe's L. The first neuron meets the condition exactly (direct encoding, input
scale L); deeper ones receive spikes, so there it holds on average only, which
``hybrid_deviation`` measures layer by layer.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoint import ModelSpec, load_state_strict
from ..frontends.torch_fx import trace_to_ir
from ..ir import Graph
from ..neurons import LMHTNeuron, TimeDistributed
from ..passes import fold_batchnorm
from ..recipes import apply_recipe, get_recipe
from ..zoo import get_arch
from ..zoo.hybrid import ann_to_hybrid_snn
from .analysis import ConversionErrors, conversion_errors
from .ann import ConversionError

NEW_NEURON_KEYS = ("alpha", "mask", "mask_linear")


def qcfs_key_map(snn: nn.Module) -> dict[str, str | None]:
    """For every key of the hybrid SNN's state_dict: the QCFS ANN key it comes from, or None for a new
    LM-HT parameter (``alpha``, ``mask``, ``mask_linear``)."""
    mapping: dict[str, str | None] = {}
    for path, m in snn.named_modules():
        prefix = f"{path}." if path else ""
        if isinstance(m, TimeDistributed):
            if len(m) != 1:
                raise ConversionError(f"{path}: a time-step container with {len(m)} layers has no QCFS ANN "
                                      f"counterpart (the hybrid recipe wraps one layer each)")
            for key in m.state_dict():
                mapping[prefix + key] = prefix + key.split(".", 1)[1]
        elif isinstance(m, LMHTNeuron):
            mapping[prefix + "v_threshold"] = prefix + "thresh"
            for key in NEW_NEURON_KEYS:
                mapping[prefix + key] = None
    for key in snn.state_dict():
        mapping.setdefault(key, key)
    return mapping


def remap_qcfs_state(ann_state: dict[str, torch.Tensor], snn: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """The hybrid SNN's state_dict from a QCFS ANN's: remapped keys, new neuron parameters from ``snn`` (zeros).

    Every ANN key must be used exactly once; an unused or missing one is an error naming it.
    """
    mapping = qcfs_key_map(snn)
    defaults = snn.state_dict()
    out: dict[str, torch.Tensor] = {}
    for snn_key, ann_key in mapping.items():
        if ann_key is None:
            out[snn_key] = defaults[snn_key].clone()
        elif ann_key not in ann_state:
            raise ConversionError(f"{source}: QCFS ANN key {ann_key!r} (for {snn_key!r}) is missing")
        else:
            out[snn_key] = ann_state[ann_key].detach().clone().reshape(defaults[snn_key].shape)
    used = {k for k in mapping.values() if k is not None}
    unused = [k for k in ann_state if k not in used]
    if unused:
        raise ConversionError(f"{source}: QCFS ANN key {unused[0]!r} has no place in the hybrid SNN")
    return out


def hybrid_spec(arch: str, levels: int, timesteps: int, num_classes: int, input_shape: Sequence[int],
                normalization: dict | None = None) -> ModelSpec:
    recipe = get_recipe("hybrid")
    return ModelSpec(arch=arch, levels=int(levels), timesteps=int(timesteps), recipe="hybrid",
                     num_classes=int(num_classes), input_shape=tuple(int(s) for s in input_shape),
                     v_init=recipe.v_init, input_scale=recipe.input_scale(int(levels)),
                     normalization=dict(normalization or {}))


def convert_qcfs(ann: nn.Module, arch: str, levels: int, timesteps: int, num_classes: int = 10,
                 input_shape: Sequence[int] | None = None, source: str = "QCFS ANN") -> tuple[nn.Module, ModelSpec]:
    """The hybrid LM-HT SNN (θ from QCFS, v_init 0.5, M = 0, a = 0, first input scale L) of a QCFS ANN.

    The SNN is built the way the zoo builds a hybrid network (``ann_to_hybrid_snn`` + the recipe), then the
    ANN's state_dict is remapped (``remap_qcfs_state``) and loaded into it strictly; ``ann`` is not modified.
    """
    if levels < 1 or timesteps < 1:
        raise ConversionError(f"--levels and --timesteps must be >= 1, got L={levels}, T={timesteps}")
    shape = tuple(input_shape or get_arch(arch).default_input_shape)
    spec = hybrid_spec(arch, levels, timesteps, num_classes, shape)
    recipe = get_recipe("hybrid")
    snn = apply_recipe(ann_to_hybrid_snn(copy.deepcopy(ann), levels, timesteps, recipe.v_init), recipe, levels)
    with torch.no_grad():
        for m in snn.modules():
            if isinstance(m, LMHTNeuron):
                for key in NEW_NEURON_KEYS:
                    getattr(m, key).zero_()
    state = remap_qcfs_state(ann.state_dict(), snn, source)
    load_state_strict(snn, state, source, f"the hybrid SNN of --arch {arch} (L={levels}, T={timesteps})")
    return snn.eval(), spec


def hybrid_graph(ann: nn.Module, arch: str, levels: int, timesteps: int, num_classes: int = 10,
                 input_shape: Sequence[int] | None = None) -> Graph:
    """The IR (BatchNorm folded, M-HT neurons as trained) of the hybrid SNN converted from ``ann``."""
    snn, spec = convert_qcfs(ann, arch, levels, timesteps, num_classes, input_shape)
    graph = trace_to_ir(snn, spec.input_shape, timesteps, {"model_spec": spec.to_json()})
    return fold_batchnorm(graph)


def hybrid_deviation(ann: nn.Module, arch: str, x: np.ndarray, pairs: Sequence[tuple[int, int]],
                     y: np.ndarray | None = None, num_classes: int = 10, input_shape: Sequence[int] | None = None,
                     progress: bool = False) -> dict[tuple[int, int], ConversionErrors]:
    """Theorem 4.4 on data: for each (L, T), the per-layer error between the QCFS ANN's activations and the
    converted LM-HT net's mean outputs / L (``total_abs`` of each layer is the mean |Δ|)."""
    out = {}
    for levels, timesteps in pairs:
        graph = hybrid_graph(ann, arch, levels, timesteps, num_classes, input_shape)
        out[(levels, timesteps)] = conversion_errors(graph, ann, x, y, scale=float(levels), progress=progress,
                                                     desc=f"LM-HT L={levels} T={timesteps}")
    return out


def parse_pairs(text: str) -> list[tuple[int, int]]:
    """``"2x2,2x4"`` → [(2, 2), (2, 4)] (L×T pairs)."""
    pairs = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        try:
            levels, steps = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ConversionError(f"--pairs must look like 2x2,2x4 (L x T), got {item!r}") from None
        if levels < 1 or steps < 1:
            raise ConversionError(f"--pairs: L and T must be >= 1, got {item!r}")
        pairs.append((levels, steps))
    return pairs
