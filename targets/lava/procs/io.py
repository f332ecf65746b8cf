"""Input injection and output readout Processes of the streamed integer network.

``AnalogInput`` presents image b's encoded integers (graded spikes) at every
one of its ``steps`` time-steps, images one after another: image b, step t
goes out at time ``1 + b·steps + t`` (direct encoding). ``IntReadout`` is the
``qreadout`` node: it sums its ports' synaptic outputs after each path's
exponent, adds the bias and sends image b's per-step integer logits
[steps, classes] on the external pipe ``rec`` once its last step is in.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lmhtc.semantics import I64
from lmhtc.targets.lava.procs.ports import DelayLine, check_ports, port_names, sum_ports
from lmhtc.targets.lava.watchdog import guarded


class AnalogInput(AbstractProcess):
    """Sends ``frames[b]`` (int, Lava layout) at each of the ``steps`` time-steps of image b, or, with
    ``per_step``, ``frames[b, t]`` at its step t (a per-step input sequence)."""

    def __init__(self, *, frames: np.ndarray, steps: int, per_step: bool = False, name=None):
        frames = np.asarray(frames)
        shape = frames.shape[2:] if per_step else frames.shape[1:]
        super().__init__(shape=shape, steps=steps, images=frames.shape[0], per_step=per_step, name=name)
        self.s_out = OutPort(shape=shape)
        self.frames = Var(shape=frames.shape, init=frames.astype(np.int32))


@implements(proc=AnalogInput, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyAnalogInputModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    frames: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    @guarded
    def run_spk(self) -> None:
        b, t = divmod(self.time_step - 1, self.proc_params["steps"])
        if b < self.proc_params["images"]:
            self.s_out.send(self.frames[b, t] if self.proc_params["per_step"] else self.frames[b])
        else:
            self.s_out.send(np.zeros(self.s_out.shape, np.int32))


class IntReadout(AbstractProcess):
    """Per-step integer logits ``y(t) = Σ_ports e(a_p(t), E_p) + bias`` of ``classes`` outputs."""

    def __init__(self, *, classes: int, steps: int, images: int, bias, exponents, delays, arrive: int,
                 record_buffer: int = 8, name=None):
        check_ports(exponents, delays, name)
        super().__init__(shape=(classes,), steps=steps, images=images, exponents=[int(e) for e in exponents],
                         delays=[int(d) for d in delays], arrive=int(arrive), name=name)
        for port in port_names():
            setattr(self, port, InPort(shape=(classes,)))
        self.rec = OutPort(shape=(steps, classes))
        self.rec.flag_external_pipe(buffer_size=record_buffer)
        self.bias = Var(shape=(classes,), init=np.asarray(bias, I64))


@implements(proc=IntReadout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIntReadoutModel(PyLoihiProcessModel):
    in0: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    in1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    in2: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    in3: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    rec: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = self.proc_params
        self.steps, self.images, self.arrive, self.exponents = p["steps"], p["images"], p["arrive"], p["exponents"]
        self.lines = [DelayLine(d, p["shape"]) for d in p["delays"]]
        self.buf = np.zeros((self.steps, *p["shape"]), I64)

    @guarded
    def run_spk(self) -> None:
        y = self.bias.astype(I64) + sum_ports([self.in0, self.in1, self.in2, self.in3], self.lines, self.exponents)
        rel = self.time_step - self.arrive
        if rel < 0 or rel // self.steps >= self.images:
            return
        t = rel % self.steps
        self.buf[t] = y
        if t == self.steps - 1:
            self.rec.send(self.buf.copy())
