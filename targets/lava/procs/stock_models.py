"""Lava's own fixed-point models of the stock ``Conv`` and ``Dense`` Processes, guarded.

The same classes as ``PyConvModelFixed`` and ``PyDenseModelBitAcc`` (same ports, same integers), with
``run_spk`` under ``watchdog.guarded``: an exception inside them is reported with the process name
and ends the run, instead of hanging it. Not tagged; a run configuration names them in
``exception_proc_model_map``.
"""
from __future__ import annotations

from lava.magma.core.decorator import implements, requires
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.models import PyConvModelFixed
from lava.proc.conv.process import Conv
from lava.proc.dense.models import PyDenseModelBitAcc
from lava.proc.dense.process import Dense

from lmhtc.targets.lava.watchdog import guarded


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
class GuardedStockConvModel(PyConvModelFixed):
    @guarded
    def run_spk(self) -> None:
        super().run_spk()


@implements(proc=Dense, protocol=LoihiProtocol)
@requires(CPU)
class GuardedDenseModel(PyDenseModelBitAcc):
    @guarded
    def run_spk(self) -> None:
        super().run_spk()
