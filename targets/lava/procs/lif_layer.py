"""``LIFLayer``: one ``qlif`` layer (NIR's LIF/IF/CubaLIF neurons in fixed point) as a Lava Process.

Implements ``qlif`` of docs/integer-semantics.md on the layer's synaptic input
``y(t) = Σ_ports e(a_p(t), E_p) + bias`` (each path's exponent and the synaptic bias applied at the
dendrite, as in ``LMHTLayer``): every step is ``lmhtc.semantics.lif_step``. It keeps ``LMHTLayer``'s
schedule (``schedule.py``): ports aligned at ``arrive``, image b's sequence buffered, its outputs
emitted at ``arrive + (b+1)·steps + t``, so both layer kinds stream the same way. The state restarts
at ``v_init`` (and i = 0) for every image. With ``record`` the outputs of each image go out on ``rec``.
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

from lmhtc.semantics import I64, lif_step
from lmhtc.targets.lava.procs.ports import SequenceStream, check_ports, port_names

NEURON_ARRAYS = ("beta", "alpha", "bias_v", "threshold", "v_reset", "v_min", "v_init")   # per neuron, Lava layout


class LIFLayer(AbstractProcess):
    """``qlif`` neurons of one layer; ``shape`` in Lava's (X, Y, C) or (N,) layout. ``arrays`` holds the
    per-neuron int64 arrays of ``NEURON_ARRAYS`` (``alpha``/``v_min`` absent: no synapse / no floor) and
    ``bias``, the synaptic bias per channel; ``options`` the ``lif_step`` flags."""

    def __init__(self, *, shape, steps: int, images: int, arrays: dict, options: dict, exponents, delays,
                 arrive: int, record: bool = False, record_buffer: int = 8, name=None):
        shape = tuple(int(s) for s in shape)
        check_ports(exponents, delays, name)
        super().__init__(shape=shape, name=name, steps=steps, images=images, options=dict(options),
                         exponents=[int(e) for e in exponents], delays=[int(d) for d in delays],
                         arrive=int(arrive), record=record, has={k: k in arrays for k in NEURON_ARRAYS})
        for port in port_names():
            setattr(self, port, InPort(shape=shape))
        self.s_out = OutPort(shape=shape)
        self.rec = OutPort(shape=(steps, *shape))
        if record:
            self.rec.flag_external_pipe(buffer_size=record_buffer)
        for key in NEURON_ARRAYS:
            setattr(self, key, Var(shape=shape, init=np.asarray(arrays.get(key, np.zeros(shape)), I64)))
        self.bias = Var(shape=(shape[-1],), init=np.asarray(arrays["bias"], I64))


@implements(proc=LIFLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLIFLayerModel(SequenceStream, PyLoihiProcessModel):
    in0: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    in1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    in2: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    in3: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    rec: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    beta: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    alpha: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    bias_v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    threshold: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    v_reset: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    v_min: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    v_init: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._init_stream(self.proc_params)
        self.options, self.has = self.proc_params["options"], self.proc_params["has"]
        self.v = self.i = None

    def _complete(self, seq: np.ndarray) -> np.ndarray:
        return seq.copy()

    def _start(self) -> None:
        self.v, self.i = self.v_init.astype(I64), np.zeros(self.shape, I64)

    def _step(self, t: int) -> np.ndarray:
        arr = {k: (getattr(self, k) if self.has[k] else None) for k in ("alpha", "v_min")}
        self.v, self.i, s, _ = lif_step(self.v, self.i, self.cur[t], beta=self.beta, alpha=arr["alpha"],
                                        bias=self.bias_v, threshold=self.threshold, v_reset=self.v_reset,
                                        v_min=arr["v_min"], **self.options)
        return s
