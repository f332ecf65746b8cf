"""``LMHTLayer``: one LM-HT neuron layer — T-GIM mixing plus soft-reset multi-level neurons — as a Lava Process.

Implements, per image, ``qtemporal_mix`` followed by ``qneuron`` of
docs/integer-semantics.md on the layer's synaptic input
``y(m) = Σ_ports e(a_p(m), E_p) + bias`` (the exponent and bias of each
synaptic path are applied here, at the dendrite, because Lava's stock Conv
and Dense models apply neither; several ports carry the paths of a residual
add):

    I(t) = rs(Σ_m omega[t, m]·y(m), F)                      (T-GIM, non-causal)
    V ← sat(rs(leak[t]·V, D) + I(t), B);  k = Σ_i [V ≥ iΘ];  V ← V − kΘ

Schedule (images stream one after another, one every ``steps`` time-steps):
port p delays its input by ``delays[p]`` steps so that all ports are aligned;
the aligned input of image b, step m, arrives at time ``arrive + b·steps + m``.
T-GIM needs the whole sequence, so when its last step is in, the layer mixes
the buffered sequence and emits the spikes of image b at times
``arrive + (b+1)·steps + t`` (t = 0..steps−1): a latency of ``steps``. Input
buffering and emission overlap (double buffer), so the layer accepts a new
image every ``steps`` time-steps. The membrane restarts at ``v_init`` for
every image. With ``record`` set, the spike counts of each image are also
sent, as one [steps, *shape] array, on the external pipe ``rec``.
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

from lmhtc.semantics import I64, neuron_step, temporal_mix
from lmhtc.targets.lava.procs.ports import SequenceStream, check_ports, port_names


class LMHTLayer(AbstractProcess):
    """T-GIM + soft-reset multi-level IF neurons of one layer; ``shape`` in Lava's (X, Y, C) or (N,) layout.

    ``threshold``, ``v_init``, ``bias`` are per channel (the last axis), ``leak`` per step, ``omega``
    [steps, steps] (None: no mixing, ``I(t) = y(t)``). ``exponents``/``delays``: one per connected port.
    """

    def __init__(self, *, shape, steps: int, images: int, threshold, v_init, leak, bias, omega,
                 levels: int, frac_bits: int, leak_frac_bits: int, membrane_bits: int,
                 exponents, delays, arrive: int, record: bool = False, record_buffer: int = 8, name=None):
        shape = tuple(int(s) for s in shape)
        check_ports(exponents, delays, name)
        super().__init__(shape=shape, name=name, steps=steps, images=images, levels=levels,
                         frac_bits=frac_bits, leak_frac_bits=leak_frac_bits, membrane_bits=membrane_bits,
                         exponents=[int(e) for e in exponents], delays=[int(d) for d in delays],
                         arrive=int(arrive), mix=omega is not None, record=record)
        for port in port_names():
            setattr(self, port, InPort(shape=shape))
        self.s_out = OutPort(shape=shape)
        self.rec = OutPort(shape=(steps, *shape))
        if record:
            self.rec.flag_external_pipe(buffer_size=record_buffer)
        channels = shape[-1]
        self.threshold = Var(shape=(channels,), init=np.asarray(threshold, I64))
        self.v_init = Var(shape=(channels,), init=np.asarray(v_init, I64))
        self.bias = Var(shape=(channels,), init=np.asarray(bias, I64))
        self.leak = Var(shape=(steps,), init=np.asarray(leak, I64))
        self.omega = Var(shape=(steps, steps), init=np.eye(steps, dtype=I64) if omega is None
                         else np.asarray(omega, I64))
        self.v = Var(shape=shape, init=0)


@implements(proc=LMHTLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLMHTLayerModel(SequenceStream, PyLoihiProcessModel):
    in0: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    in1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    in2: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    in3: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    rec: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    threshold: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v_init: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    leak: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    omega: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = self.proc_params
        self._init_stream(p)
        self.levels, self.frac_bits = p["levels"], p["frac_bits"]
        self.leak_frac_bits, self.membrane_bits, self.mix = p["leak_frac_bits"], p["membrane_bits"], p["mix"]

    def _complete(self, seq: np.ndarray) -> np.ndarray:
        """The T-GIM mix of a whole input sequence (a copy without T-GIM)."""
        return temporal_mix(seq, self.omega, self.frac_bits) if self.mix else seq.copy()

    def _start(self) -> None:
        self.v = np.broadcast_to(self.v_init, self.shape).astype(I64)

    def _step(self, t: int) -> np.ndarray:
        self.v, k, _ = neuron_step(self.v, self.cur[t], int(self.leak[t]), self.leak_frac_bits, self.threshold,
                                   self.levels, self.membrane_bits)
        return k
