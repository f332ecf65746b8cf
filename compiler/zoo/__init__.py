"""The model zoo: the authors' architectures with their parameter names, plus small nets of our own.

``build_snn`` makes the spiking (LM-HT) network of an architecture for a recipe;
``build_qcfs_ann`` makes the QCFS ANN that the hybrid recipe starts from.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

from torch import nn

from ..errors import LmhtcError
from ..neurons import spiking_neuron
from ..recipes import apply_recipe, get_recipe
from . import resnet, vgg
from .digitsnet import DigitsNet
from .hybrid import ann_to_hybrid_snn
from .resnet20 import ResNet20


@dataclass(frozen=True)
class Arch:
    name: str
    description: str
    default_input_shape: tuple[int, int, int]
    recipes: tuple[str, ...]
    direct: Callable | None = None      # (neuron_factory, T, num_classes, input_shape) -> SNN
    qcfs_ann: Callable | None = None    # (num_classes, input_shape, q_levels) -> QCFS ANN


def _resnet(fn, stem):
    def build(neuron, T, num_classes, input_shape):
        return fn(neuron, T, num_classes=num_classes, in_channels=input_shape[0], stem=stem)
    return build


def _vgg(name):
    def build(neuron, T, num_classes, input_shape):
        return vgg.SpikingVGG(name, neuron, T, num_classes, input_shape)
    return build


def _qcfs_vgg(name):
    def build(num_classes, input_shape, q_levels):
        return vgg.QCFSVGG(name, num_classes, input_shape, q_levels)
    return build


def _digits(neuron, T, num_classes, input_shape):
    return DigitsNet(neuron, T, num_classes, input_shape)


def _resnet20(num_classes, input_shape, q_levels):
    return ResNet20(num_classes, input_shape[0], q_levels)


CIFAR = (3, 32, 32)
ARCHS: dict[str, Arch] = {a.name: a for a in [
    Arch("resnet18", "ResNet-18, CIFAR stem", CIFAR, ("direct",), _resnet(resnet.resnet18, "cifar")),
    Arch("resnet19", "ResNet-19 (128-256-512, two-layer classifier)", CIFAR, ("direct",),
         _resnet(resnet.resnet19, "cifar")),
    Arch("resnet34", "ResNet-34, CIFAR stem", CIFAR, ("direct",), _resnet(resnet.resnet34, "cifar")),
    Arch("resnet18-imagenet", "ResNet-18, ImageNet stem (7x7/2 conv, max-pool)", (3, 224, 224), ("direct",),
         _resnet(resnet.resnet18, "imagenet")),
    Arch("resnet34-imagenet", "ResNet-34, ImageNet stem (7x7/2 conv, max-pool)", (3, 224, 224), ("direct",),
         _resnet(resnet.resnet34, "imagenet")),
    Arch("resnet20", "ResNet-20 of the hybrid recipe (QCFS ANN -> LM-HT)", CIFAR, ("hybrid",),
         qcfs_ann=_resnet20),
    Arch("vgg11", "VGG-11", CIFAR, ("direct", "hybrid"), _vgg("vgg11"), _qcfs_vgg("vgg11")),
    Arch("vgg13", "VGG-13", CIFAR, ("direct", "hybrid"), _vgg("vgg13"), _qcfs_vgg("vgg13")),
    Arch("vgg16", "VGG-16", CIFAR, ("direct", "hybrid"), _vgg("vgg16"), _qcfs_vgg("vgg16")),
    Arch("cifarnet", "CIFARNet (5 conv + 3 linear)", CIFAR, ("direct",), _vgg("cifarnet")),
    Arch("digitsnet", "small LM-HT net for 1x8x8 digits (lmhtc's own)", (1, 8, 8), ("direct",), _digits),
]}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise LmhtcError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}") from None


def _validate(levels: int, timesteps: int, num_classes: int, input_shape: Sequence[int]) -> tuple[int, int, int]:
    if levels < 1:
        raise LmhtcError(f"--levels must be >= 1, got {levels}")
    if timesteps < 1:
        raise LmhtcError(f"--timesteps must be >= 1, got {timesteps}")
    if num_classes < 1:
        raise LmhtcError(f"--num-classes must be >= 1, got {num_classes}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise LmhtcError(f"--input-shape must be C,H,W with positive sizes, got {input_shape}")
    return shape


def build_snn(arch: str, levels: int, timesteps: int, num_classes: int = 10, recipe: str = "direct",
              input_shape: Sequence[int] | None = None) -> nn.Module:
    """The LM-HT network of ``arch`` for ``recipe``, ready to load the authors' state_dict."""
    spec = get_arch(arch)
    rec = get_recipe(recipe)
    shape = _validate(levels, timesteps, num_classes, input_shape or spec.default_input_shape)
    if rec.name not in spec.recipes:
        raise LmhtcError(f"architecture {arch!r} has no {rec.name!r} recipe (supported: {', '.join(spec.recipes)})")
    try:
        if rec.name == "hybrid":
            model = ann_to_hybrid_snn(spec.qcfs_ann(num_classes, shape, 8), levels, timesteps, rec.v_init)
        else:
            neuron = partial(spiking_neuron, levels, timesteps, None, rec.v_init)
            model = spec.direct(neuron, timesteps, num_classes, shape)
    except ValueError as exc:
        raise LmhtcError(f"{arch}: {exc}") from None
    return apply_recipe(model, rec, levels)


def build_qcfs_ann(arch: str, num_classes: int = 10, q_levels: int = 8,
                   input_shape: Sequence[int] | None = None) -> nn.Module:
    """The QCFS ANN of ``arch`` (hybrid recipe, first stage)."""
    spec = get_arch(arch)
    if spec.qcfs_ann is None:
        raise LmhtcError(f"architecture {arch!r} has no QCFS ANN form")
    shape = _validate(1, 1, num_classes, input_shape or spec.default_input_shape)
    try:
        return spec.qcfs_ann(num_classes, shape, q_levels)
    except ValueError as exc:
        raise LmhtcError(f"{arch}: {exc}") from None
