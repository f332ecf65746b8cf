"""Per-layer conversion error of a converted SNN against its ANN: quantization, clip and SIN terms.

For every neuron of a layer, in ANN units (SNN values divided by the network's
``scale``: 1 for threshold-balanced IF/MSAT nets, L for the hybrid LM-HT recipe):

* ``r`` — the SNN's mean output over the T steps;
* ``z`` — the SNN's own mean pre-activation (the neuron's input current averaged over
  the steps, times its input scale): what an ideal ReLU would see given the SNN's inputs;
* ``c`` — the largest mean output the neuron can emit (L·θ for an L-level neuron,
  θ_max for MSAT);
* ``a`` — the ANN's activation, ``z_ann`` its pre-activation.

The layer's local conversion error ``r − ReLU(z)`` (MSAT paper, Eq. 14) splits into

* SIN (spikes of inactivated neurons): ``r`` where ``z ≤ 0`` (the neuron should be silent);
* clip: ``min(z, c) − z`` where ``z > 0`` (what clipping at c loses, ≤ 0);
* quantization: ``r − min(z, c)`` where ``z > 0`` (floor error and residual membrane);

and the rest of the deviation from the ANN splits into ``inherited = ReLU(z) − ReLU(z_ann)``
(the error the layer's input carries in from earlier layers) and ``ann = ReLU(z_ann) − a``
(the ANN's own activation against a ReLU: QCFS quantization and clip; 0 for a ReLU
ANN). So, per neuron and exactly up to float rounding, ``quantization + clip + SIN =
local`` and ``local + inherited + ann = total = r − a``. Layer figures are means over neurons and images (signed, so they add
up; mean |·| besides). The SIN ratio at step t is the share of the layer's firing
neurons that are inactivated; the SIN share is the fraction of the layer's neurons that
are inactivated and fire at least once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..executor import run_float
from ..ir import Graph, Neuron
from .ann import ConversionError, ann_layer_values
from .msat_node import MSATNeuron

TERMS = ("quantization", "clip", "sin", "local", "inherited", "ann", "total")
CAPTURE_BUDGET = 2 ** 25      # floats of captured sequences per batch (128 MiB in float32)


@dataclass
class LayerError:
    layer: str
    neurons: int
    quantization: float = 0.0
    clip: float = 0.0
    sin: float = 0.0
    local: float = 0.0
    inherited: float = 0.0
    ann: float = 0.0
    total: float = 0.0
    quantization_abs: float = 0.0
    clip_abs: float = 0.0
    sin_abs: float = 0.0
    local_abs: float = 0.0
    inherited_abs: float = 0.0
    ann_abs: float = 0.0
    total_abs: float = 0.0
    sin_share: float = 0.0                          # fraction of neurons that are inactivated and fire
    sin_ratio: list[float] = field(default_factory=list)   # per step: inactivated share of firing neurons


@dataclass
class ConversionErrors:
    images: int
    steps: int
    scale: float
    layers: list[LayerError]
    accuracy: float | None = None
    ann_accuracy: float | None = None

    def to_json(self) -> dict:
        return asdict(self)

    def layer(self, name: str) -> LayerError:
        return next(layer for layer in self.layers if layer.layer == name)


def decompose(r: torch.Tensor, z: torch.Tensor, z_ann: torch.Tensor, a: torch.Tensor,
              c: torch.Tensor | float) -> dict[str, torch.Tensor]:
    """Per-neuron error terms (see the module docstring); all arguments in ANN units, broadcastable."""
    inactive = z <= 0
    zero = torch.zeros((), dtype=r.dtype)
    zc = torch.minimum(z, torch.as_tensor(c, dtype=z.dtype))
    quant = torch.where(inactive, zero, r - zc)
    clip = torch.where(inactive, zero, zc - z)
    sin = torch.where(inactive, r, zero)
    local = quant + clip + sin
    inherited = torch.clamp(z, min=0) - torch.clamp(z_ann, min=0)
    ann = torch.clamp(z_ann, min=0) - a
    return {"quantization": quant, "clip": clip, "sin": sin, "local": local, "inherited": inherited, "ann": ann,
            "total": local + inherited + ann, "inactive": inactive}


def _neuron_layers(graph: Graph) -> list:
    layers = graph.nodes_of(Neuron, MSATNeuron)
    if not layers:
        raise ConversionError("the network has no neuron layers to analyse")
    return layers


def _clip_level(node) -> float:
    return float(node.theta_max) if isinstance(node, MSATNeuron) else float(node.levels * node.threshold)


def _input_scale(node) -> float:
    return float(getattr(node, "input_scale", 1.0))


def conversion_errors(graph: Graph, ann: nn.Module, x: np.ndarray, y: np.ndarray | None = None, scale: float = 1.0,
                      batch_size: int | None = None, progress: bool = False,
                      desc: str = "conversion error") -> ConversionErrors:
    """Run ``graph`` and ``ann`` on ``x`` and decompose each neuron layer's error (layers matched by name)."""
    layers = _neuron_layers(graph)
    per_image = sum(2 * graph.steps * int(np.prod(n.shape)) for n in layers)
    if batch_size is None:
        batch_size = max(1, min(64, CAPTURE_BUDGET // max(per_image, 1)))
    capture = {n.name for n in layers} | {n.inputs[0] for n in layers}
    acc = {n.name: {t: 0.0 for t in TERMS} | {t + "_abs": 0.0 for t in TERMS} for n in layers}
    sin_fire = {n.name: 0.0 for n in layers}
    sin_steps = {n.name: np.zeros(graph.steps) for n in layers}
    fire_steps = {n.name: np.zeros(graph.steps) for n in layers}
    correct = ann_correct = 0
    xt = torch.as_tensor(x)
    with torch.no_grad():
        for i in tqdm(range(0, len(xt), batch_size), desc=desc, disable=not progress, unit="batch"):
            xb = xt[i:i + batch_size]
            run = run_float(graph, xb, batch_size=len(xb), capture=capture)
            acts = ann_layer_values(ann, xb, [n.name for n in layers])
            if y is not None:
                yb = np.asarray(y[i:i + batch_size])
                correct += int((run.logits.argmax(1) == yb).sum())
                ann_correct += int((ann(xb).argmax(1).numpy() == yb).sum())
            for node in layers:
                if node.name not in acts:
                    raise ConversionError(f"neuron layer {node.name!r} has no ANN activation layer of that name")
                out = torch.from_numpy(run.captured[node.name]).double()
                cur = torch.from_numpy(run.captured[node.inputs[0]]).double()
                r = out.mean(0) / scale
                z = cur.mean(0) * _input_scale(node) / scale
                z_ann, a_ann = (v.double() for v in acts[node.name])
                terms = decompose(r, z, z_ann, a_ann, _clip_level(node) / scale)
                a = acc[node.name]
                for t in TERMS:
                    a[t] += float(terms[t].sum())
                    a[t + "_abs"] += float(terms[t].abs().sum())
                fired = out != 0
                inactive = terms["inactive"]
                sin_fire[node.name] += float((fired.any(0) & inactive).sum())
                sin_steps[node.name] += (fired & inactive).flatten(1).sum(1).numpy()
                fire_steps[node.name] += fired.flatten(1).sum(1).numpy()
    n_images = len(xt)
    result = []
    for node in layers:
        count = n_images * int(np.prod(node.shape))
        row = LayerError(node.name, int(np.prod(node.shape)),
                         **{k: v / count for k, v in acc[node.name].items()})
        row.sin_share = sin_fire[node.name] / count
        fires = fire_steps[node.name]
        row.sin_ratio = [float(s / f) if f else 0.0 for s, f in zip(sin_steps[node.name], fires)]
        result.append(row)
    return ConversionErrors(images=n_images, steps=graph.steps, scale=float(scale), layers=result,
                            accuracy=None if y is None else correct / n_images,
                            ann_accuracy=None if y is None else ann_correct / n_images)
