"""VGG-11/13/16 and CIFARNet with the authors' module names.

Two families, as in the authors' code:

* ``SpikingVGG`` — direct training (their ``models/VGG.py``): blocks ``layer{1..5}``
  of ``[TimeDistributed(conv, BN), neuron, TimeDistributed(Dropout)]`` per conv and
  ``TimeDistributed(AvgPool2d(2))`` per 'M' ('MM' = global average pooling);
  classifier ``classifier.{0,3,6}`` Linear with neurons at 1 and 4 (CIFARNet alike;
  a single Linear for 200 classes). Convolutions and linear layers carry a bias.
* ``QCFSVGG`` — the QCFS ANN of the hybrid recipe (their ``ann_models/VGG.py``):
  ``layer{1..5}`` of ``conv, BN, QCFS, Dropout`` and ``AvgPool2d`` entries;
  classifier ``Dropout, Linear, QCFS, Dropout, Linear, QCFS, Dropout, Linear``.
  ``lmhtc.compiler.zoo.hybrid`` turns it into the hybrid LM-HT SNN.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .init import init_weights
from ..neurons import QCFS, TimeDistributed, repeat_steps

NeuronFactory = Callable[[], nn.Module]

SNN_CFG = {
    "vgg11": [[64, "M"], [128, "M"], [256, 256, "M"], [512, 512, "M"], [512, 512, "M"]],
    "vgg13": [[64, 64, "M"], [128, 128, "M"], [256, 256, "M"], [512, 512, 512, "M"], [512, "MM"]],
    "vgg16": [[64, 64, "M"], [128, 128, "M"], [256, 256, 256, "M"], [512, 512, 512, "M"], [512, 512, 512, "M"]],
    "cifarnet": [[128], [256, "M"], [512, "M"], [1024], [512]],
}
ANN_CFG = {
    "vgg11": SNN_CFG["vgg11"],
    "vgg13": [[64, 64, "M"], [128, 128, "M"], [256, 256, "M"], [512, 512, "M"], [512, 512, "M"]],
    "vgg16": SNN_CFG["vgg16"],
}


def _feature_shape(cfg: Sequence[Sequence], input_shape: Sequence[int]) -> tuple[int, int, int]:
    _, h, w = input_shape
    channels = input_shape[0]
    for block in cfg:
        for item in block:
            if item == "M":
                h, w = h // 2, w // 2
            elif item == "MM":
                h, w = 1, 1
            else:
                channels = item
    return channels, h, w


def _check_input(name: str, cfg, input_shape) -> int:
    c, h, w = _feature_shape(cfg, input_shape)
    if h < 1 or w < 1:
        raise ValueError(f"{name}: input shape {tuple(input_shape)} is too small for its pooling layers")
    return c * h * w


class SpikingVGG(nn.Module):
    """Input ``[B, C, H, W]`` → output ``[T, B, classes]``."""

    def __init__(self, name: str, neuron: NeuronFactory, timesteps: int, num_classes: int = 10,
                 input_shape: Sequence[int] = (3, 32, 32), dropout: float = 0.0):
        super().__init__()
        cfg = SNN_CFG[name]
        self.T = timesteps
        self._channels = input_shape[0]
        for i, block in enumerate(cfg, start=1):
            setattr(self, f"layer{i}", self._make_block(block, neuron, dropout))
        flat = _check_input(name, cfg, input_shape)
        if name == "cifarnet":
            dims = [flat, 1024, 512]
        elif num_classes == 200:
            dims = [flat]
        else:
            dims = [flat, 4096, 4096]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [TimeDistributed(nn.Linear(d_in, d_out)), neuron(), TimeDistributed(nn.Dropout(dropout))]
        layers.append(TimeDistributed(nn.Linear(dims[-1], num_classes)))
        self.classifier = layers[0] if len(layers) == 1 else nn.Sequential(*layers)
        init_weights(self, zero_linear_bias=True)

    def _make_block(self, block, neuron: NeuronFactory, dropout: float) -> nn.Sequential:
        layers: list[nn.Module] = []
        for item in block:
            if item == "M":
                layers.append(TimeDistributed(nn.AvgPool2d(kernel_size=2, stride=2)))
            elif item == "MM":
                layers.append(TimeDistributed(nn.AdaptiveAvgPool2d((1, 1))))
            else:
                layers += [TimeDistributed(nn.Conv2d(self._channels, item, kernel_size=3, padding=1),
                                           nn.BatchNorm2d(item)),
                           neuron(), TimeDistributed(nn.Dropout(dropout))]
                self._channels = item
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = repeat_steps(x, self.T)
        for i in range(1, 6):
            x = getattr(self, f"layer{i}")(x)
        return self.classifier(torch.flatten(x, 2))


class QCFSVGG(nn.Module):
    """QCFS ANN; ``[B,C,H,W]`` → ``[B,classes]`` (spiking mode after conversion: ``[T,B,classes]``)."""

    def __init__(self, name: str, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32),
                 q_levels: int = 8, thresh: float = 8.0, dropout: float = 0.0):
        super().__init__()
        cfg = ANN_CFG[name]
        self.spiking = False
        self.T = 1
        channels = input_shape[0]
        for i, block in enumerate(cfg, start=1):
            layers: list[nn.Module] = []
            for item in block:
                if item == "M":
                    layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.BatchNorm2d(item),
                               QCFS(q_levels, thresh), nn.Dropout(dropout)]
                    channels = item
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        flat = _check_input(name, cfg, input_shape)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(flat, 4096), QCFS(q_levels, thresh), nn.Dropout(dropout),
            nn.Linear(4096, 4096), QCFS(q_levels, thresh), nn.Dropout(dropout), nn.Linear(4096, num_classes))
        init_weights(self, zero_linear_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat_from = 1
        if self.spiking:
            x = repeat_steps(x, self.T)
            flat_from = 2
        for i in range(1, 6):
            x = getattr(self, f"layer{i}")(x)
        return self.classifier(torch.flatten(x, flat_from))
