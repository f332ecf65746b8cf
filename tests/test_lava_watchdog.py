"""A Lava process that fails mid-run ends the run with one error naming it, instead of a hang.

Each case runs in its own interpreter with a deadline, so a regression (a hang) fails the test
instead of stalling the suite, and the child's leftover processes are checked there.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RUN = """
import multiprocessing, sys, time
sys.path.insert(0, {tests!r})
import numpy as np
from test_lava import hand_graph, images, int_graph
from nets import TinyResNet, randomize
from lmhtc.compiler.errors import LmhtcError
from lmhtc.targets.lava import run_lava
{patch}
graph = {graph}
try:
    run_lava(graph, {x}, conv_model={conv_model!r})
    print("RESULT returned")
except LmhtcError as exc:
    print("RESULT", type(exc).__name__, str(exc))
time.sleep(0.2)
print("CHILDREN", len(multiprocessing.active_children()))
"""

RAISE_IN_OUR_MODEL = """
import lmhtc.targets.lava.procs.lmht_layer as layer
def boom(*args, **kwargs):
    raise ValueError("membrane out of range")
layer.neuron_step = boom
"""

KILL_AN_ACTOR = """
import os, signal
import lmhtc.targets.lava.procs.io as io
send_frame = io.PyAnalogInputModel.run_spk
def die(self):
    if self.time_step == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    send_frame(self)
io.PyAnalogInputModel.run_spk = die
"""

RAISE_IN_LAVAS_MODEL = """
from lava.proc.conv import models
def boom(self):
    raise ValueError("stock model failure")
models.AbstractPyConvModel.run_spk = boom
"""

VECTOR = dict(graph="hand_graph(0)", x="np.ones((2, 3), np.float32)", conv_model="fast")
CONV = dict(graph="int_graph(randomize(TinyResNet(2, 2), 0))", x="images(2, 7)", conv_model="stock")


def run_case(patch: str, graph: str, x: str, conv_model: str) -> dict[str, str]:
    code = RUN.format(tests=str(REPO / "tests"), patch=textwrap.dedent(patch), graph=graph, x=x,
                      conv_model=conv_model)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)        # the run and every Lava actor it forked
        proc.communicate()
        pytest.fail("the Lava run hung instead of failing")
    assert proc.returncode == 0, stderr[-3000:]
    return dict(line.split(" ", 1) for line in stdout.splitlines() if line.startswith(("RESULT", "CHILDREN")))


@pytest.mark.parametrize("patch, case, expected", [
    pytest.param(RAISE_IN_OUR_MODEL, VECTOR,
                 r"LavaRunError Lava process 'sn' failed at step 4: ValueError: membrane out of range",
                 id="exception-in-an-lmhtc-model"),
    pytest.param(KILL_AN_ACTOR, VECTOR,
                 r"LavaRunError a Lava actor process ended with status -9 while the network ran",
                 id="actor-killed"),
    pytest.param(RAISE_IN_LAVAS_MODEL, CONV,
                 r"LavaRunError Lava process '(stem|pool|conv|shortcut)[^']*' failed at step \d+: ValueError: stock model failure",
                 id="exception-in-lavas-own-model"),
])
def test_failing_process_is_one_error_and_leaves_nothing_running(patch, case, expected):
    out = run_case(patch, **case)
    assert re.fullmatch(expected, out["RESULT"]), out["RESULT"]
    assert out["CHILDREN"] == "0"


def test_unpatched_run_returns():
    """The same harness without a fault returns a result: the cases above fail because of the fault."""
    out = run_case("", **VECTOR)
    assert out["RESULT"] == "returned" and out["CHILDREN"] == "0"
