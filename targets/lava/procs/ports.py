"""Input ports shared by the layer and readout Processes: up to MAX_PORTS synaptic paths, each with a delay line."""
from __future__ import annotations

import numpy as np

from lmhtc.semantics import exp_shift

MAX_PORTS = 4


def port_names() -> list[str]:
    return [f"in{i}" for i in range(MAX_PORTS)]


def check_ports(exponents, delays, name) -> None:
    """A Process needs 1..MAX_PORTS connected ports, each with one exponent and one delay."""
    if not 1 <= len(exponents) <= MAX_PORTS or len(delays) != len(exponents):
        raise ValueError(f"{name}: needs 1..{MAX_PORTS} ports with one exponent and delay each")


def sum_ports(ports, lines, exponents) -> np.ndarray:
    """This step's synaptic input: every connected port's value, delayed by its line, shifted by its exponent
    (the contract's ``e(a, E)``), summed — a residual add of paths with their own exponents."""
    terms = [exp_shift(line.push(port.recv()), e) for port, line, e in zip(ports, lines, exponents)]
    return sum(terms[1:], terms[0])


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
