"""Build the Lava processes of a network description and run a batch of images through them.

numpy and lava only (this is what an exported ``run.py`` uses). Images stream
through the network one after another, one every ``steps`` time-steps, as on a
chip; see ``schedule.py`` for the timing and ``procs/`` for the models. The run
uses ``Loihi2SimCfg(select_tag="fixed_pt")``; ``conv_model="fast"`` swaps
Lava's per-channel-pair scipy model of the stock ``Conv`` for the vectorised
one (same integers), ``"stock"`` keeps Lava's own. Every model runs guarded
(``watchdog.py``): a failing process ends the run with one error.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

import lmhtc.targets.lava.procs  # noqa: F401  (first: prepares multiprocessing for Lava's runtime)
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense

from lmhtc import semantics
from lmhtc.targets.lava.description import LavaNetworkError, NetworkDescription, load_description
from lmhtc.targets.lava.procs.conv_model import VectorisedConvModel
from lmhtc.targets.lava.procs.io import AnalogInput, IntReadout
from lmhtc.targets.lava.procs.lif_layer import LIFLayer
from lmhtc.targets.lava.procs.lmht_layer import LMHTLayer
from lmhtc.targets.lava.procs.ports import port_names
from lmhtc.targets.lava.procs.stock_models import GuardedDenseModel, GuardedStockConvModel
from lmhtc.targets.lava.result import LavaRunResult
from lmhtc.targets.lava.schedule import Schedule, schedule
from lmhtc.targets.lava.watchdog import LavaProcessError, abort, run_steps

CONV_MODELS = ("fast", "stock")
LAYER_KINDS = ("layer", "lif")       # the neuron layers (their spikes are recorded)


def encode_input(x: np.ndarray, spec) -> np.ndarray:
    """``qinput``: ``clip(round(x/scale), ±(2^(bits−1) − 1))`` in float64, round half away; Lava layout."""
    return to_lava_layout(semantics.encode_input(x, float(spec.params["scale"]), int(spec.params["bits"])), batch=True)


def to_lava_layout(a: np.ndarray, batch: bool = False) -> np.ndarray:
    """(.., C, H, W) → (.., X=W, Y=H, C); vectors unchanged."""
    lead = 1 if batch else 0
    if a.ndim - lead == 3:
        return np.ascontiguousarray(np.moveaxis(a, (lead, lead + 1, lead + 2), (lead + 2, lead + 1, lead)))
    return a


def from_lava_layout(a: np.ndarray, lead: int) -> np.ndarray:
    """(.., X, Y, C) → (.., C, H, W) for the trailing three axes after ``lead`` leading axes."""
    if a.ndim - lead == 3:
        return np.ascontiguousarray(np.moveaxis(a, (lead, lead + 1, lead + 2), (lead + 2, lead + 1, lead)))
    return a


@dataclass(frozen=True)
class _Build:
    """What every process builder reads besides its description process."""
    desc: NetworkDescription
    frames: np.ndarray
    sched: Schedule
    record_spikes: bool
    buffer: int

    @property
    def images(self) -> int:
        return self.frames.shape[0]

    def timing(self, p) -> dict:
        """The port exponents, delays and arrival steps of a layer or readout (targets/lava/schedule.py)."""
        return dict(exponents=[i.exponent for i in p.inputs], delays=self.sched.delays[p.name],
                    arrive=self.sched.arrive[p.name])


def _input_proc(p, b: _Build):
    return AnalogInput(frames=b.frames, steps=b.desc.steps, per_step=b.frames.ndim > len(p.shape) + 1, name=p.name)


def _conv_proc(p, b: _Build):
    a, q = p.arrays, p.params
    return Conv(weight=a["weight"].astype(np.int32), weight_exp=0, input_shape=tuple(q["input_shape"]),
                padding=tuple(q["padding"]), stride=tuple(q["stride"]), dilation=tuple(q["dilation"]),
                groups=int(q["groups"]), num_message_bits=int(q["num_message_bits"]), name=p.name)


def _dense_proc(p, b: _Build):
    # Lava's fixed-point Dense drops the LSB of mixed-sign weights and shifts by weight_exp:
    # weights 2w with exponent −1 give Σ w·x exactly for |w| ≤ 127
    return Dense(weights=2 * p.arrays["weight"].astype(np.int32), weight_exp=-1, num_weight_bits=8,
                 num_message_bits=int(p.params["num_message_bits"]), name=p.name)


def _layer_proc(p, b: _Build):
    a, q = p.arrays, p.params
    return LMHTLayer(shape=p.shape, steps=b.desc.steps, images=b.images, threshold=a["threshold"],
                     v_init=a["v_init"], leak=a["leak"], bias=a["bias"], omega=a.get("omega"),
                     levels=int(q["levels"]), frac_bits=int(q["frac_bits"]),
                     leak_frac_bits=int(q["leak_frac_bits"]), membrane_bits=int(q["membrane_bits"]),
                     **b.timing(p), record=b.record_spikes, record_buffer=b.buffer, name=p.name)


def _lif_proc(p, b: _Build):
    return LIFLayer(shape=p.shape, steps=b.desc.steps, images=b.images, arrays=p.arrays, options=p.params["options"],
                    **b.timing(p), record=b.record_spikes, record_buffer=b.buffer, name=p.name)


def _readout_proc(p, b: _Build):
    return IntReadout(classes=p.shape[0], steps=b.desc.steps, images=b.images, bias=p.arrays["bias"],
                      **b.timing(p), record_buffer=b.buffer, name=p.name)


# description process kind → its Lava process (every other kind is the readout, as the loader allows)
BUILDERS = {"input": _input_proc, "conv": _conv_proc, "dense": _dense_proc, "layer": _layer_proc,
            "lif": _lif_proc, "readout": _readout_proc}


def build_processes(desc: NetworkDescription, frames: np.ndarray, sched: Schedule, record_spikes: bool,
                    buffer: int) -> dict:
    """Instantiate and connect one Lava process per description process."""
    build = _Build(desc, frames, sched, record_spikes, buffer)
    procs: dict = {}

    def out_port(src: str, flatten: bool):
        port = procs[src].a_out if desc.process(src).kind in ("conv", "dense") else procs[src].s_out
        return port.flatten() if flatten else port

    for p in desc.processes:
        proc = BUILDERS.get(p.kind, _readout_proc)(p, build)
        procs[p.name] = proc
        if p.kind in ("conv", "dense"):
            out_port(p.inputs[0].source, p.inputs[0].flatten).connect(proc.s_in)
        elif p.kind in (*LAYER_KINDS, "readout"):
            for port, i in zip(port_names(), p.inputs):
                out_port(i.source, i.flatten).connect(getattr(proc, port))
    return procs


def run_description(desc: NetworkDescription | str | os.PathLike, x: np.ndarray, conv_model: str = "fast",
                    record_spikes: bool = True, progress: bool = False, chunk_images: int = 8) -> LavaRunResult:
    """Build the network for the images ``x`` [N, C, H, W] (float), run it, and collect its integers; an
    input with ``sequence`` set takes a per-step sequence [steps, N, ...] (or a static [N, ...])."""
    t0 = time.perf_counter()
    if not isinstance(desc, NetworkDescription):
        desc = load_description(desc)
    if conv_model not in CONV_MODELS:
        raise LavaNetworkError(f"conv_model must be one of {', '.join(CONV_MODELS)}, got {conv_model!r}")
    inp = desc.of_kind("input")[0]
    x = np.asarray(x)
    expected = tuple(inp.params["ir_shape"])
    seq = bool(inp.params.get("sequence")) and x.ndim == len(expected) + 2
    if seq and x.shape[0] != desc.steps:
        raise LavaNetworkError(f"input sequence has {x.shape[0]} steps, the network runs {desc.steps}")
    if x.ndim != len(expected) + 1 + seq or tuple(x.shape[1 + seq:]) != expected or x.shape[seq] == 0:
        raise LavaNetworkError(f"inputs have shape {tuple(x.shape)}, the network expects [N, "
                               f"{', '.join(map(str, expected))}] with N >= 1")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise LavaNetworkError("inputs must be finite numbers")
    # frames [N, *lava_shape], or [N, steps, *lava_shape] for a sequence (image b, step t)
    frames = np.stack([encode_input(x[t], inp) for t in range(len(x))], axis=1) if seq else encode_input(x, inp)
    images, steps = x.shape[seq], desc.steps
    sched = schedule(desc)
    total = sched.total_steps(images)
    buffer = chunk_images + 2
    procs = build_processes(desc, frames, sched, record_spikes, buffer)
    readout = sched.readout
    layers = [p.name for p in desc.processes if p.kind in LAYER_KINDS]
    recorders = layers if record_spikes else []
    records: dict[str, list] = {name: [] for name in [*recorders, readout]}
    models = {Conv: VectorisedConvModel if conv_model == "fast" else GuardedStockConvModel, Dense: GuardedDenseModel}
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models)
    anchor = procs[readout]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=images, desc="simulate (lava)", unit="image")
    done = 0
    try:
        while done < total:
            n = min(chunk_images * steps, total - done)
            run_steps(anchor, n, cfg)
            done += n
            for name in records:     # every record completed by now is in its pipe: receive without blocking
                pipe = procs[name].rec.external_pipe_csp_recv_port
                for _ in range(sched.completed(name, done, images) - len(records[name])):
                    records[name].append(np.array(pipe.recv(), copy=True))
            if bar is not None:
                bar.update(len(records[readout]) - bar.n)
    except LavaProcessError:
        abort(anchor)
        raise
    finally:
        if anchor.runtime is not None and anchor.runtime._is_started:
            anchor.stop()
        if bar is not None:
            bar.close()
    outputs_int = np.stack(records[readout], axis=1).astype(np.int64)
    logits_int = outputs_int.sum(axis=0)
    scale = np.asarray(desc.process(readout).arrays["scale"], np.float64)
    spikes = {}
    for name in recorders:
        spikes[name] = from_lava_layout(np.stack(records[name], axis=1), 2).astype(np.int64)
    return LavaRunResult(outputs_int=outputs_int, logits_int=logits_int, logits=logits_int * scale / steps,
                         spikes=spikes, layer_names=layers, time_steps=total,
                         latency_steps=sched.latency, wall_s=time.perf_counter() - t0)
