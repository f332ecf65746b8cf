"""ResNet-20 of the hybrid recipe (the authors' ``ann_models`` ResNet4Cifar, QCFS activations).

ANN keys: ``conv1.{0: conv, 1: BN, 2: act}``, ``conv{2,3,4}_x.{i}.residual_function.{0..4}``
(conv, BN, act, conv, BN), ``shortcut.{0: conv, 1: BN}`` when the shape changes,
``relu`` (act after the residual add), ``fc``. The hybrid SNN (``lmhtc.compiler.zoo.hybrid``)
wraps each layer per time-step, which adds a ``.0`` level to those keys.
"""
from __future__ import annotations

import torch
from torch import nn

from ..neurons import QCFS, repeat_steps


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, q_levels: int, thresh: float):
        super().__init__()
        self.residual_function = nn.Sequential(
            nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            QCFS(q_levels, thresh),
            nn.Conv2d(cout, cout, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(cout))
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(cout))
        self.relu = QCFS(q_levels, thresh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.residual_function(x) + self.shortcut(x))


class ResNet20(nn.Module):
    """ANN mode: ``[B,C,H,W]`` → ``[B,classes]``; spiking mode: ``[B,C,H,W]`` → ``[T,B,classes]``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, q_levels: int = 8, thresh: float = 8.0):
        super().__init__()
        self.spiking = False
        self.T = 1
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, 16, kernel_size=3, padding=1, bias=False),
                                   nn.BatchNorm2d(16), QCFS(q_levels, thresh))
        self.in_channels = 16
        self.conv2_x = self._make_layer(16, 3, 1, q_levels, thresh)
        self.conv3_x = self._make_layer(32, 3, 2, q_levels, thresh)
        self.conv4_x = self._make_layer(64, 3, 2, q_levels, thresh)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)

    def _make_layer(self, cout: int, blocks: int, stride: int, q_levels: int, thresh: float) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(ResidualBlock(self.in_channels, cout, s, q_levels, thresh))
            self.in_channels = cout
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat_from = 1
        if self.spiking:
            x = repeat_steps(x, self.T)
            flat_from = 2
        x = self.conv4_x(self.conv3_x(self.conv2_x(self.conv1(x))))
        x = torch.flatten(self.avg_pool(x), flat_from)
        return self.fc(x)


def resnet20(num_classes: int = 10, in_channels: int = 3, q_levels: int = 8) -> ResNet20:
    return ResNet20(num_classes, in_channels, q_levels)
