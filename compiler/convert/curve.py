"""The accuracy-vs-T experiment of ANN → SNN conversion: threshold schemes side by side.

For every T, the IF network of the ANN (θ = θ_max from calibration data) is built
once and each scheme of ``schemes.SCHEMES`` is applied to it and run with the float
executor on the same images. At ``errors_at`` the run also decomposes the per-layer
conversion error (``analysis``), so that table comes from the same simulation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from ..executor import run_float
from .analysis import ConversionErrors, conversion_errors
from .ann import ConversionError, ann_logits, if_graph
from .schemes import SCHEMES, MSATConfig, apply_scheme


@dataclass
class CurveResult:
    images: int
    ann_accuracy: float
    timesteps: list[int]
    accuracy: dict[str, list[float]]                 # scheme → accuracy per T
    errors: dict[str, ConversionErrors] = field(default_factory=dict)   # scheme → errors at errors_at
    errors_at: int | None = None

    def steps_to_reach(self, scheme: str, within_pp: float = 1.0) -> int | None:
        """The smallest T whose accuracy lies within ``within_pp`` points of the ANN's (None: none does)."""
        for steps, acc in zip(self.timesteps, self.accuracy[scheme]):
            if 100 * (self.ann_accuracy - acc) <= within_pp:
                return steps
        return None

    def to_json(self) -> dict:
        return {"images": self.images, "ann_accuracy": self.ann_accuracy, "timesteps": self.timesteps,
                "accuracy": self.accuracy, "errors_at": self.errors_at,
                "steps_to_within_1pp": {s: self.steps_to_reach(s) for s in self.accuracy},
                "errors": {s: e.to_json() for s, e in self.errors.items()}}


def accuracy_curve(ann: nn.Module, x: np.ndarray, y: np.ndarray, thresholds: dict[str, float],
                   timesteps: Sequence[int], schemes: Sequence[str], config: MSATConfig,
                   input_shape: Sequence[int], errors_at: int | None = None, batch_size: int = 64,
                   progress: bool = False) -> CurveResult:
    """Accuracy of each scheme at each T on (x, y), next to the ANN's; errors decomposed at ``errors_at``."""
    for s in schemes:
        if s not in SCHEMES:
            raise ConversionError(f"unknown threshold scheme {s!r}; choose from {', '.join(SCHEMES)}")
    ann_acc = float((ann_logits(ann, x).argmax(1) == y).mean())
    result = CurveResult(images=len(y), ann_accuracy=ann_acc, timesteps=list(timesteps),
                         accuracy={s: [] for s in schemes}, errors_at=errors_at)
    bar = tqdm(total=len(timesteps) * len(schemes), desc="accuracy vs T", disable=not progress, unit="run")
    for steps in timesteps:
        base = if_graph(ann, steps, thresholds, input_shape)
        for scheme in schemes:
            bar.set_postfix(T=steps, scheme=scheme)
            graph = apply_scheme(base, scheme, config)
            if steps == errors_at:
                errs = conversion_errors(graph, ann, x, y)
                result.errors[scheme] = errs
                acc = errs.accuracy
            else:
                acc = float((run_float(graph, x, batch_size).logits.argmax(1) == y).mean())
            result.accuracy[scheme].append(acc)
            bar.update(1)
    bar.close()
    return result
