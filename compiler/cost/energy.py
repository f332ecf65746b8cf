"""Energy models as data: per-operation energies read from JSON files.

A model is a JSON object with ``name``, ``source`` (the citation of its
figures), ``e_sop_pj`` (one synaptic operation), ``e_mac_pj`` (one
multiply-accumulate: the analog-input layer and the equivalent ANN) and
optionally ``e_neuron_update_pj`` (one neuron updated for one time-step),
``description`` and ``notes``. The built-in models live in
``compiler/energy_models/`` (``45nm``: the LM-HT paper's convention; ``loihi``);
``--energy-model FILE`` reads a user's file of the same form.

    E_SNN = e_sop·SOPs + e_mac·analog MACs + e_neuron_update·neurons·steps
    E_ANN = e_mac·(MACs of one pass of the equivalent ANN)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import LmhtcError
from .presets import builtin_names, read_preset

MODELS_DIR = Path(__file__).resolve().parents[1] / "energy_models"
PJ_PER_MJ = 1e9


class EnergyModelError(LmhtcError):
    pass


@dataclass(frozen=True)
class EnergyModel:
    name: str
    source: str
    e_sop_pj: float
    e_mac_pj: float
    e_neuron_update_pj: float = 0.0
    description: str = ""
    notes: str = ""

    def snn_pj(self, sops: float, macs: float, neuron_updates: float) -> dict[str, float]:
        """Energy of a spiking run, by kind of operation (pJ)."""
        parts = {"sop": self.e_sop_pj * sops, "mac": self.e_mac_pj * macs,
                 "neuron_update": self.e_neuron_update_pj * neuron_updates}
        parts["total"] = sum(parts.values())
        return parts

    def ann_pj(self, macs: float) -> float:
        return self.e_mac_pj * macs

    def to_json(self) -> dict:
        return asdict(self)


_NUMBERS = ("e_sop_pj", "e_mac_pj", "e_neuron_update_pj")
_TEXTS = ("name", "source", "description", "notes")
_REQUIRED = ("name", "source", "e_sop_pj", "e_mac_pj")


def builtin_energy_models() -> list[str]:
    return builtin_names(MODELS_DIR)


def energy_model_from_json(data, where: str) -> EnergyModel:
    """Validate a parsed model; errors name ``where`` (the file) and the key at fault."""
    if not isinstance(data, dict):
        raise EnergyModelError(f"{where}: an energy model must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_NUMBERS) - set(_TEXTS))
    if unknown:
        raise EnergyModelError(f"{where}: unknown key {unknown[0]!r} (expected: {', '.join(_TEXTS + _NUMBERS)})")
    for key in _REQUIRED:
        if key not in data:
            raise EnergyModelError(f"{where}: missing key {key!r}")
    for key in _TEXTS:
        if key in data and not isinstance(data[key], str):
            raise EnergyModelError(f"{where}: key {key!r} must be a string")
    for key in ("name", "source"):
        if not data[key].strip():
            raise EnergyModelError(f"{where}: key {key!r} must not be empty (cite where the figures come from)")
    for key in _NUMBERS:
        if key in data:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise EnergyModelError(f"{where}: key {key!r} must be a finite number >= 0 (pJ), got {v!r}")
    return EnergyModel(**{k: (float(v) if k in _NUMBERS else v) for k, v in data.items()})


def load_energy_model(spec: str) -> EnergyModel:
    """A built-in model by name, or a JSON file by path."""
    data, where = read_preset(spec, MODELS_DIR, "energy model", EnergyModelError)
    return energy_model_from_json(data, where)


def pj_to_mj(pj: float) -> float:
    return pj / PJ_PER_MJ
