"""QCFS ANN → LM-HT SNN transformation of the hybrid recipe (LM-HT paper §4.4).

The authors' pipeline wraps every synaptic/pooling layer of the ANN in a
per-time-step container (so state-dict keys gain a ``.0`` level) and replaces
each QCFS activation by an LM-HT neuron with the QCFS threshold, v_init 0.5,
M = 0 and a = 0. The first neuron's input scale is set by the recipe
(``lmhtc.compiler.recipes``). The module keeps the ANN's forward structure; models
built here run in spiking mode when ``model.spiking`` is True.
"""
from __future__ import annotations

from torch import nn

from ..neurons import QCFS, LMHTNeuron, TimeDistributed

PER_STEP_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.Dropout, nn.AvgPool2d,
                   nn.AdaptiveAvgPool2d, nn.MaxPool2d)


def wrap_layers_per_step(model: nn.Module) -> nn.Module:
    """Wrap every layer of PER_STEP_LAYERS in a ``TimeDistributed`` container (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, PER_STEP_LAYERS):
            setattr(model, name, TimeDistributed(child))
        elif not isinstance(child, TimeDistributed):
            wrap_layers_per_step(child)
    return model


def qcfs_to_lmht(model: nn.Module, levels: int, timesteps: int, v_init: float = 0.5) -> nn.Module:
    """Replace every QCFS activation by an LM-HT neuron with θ = the QCFS threshold (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, QCFS):
            setattr(model, name, LMHTNeuron(levels, timesteps, float(child.thresh.item()), v_init))
        else:
            qcfs_to_lmht(child, levels, timesteps, v_init)
    return model


def ann_to_hybrid_snn(model: nn.Module, levels: int, timesteps: int, v_init: float = 0.5) -> nn.Module:
    """QCFS ANN (``model.spiking`` False) → LM-HT SNN running ``timesteps`` steps (in place)."""
    wrap_layers_per_step(model)
    qcfs_to_lmht(model, levels, timesteps, v_init)
    model.spiking = True
    model.T = timesteps
    return model
