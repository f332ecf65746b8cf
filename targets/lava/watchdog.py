"""Run Lava steps so that a failing or dead ProcessModel ends the run with one error instead of a hang.

numpy and lava only (an exported ``run.py`` uses it). Lava 0.10's runtime waits on its shared-memory
channels without a timeout. When a ProcessModel raises, the model blocks in its own ``join`` and
the runtime in its response loop (which joins every actor before it reports), so ``run`` never
returns; an actor killed from outside (out of memory, a signal) hangs it the same way.

The invariant: ``run_steps`` returns only when every runtime service answered DONE for the steps
asked, and raises ``LavaProcessError`` (one line naming the process) as soon as a guarded model
reports an exception, a service answers anything else, or an actor process is gone. ``abort`` then
ends every actor and frees the shared memory, so nothing is left running.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import os
import time

from lava.magma.core.run_conditions import RunSteps
from lava.magma.runtime.mgmt_token_enums import MGMT_RESPONSE, enum_equal

from lmhtc.targets.lava.description import LavaNetworkError

_reports = None        # (receive end, send end): armed in the parent before Lava forks its actors
EXIT_STATUS = 70       # a guarded model that raised leaves its actor process with this status


class LavaProcessError(LavaNetworkError):
    """A Lava process failed while the network ran; the message names the process and the exception."""


def arm() -> None:
    """Open the channel guarded models report on; call before the first run forks the actors."""
    global _reports
    if _reports is None:
        _reports = mp.Pipe(duplex=False)


def guarded(step):
    """Decorate a ProcessModel phase method: an exception is reported with the process name and the
    actor exits at once, instead of leaving Lava waiting for it."""
    @functools.wraps(step)
    def run(self, *args, **kwargs):
        try:
            return step(self, *args, **kwargs)
        except Exception as exc:                  # noqa: BLE001 (reported whole, then the actor ends)
            if _reports is not None:
                name = _process_name(self)
                message = " ".join(f"{type(exc).__name__}: {exc}".split())
                _reports[1].send(f"Lava process {name!r} failed at step "
                                 f"{getattr(self, 'time_step', '?')}: {message}")
            os._exit(EXIT_STATUS)
    return run


def _process_name(model) -> str:
    try:
        return str(model.proc_params["name"])
    except Exception:                             # noqa: BLE001 (a process made without a name)
        return type(model).__name__


def _reported() -> str | None:
    if _reports is not None and _reports[0].poll():
        return _reports[0].recv()
    return None


def _unreported(data) -> str:
    if enum_equal(data, MGMT_RESPONSE.ERROR):
        return "a Lava process raised an exception while the network ran (one of Lava's own models)"
    return f"a Lava runtime service answered {data} instead of DONE"


def _dead_actor(runtime) -> str | None:
    for actor in runtime._messaging_infrastructure.actors:
        if actor.exitcode is not None and actor.exitcode != 0:
            return f"a Lava actor process ended with status {actor.exitcode} while the network ran"
    return None


def run_steps(anchor, steps: int, run_cfg, poll_s: float = 0.002) -> None:
    """Run ``steps`` time-steps of the network ``anchor`` belongs to; raise LavaProcessError on a failure."""
    arm()
    anchor.run(condition=RunSteps(num_steps=steps, blocking=False), run_cfg=run_cfg)
    runtime = anchor.runtime
    pending = list(runtime.service_to_runtime)
    while pending:
        for port in list(pending):
            if port.probe():
                data = port.recv()
                if not enum_equal(data, MGMT_RESPONSE.DONE):
                    time.sleep(0.05)              # let a guarded model's report arrive first
                    raise LavaProcessError(_reported() or _unreported(data))
                pending.remove(port)
        if not pending:
            break
        failure = _reported() or _dead_actor(runtime)
        if failure is not None:
            raise LavaProcessError(failure)
        time.sleep(poll_s)
    runtime._is_running = False                   # this loop took the responses Lava's own wait would take


def abort(anchor) -> None:
    """End every actor of ``anchor``'s runtime and free its shared memory (after LavaProcessError)."""
    runtime = anchor.runtime
    if runtime is None:
        return
    infra = runtime._messaging_infrastructure
    for actor in infra.actors:
        if actor.is_alive():
            actor.kill()
    for actor in infra.actors:
        actor.join()
    infra.smm.shutdown()
    runtime._is_started = runtime._is_running = False
    runtime._watchdog_manager.stop()
    while _reported() is not None:                # drop reports of this run
        pass
