"""Input ports shared by the layer and readout Processes: up to MAX_PORTS synaptic paths, each with a delay line,
and the sequence streaming every neuron-layer model shares."""
from __future__ import annotations

import numpy as np

from lmhtc.semantics import I64, exp_shift
from lmhtc.targets.lava.watchdog import guarded

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


class SequenceStream:
    """The schedule of a neuron-layer ProcessModel (``schedule.py``), written once for every layer kind.

    Ports are aligned at ``arrive``; image b's input sequence (synaptic sum plus ``bias``) is buffered,
    turned into the currents to emit by ``_complete`` once whole, and emitted one step at a time at
    ``arrive + (b+1)·steps + t`` through ``_step(t)``, after ``_start()`` at each image's first step.
    With ``record`` the outputs of each image also go out on ``rec``. A subclass (also a
    ``PyLoihiProcessModel``, listed after this class) declares the ports and the three hooks.
    """

    def _init_stream(self, p) -> None:
        self.shape, self.steps, self.images = p["shape"], p["steps"], p["images"]
        self.exponents, self.arrive, self.record = p["exponents"], p["arrive"], p["record"]
        self.lines = [DelayLine(d, self.shape) for d in p["delays"]]
        self.in_buf = np.zeros((self.steps, *self.shape), I64)     # the sequence being received
        self.cur = np.zeros((self.steps, *self.shape), I64)        # the currents being emitted
        self.rec_buf = np.zeros((self.steps, *self.shape), np.int32)

    @guarded
    def run_spk(self) -> None:
        self.s_out.send(self._emit(self.time_step - self.arrive - self.steps))
        y = sum_ports([self.in0, self.in1, self.in2, self.in3], self.lines, self.exponents)
        rel = self.time_step - self.arrive       # relative to image 0's first input step
        if 0 <= rel < self.images * self.steps:
            self.in_buf[rel % self.steps] = y + self.bias
            if rel % self.steps == self.steps - 1:
                self.cur = self._complete(self.in_buf)

    def _emit(self, rel: int) -> np.ndarray:
        """Outputs of emission step ``rel`` (relative to image 0's first output step); zeros outside."""
        if rel < 0 or rel // self.steps >= self.images:
            return np.zeros(self.shape, np.int32)
        t = rel % self.steps
        if t == 0:
            self._start()
        out = self._step(t).astype(np.int32)
        if self.record:
            self.rec_buf[t] = out
            if t == self.steps - 1:
                self.rec.send(self.rec_buf.copy())
        return out
