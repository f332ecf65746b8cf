"""A vectorised fixed-point ProcessModel for Lava's stock ``Conv`` Process.

Lava's own ``PyConvModelFixed`` runs one ``scipy.signal.convolve2d`` per
(output, input) channel pair and step (ResNet-20's 64-channel layers: ~85 ms
per step). This model computes the same integers — same port types, same
one-step delay (send the previous step's result, then receive), the same
unscaled ``Σ w·x`` (the stock model ignores ``weight_exp`` too) and the same
24-bit two's-complement wrap of the output — with one matrix product per
group, and skips all-zero input. It is not tagged, so it is used only where a
run configuration names it in ``exception_proc_model_map``; tests hold it to
the stock model bit for bit.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv

from lmhtc.targets.lava.procs.fixed import conv_wh, signed_wrap
from lmhtc.targets.lava.watchdog import guarded

CONV_OUTPUT_BITS = 24        # the stock fixed-point model wraps its output to 24 bits


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
class VectorisedConvModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    kernel_size: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    stride: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    padding: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    dilation: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    groups: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=8)
    num_message_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)
    weight_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)
    num_weight_bits: np.ndarray = LavaPyType(np.ndarray, np.int8, precision=5)

    @guarded
    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        s_in = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s_in = s_in.astype(bool)
        if not s_in.any():
            self.a_buf = np.zeros(self.a_out.shape, np.int32)
            return
        y = conv_wh(s_in, self.weight, tuple(self.stride), tuple(self.padding), tuple(self.dilation),
                    int(self.groups[0]))
        self.a_buf = signed_wrap(y, CONV_OUTPUT_BITS).astype(np.int32)
