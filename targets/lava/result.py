"""``LavaRunResult``: what one run of the Lava network returns (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LavaRunResult:
    outputs_int: np.ndarray            # [steps, N, classes] int64, per-step integer logits
    logits_int: np.ndarray             # [N, classes] int64, sum over steps
    logits: np.ndarray                 # [N, classes] float64, logits_int · scale / steps
    spikes: dict[str, np.ndarray] = field(default_factory=dict)   # neuron node → [steps, N, ...] int64 counts
    layer_names: list[str] = field(default_factory=list)
    time_steps: int = 0                # Lava time-steps run (pipeline fill + one period per image)
    latency_steps: int = 0             # first input step to last logit of one image
    wall_s: float = 0.0                # build + run + stop
