"""The zoo's weight initialisation: one rule per module type, applied in module order.

Invariant: the rules draw random numbers in ``model.modules()`` order (Kaiming-normal convolutions,
fan-out mode), so a seeded build gives the same weights as the torchvision-style loops it replaces.
"""
from __future__ import annotations

from torch import nn

from ..type_rules import rule_for


def _batchnorm(m: nn.BatchNorm2d) -> None:
    nn.init.ones_(m.weight)
    nn.init.zeros_(m.bias)


RULES = {
    nn.Conv2d: lambda m: nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu"),
    nn.BatchNorm2d: _batchnorm,
}


def init_weights(model: nn.Module, zero_linear_bias: bool = False) -> None:
    """Initialise every convolution and batch norm of ``model`` (and, with ``zero_linear_bias``, zero the
    biases of its linear layers)."""
    rules = {**RULES, nn.Linear: lambda m: nn.init.zeros_(m.bias)} if zero_linear_bias else RULES
    for m in model.modules():
        rule = rule_for(rules, m)
        if rule is not None:
            rule(m)
