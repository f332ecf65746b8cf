"""Input ports shared by the layer and readout Processes: up to MAX_PORTS synaptic paths, each with a delay line."""
from __future__ import annotations

import numpy as np

MAX_PORTS = 4


def port_names() -> list[str]:
    return [f"in{i}" for i in range(MAX_PORTS)]


class DelayLine:
    """A FIFO of ``delay`` steps: ``push(x)`` returns the value pushed ``delay`` calls earlier (zeros at first).

    Aligns synaptic paths of different latency (a residual shortcut reaches the add before the main path).
    """

    def __init__(self, delay: int, shape):
        self.delay = int(delay)
        self.ring = np.zeros((self.delay, *shape), np.int64) if self.delay else None
        self.pos = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        if not self.delay:
            return x
        out = self.ring[self.pos].copy()
        self.ring[self.pos] = x
        self.pos = (self.pos + 1) % self.delay
        return out
