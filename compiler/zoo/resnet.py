"""Spiking ResNet-18/19/34 with the authors' module names (direct-training recipe).

Layout (docs/design.md §8): stem ``conv1``, ``bn1``, ``sn1``; blocks
``layer{1..4}.{i}.conv{1,2}.{0: conv, 1: BN}``, neurons ``sn{1,2}``, shortcut
``downsample.0.{0: conv, 1: BN}``; classifier ``fc.0`` (ResNet-19:
``fc.0`` Linear, ``fc.1`` neuron, ``fc.2`` Linear). The CIFAR stem is a 3×3
conv; the ImageNet stem a 7×7/2 conv followed by 3×3/2 max-pooling of the
stem's spikes. The stem conv and BN run once on the static image; their output
(times the first neuron's input scale) is repeated over the T steps.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .init import init_weights
from ..neurons import TimeDistributed, repeat_steps

NeuronFactory = Callable[[], nn.Module]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None,
                 neuron: NeuronFactory):
        super().__init__()
        self.conv1 = TimeDistributed(_conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes))
        self.sn1 = neuron()
        self.conv2 = TimeDistributed(_conv3x3(planes, planes), nn.BatchNorm2d(planes))
        self.downsample = downsample
        self.sn2 = neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.sn1(self.conv1(x))
        return self.sn2(self.conv2(out) + identity)


class SpikingResNet(nn.Module):
    """Input ``[B, C, H, W]`` (static image, direct encoding) → output ``[T, B, classes]``."""

    def __init__(self, layers: list[int], neuron: NeuronFactory, timesteps: int, num_classes: int = 10,
                 in_channels: int = 3, stem: str = "cifar", resnet19: bool = False):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"unknown stem {stem!r}")
        self.T = timesteps
        self.stem = stem
        self.inplanes = 64
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.sn1 = neuron()
        self.maxpool = TimeDistributed(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.avgpool = TimeDistributed(nn.AdaptiveAvgPool2d((1, 1)))
        if resnet19:
            self.layer1 = nn.Sequential()
            self.layer2 = self._make_layer(128, layers[0], 1, neuron)
            self.layer3 = self._make_layer(256, layers[1], 2, neuron)
            self.layer4 = self._make_layer(512, layers[2], 2, neuron)
            self.fc = nn.Sequential(TimeDistributed(nn.Linear(512, 256)), neuron(),
                                    TimeDistributed(nn.Linear(256, num_classes)))
        else:
            self.layer1 = self._make_layer(64, layers[0], 1, neuron)
            self.layer2 = self._make_layer(128, layers[1], 2, neuron)
            self.layer3 = self._make_layer(256, layers[2], 2, neuron)
            self.layer4 = self._make_layer(512, layers[3], 2, neuron)
            self.fc = TimeDistributed(nn.Linear(512, num_classes))
        init_weights(self, zero_linear_bias=False)

    def _make_layer(self, planes: int, blocks: int, stride: int, neuron: NeuronFactory) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(TimeDistributed(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes)))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, neuron)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, 1, None, neuron) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        x = repeat_steps(x, self.T)
        x = self.sn1(x)
        if self.stem == "imagenet":
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 2)
        return self.fc(x)


def resnet18(neuron: NeuronFactory, timesteps: int, **kw) -> SpikingResNet:
    return SpikingResNet([2, 2, 2, 2], neuron, timesteps, **kw)


def resnet19(neuron: NeuronFactory, timesteps: int, **kw) -> SpikingResNet:
    return SpikingResNet([3, 3, 2], neuron, timesteps, resnet19=True, **kw)


def resnet34(neuron: NeuronFactory, timesteps: int, **kw) -> SpikingResNet:
    return SpikingResNet([3, 4, 6, 3], neuron, timesteps, **kw)
