"""Training recipes: what a checkpoint does not store (docs/design.md §1).

``v_init`` (the initial membrane, in units of θ) and the first neuron's input
scale are properties of how a network was trained, never read from its
state_dict, so they are chosen explicitly here and recorded in every artifact.

* direct (authors' ``main.py``): v_init 0, input scale 1, θ initialised to 2/L.
* hybrid (authors' ``hybrid_train.py``): QCFS ANN → IF → LM-HT with θ from QCFS,
  v_init 0.5, M = 0, a = 0; the first neuron's input scale is L.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import LmhtcError
from .neurons import spiking_neurons


@dataclass(frozen=True)
class Recipe:
    name: str
    v_init: float
    first_scale_is_levels: bool

    def input_scale(self, levels: int) -> float:
        return float(levels) if self.first_scale_is_levels else 1.0


RECIPES = {
    "direct": Recipe("direct", v_init=0.0, first_scale_is_levels=False),
    "hybrid": Recipe("hybrid", v_init=0.5, first_scale_is_levels=True),
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise LmhtcError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None


def apply_recipe(model: nn.Module, recipe: Recipe, levels: int) -> nn.Module:
    """Set v_init on every spiking neuron and the input scale of the first one (in place)."""
    neurons = spiking_neurons(model)
    if not neurons:
        raise LmhtcError("model has no spiking neurons to apply a recipe to")
    for _, neuron in neurons:
        neuron.v_init = recipe.v_init
        neuron.scale = 1.0
    neurons[0][1].scale = recipe.input_scale(levels)
    return model
