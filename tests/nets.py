"""Small random LM-HT networks for tests, built from lmhtc's modules (traced by the torch.fx frontend)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lmhtc.compiler.neurons import LMHTNeuron, TimeDistributed, repeat_steps


class TinyResNet(nn.Module):
    """conv+BN → neuron → conv+BN (+ residual) → neuron → avg-pool → flatten → linear → neuron → linear."""

    def __init__(self, levels: int, T: int, channels: int = 4, classes: int = 3, in_ch: int = 2, size: int = 8,
                 residual: bool = True, batchnorm: bool = True, bias: bool = True, hidden: int = 8):
        super().__init__()
        self.T = T
        self.residual = residual

        def conv(cin, cout):
            layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=bias)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(cout))
            return TimeDistributed(*layers)

        self.stem = conv(in_ch, channels)
        self.sn0 = LMHTNeuron(levels, T)
        self.conv = conv(channels, channels)
        self.sn1 = LMHTNeuron(levels, T)
        self.pool = TimeDistributed(nn.AvgPool2d(2))
        self.fc = TimeDistributed(nn.Linear(channels * (size // 2) ** 2, hidden, bias=bias))
        self.sn2 = LMHTNeuron(levels, T)
        self.head = TimeDistributed(nn.Linear(hidden, classes, bias=bias))

    def forward(self, x):
        x = repeat_steps(x, self.T)
        a = self.sn0(self.stem(x))
        b = self.conv(a)
        if self.residual:
            b = b + a
        b = self.sn1(b)
        y = torch.flatten(self.pool(b), 2)
        return self.head(self.sn2(self.fc(y)))


class DownsampleNet(nn.Module):
    """A ResNet downsample block: a strided 3×3 conv+BN path plus a 1×1 strided conv+BN shortcut, added."""

    def __init__(self, levels: int, T: int, channels: int = 4, classes: int = 3):
        super().__init__()
        self.T = T
        self.stem = TimeDistributed(nn.Conv2d(2, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.sn0 = LMHTNeuron(levels, T)
        self.conv = TimeDistributed(nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1, bias=False),
                                    nn.BatchNorm2d(2 * channels))
        self.shortcut = TimeDistributed(nn.Conv2d(channels, 2 * channels, 1, stride=2, bias=False),
                                        nn.BatchNorm2d(2 * channels))
        self.sn1 = LMHTNeuron(levels, T)
        self.head = TimeDistributed(nn.Linear(2 * channels * 4 * 4, classes))

    def forward(self, x):
        a = self.sn0(self.stem(repeat_steps(x, self.T)))
        return self.head(torch.flatten(self.sn1(self.conv(a) + self.shortcut(a)), 2))


def randomize(model: nn.Module, seed: int, leak_spread: float = 1.0, mask_spread: float = 1.0,
              thresholds=(0.5, 1.0, 2.0)) -> nn.Module:
    """Random weights, BN statistics, leaks, T-GIM logits and thresholds (reproducible from ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            elif isinstance(m, LMHTNeuron):
                m.alpha.fill_(float(rng.normal(0, leak_spread)))
                m.mask.copy_(torch.randn(m.mask.shape, generator=g) * mask_spread)
                m.mask_linear.copy_(torch.randn(m.mask_linear.shape, generator=g) * mask_spread)
                m.v_threshold.fill_(float(rng.choice(thresholds)))
    return model.eval()


def theorem_net(levels: int, T: int, seed: int) -> nn.Module:
    """A net meeting Theorem 4.2's conditions layer by layer, in exactly representable (dyadic) values.

    λ = 1 (a = 0), v_init 0, Ω entries in {0, 1/T, 2/T} (M ∈ {−inf, 0, +inf}; the diagonal
    non-zero), non-negative dyadic
    weights and biases small enough that every step's input current lies in [0, Lθ).
    """
    model = TinyResNet(levels, T, residual=False, batchnorm=False)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        neurons = [model.sn0, model.sn1, model.sn2]
        for n in neurons:
            n.v_threshold.fill_(float(rng.choice([0.5, 1.0, 2.0])))
            logits = rng.choice([-np.inf, 0.0, np.inf], size=(T, T))
            np.fill_diagonal(logits, rng.choice([0.0, np.inf], size=T))   # every step sees its own input
            choice = torch.tensor(logits, dtype=torch.float32)
            n.mask.copy_(choice.reshape(n.mask.shape))
            n.mask_linear.copy_(choice.reshape(n.mask_linear.shape))
        # per-step input x = W·s + b with b ≤ 5/16·Lθ and W·s ≤ 2/16·Lθ, so x < Lθ/2 and, as the rows of
        # Ω sum to at most 2, every step's current Σ_j Ω[t,j]·x_j lies in [0, Lθ)
        prev_peak = 1.0   # input images lie in [0, 1]
        for layer, n in [(model.stem[0], model.sn0), (model.conv[0], model.sn1), (model.fc[0], model.sn2),
                         (model.head[0], None)]:
            lt = levels * (n.v_threshold.item() if n is not None else 1.0)
            fan_in = layer.weight[0].numel()
            step = 2.0 ** -int(np.ceil(np.log2(24 * fan_in * prev_peak / lt)))
            layer.weight.copy_(torch.tensor(rng.integers(0, 4, size=layer.weight.shape) * step, dtype=torch.float32))
            layer.bias.copy_(torch.tensor(rng.integers(2, 6, size=layer.bias.shape) * lt / 16, dtype=torch.float32))
            if n is not None:
                prev_peak = lt
    return model.eval()


def dyadic_images(n: int, shape=(2, 8, 8), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 17, size=(n, *shape)) / 16.0).astype(np.float32)


class StridedNet(nn.Module):
    """Covers the event path's geometry: strided, grouped, dilated convolutions and avg-pool with padding."""

    def __init__(self, levels: int, T: int, classes: int = 3):
        super().__init__()
        self.T = T
        self.stem = TimeDistributed(nn.Conv2d(2, 4, 3, padding=1))
        self.sn0 = LMHTNeuron(levels, T)
        self.grouped = TimeDistributed(nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2))
        self.sn1 = LMHTNeuron(levels, T)
        self.dilated = TimeDistributed(nn.Conv2d(6, 4, 3, padding=2, dilation=2, bias=False))
        self.sn2 = LMHTNeuron(levels, T)
        self.pool = TimeDistributed(nn.AvgPool2d(3, stride=2, padding=1))
        self.head = TimeDistributed(nn.Linear(4 * 2 * 2, classes))

    def forward(self, x):
        x = repeat_steps(x, self.T)
        x = self.sn2(self.dilated(self.sn1(self.grouped(self.sn0(self.stem(x))))))
        return self.head(torch.flatten(self.pool(x), 2))
