"""Resource estimate for a Loihi-style neuromorphic chip, from a core description given as data.

A core description (``compiler/hardware/*.json``: ``loihi1``, ``loihi2``, or a
user's file) states ``cores_per_chip``, ``neurons_per_core``,
``synaptic_memory_bytes_per_core``, ``max_weight_bits``,
``synapse_overhead_bits`` (bits stored per synapse besides the weight),
``membrane_bits``, ``graded_spikes`` and ``source``.

Mapping model (one layer per core, every synapse stored, no weight sharing, a
core holds whole neurons with their whole fan-in): a layer (neuron layer, or
the readout's accumulators) with n compartments, fan-in f per neuron and S
incoming synapses of b bits each (its weight width in an integer graph, the
chip's ``max_weight_bits`` for a float graph, plus the overhead) puts

    m = min(neurons_per_core, ⌊8·synaptic_memory_bytes_per_core / (f·b)⌋)

neurons on a core, needs ⌈n / m⌉ cores, and holds on average n/cores neurons
and S·b/8/cores bytes of synapses per core. Chips =
⌈Σ cores / cores_per_chip⌉. A layer does not fit — it is named, with the
reason — when one neuron's fan-in alone exceeds a core's synaptic memory, its
weights are wider than the chip's, its membranes wider than the chip's, or it
emits multi-level spikes on a chip without graded spikes.

Invariant: a function of the static costs and the core description only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import LmhtcError
from .presets import builtin_names, read_preset
from .static import StaticCosts

HARDWARE_DIR = Path(__file__).resolve().parents[1] / "hardware"


class HardwareError(LmhtcError):
    pass


@dataclass(frozen=True)
class CoreSpec:
    name: str
    source: str
    cores_per_chip: int
    neurons_per_core: int
    synaptic_memory_bytes_per_core: int
    max_weight_bits: int
    membrane_bits: int
    graded_spikes: bool
    synapse_overhead_bits: int = 0
    description: str = ""
    notes: str = ""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class LayerResources:
    layer: str
    compartments: int
    synapses: int
    bits_per_synapse: int
    cores: int | None                 # None when the layer does not fit
    neurons_per_core: float | None
    synaptic_memory_bytes_per_core: float | None
    fits: bool
    reason: str = ""


@dataclass
class ResourceEstimate:
    hardware: CoreSpec
    layers: list[LayerResources]

    @property
    def cores(self) -> int:
        return sum(r.cores for r in self.layers if r.cores is not None)

    @property
    def chips(self) -> int:
        return math.ceil(self.cores / self.hardware.cores_per_chip) if self.cores else 0

    @property
    def does_not_fit(self) -> list[LayerResources]:
        return [r for r in self.layers if not r.fits]

    def to_json(self) -> dict:
        return {"hardware": self.hardware.name, "cores": self.cores, "chips": self.chips,
                "does_not_fit": [{"layer": r.layer, "reason": r.reason} for r in self.does_not_fit],
                "layers": [asdict(r) for r in self.layers]}


_INTS = ("cores_per_chip", "neurons_per_core", "synaptic_memory_bytes_per_core", "max_weight_bits",
         "membrane_bits", "synapse_overhead_bits")
_TEXTS = ("name", "source", "description", "notes")
_REQUIRED = ("name", "source", "cores_per_chip", "neurons_per_core", "synaptic_memory_bytes_per_core",
             "max_weight_bits", "membrane_bits", "graded_spikes")


def builtin_hardware() -> list[str]:
    return builtin_names(HARDWARE_DIR)


def core_spec_from_json(data, where: str) -> CoreSpec:
    """Validate a parsed core description; errors name ``where`` (the file) and the key at fault."""
    if not isinstance(data, dict):
        raise HardwareError(f"{where}: a core description must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_INTS) - set(_TEXTS) - {"graded_spikes"})
    if unknown:
        raise HardwareError(f"{where}: unknown key {unknown[0]!r} (expected: {', '.join(_REQUIRED)}, "
                            f"synapse_overhead_bits, description, notes)")
    for key in _REQUIRED:
        if key not in data:
            raise HardwareError(f"{where}: missing key {key!r}")
    for key in _TEXTS:
        if key in data and not isinstance(data[key], str):
            raise HardwareError(f"{where}: key {key!r} must be a string")
    if not data["source"].strip() or not data["name"].strip():
        raise HardwareError(f"{where}: keys 'name' and 'source' must not be empty (cite the figures)")
    for key in _INTS:
        if key in data:
            v = data[key]
            low = 0 if key == "synapse_overhead_bits" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise HardwareError(f"{where}: key {key!r} must be an integer >= {low}, got {v!r}")
    if not isinstance(data["graded_spikes"], bool):
        raise HardwareError(f"{where}: key 'graded_spikes' must be true or false")
    return CoreSpec(**data)


def load_hardware(spec: str) -> CoreSpec:
    """A built-in core description by name (loihi1, loihi2), or a JSON file by path."""
    data, where = read_preset(spec, HARDWARE_DIR, "hardware description", HardwareError)
    return core_spec_from_json(data, where)


def estimate_resources(static: StaticCosts, hw: CoreSpec) -> ResourceEstimate:
    """Cores and chips per layer and in total; layers that cannot be mapped are named with the reason."""
    mem_bits = 8 * hw.synaptic_memory_bytes_per_core
    out = []
    for layer in static.layers:
        wbits = layer.weight_bits if layer.weight_bits is not None else hw.max_weight_bits
        b = wbits + hw.synapse_overhead_bits
        reasons = []
        if layer.weight_bits is not None and layer.weight_bits > hw.max_weight_bits:
            reasons.append(f"{layer.weight_bits}-bit weights exceed {hw.name}'s {hw.max_weight_bits}-bit synapses")
        if layer.membrane_bits is not None and layer.kind == "neuron" and layer.membrane_bits > hw.membrane_bits:
            reasons.append(f"{layer.membrane_bits}-bit membranes exceed {hw.name}'s {hw.membrane_bits} bits")
        if layer.levels > 1 and not hw.graded_spikes:
            reasons.append(f"emits {layer.levels}-level spikes; {hw.name} has binary spikes only "
                           f"(reparameterize to single-threshold neurons)")
        if layer.fan_in * b > mem_bits:
            reasons.append(f"one neuron's fan-in of {layer.fan_in} synapses x {b} bits exceeds a core's "
                           f"{hw.synaptic_memory_bytes_per_core} bytes of synaptic memory")
        if reasons:
            out.append(LayerResources(layer.name, layer.outputs, layer.synapses, b, None, None, None, False,
                                      "; ".join(reasons)))
            continue
        per_core = min(hw.neurons_per_core, mem_bits // max(layer.fan_in * b, 1))
        cores = max(math.ceil(layer.outputs / per_core), 1)
        out.append(LayerResources(layer.name, layer.outputs, layer.synapses, b, cores, layer.outputs / cores,
                                  layer.synapses * b / 8 / cores, True))
    return ResourceEstimate(hw, out)
