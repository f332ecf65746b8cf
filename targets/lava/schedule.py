"""The time-step schedule of a streamed Lava network: when each process starts, and the ports' delays.

Rules (time-steps count from 1, Lava's first step):

* the input sends image b, step t at ``1 + b·steps + t``;
* a stock ``Conv``/``Dense`` sends at step s what it received at s − 1 (one step of delay);
* a ``layer`` aligns its ports by delaying each to the latest one (``arrive``), buffers the whole
  sequence of an image (T-GIM is non-causal) and starts emitting it ``steps`` later; a ``lif`` layer
  streams the same way (one rule for both neuron kinds);
* the ``readout`` aligns its ports likewise and has image b's logits at ``arrive + b·steps + steps − 1``.

Every process then handles one image every ``steps`` time-steps (the pipeline period).
Invariant: at its input, every process sees each image's sequence on consecutive steps, all its
ports aligned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lmhtc.targets.lava.description import NetworkDescription


@dataclass
class Schedule:
    steps: int
    start: dict[str, int] = field(default_factory=dict)        # step sending element 0 of image 0
    arrive: dict[str, int] = field(default_factory=dict)       # layer/readout: aligned first input step
    delays: dict[str, list[int]] = field(default_factory=dict)
    readout: str = ""

    @property
    def period(self) -> int:
        return self.steps

    def done(self, name: str, image: int) -> int:
        """The step at which ``name`` (a layer or the readout) has the whole output of ``image``."""
        first = self.start[name] if name in self.start else self.arrive[name]
        return first + image * self.steps + self.steps - 1

    def completed(self, name: str, after_steps: int, images: int) -> int:
        """How many images ``name`` has finished once ``after_steps`` steps have run."""
        first = self.done(name, 0)
        return max(0, min(images, (after_steps - first) // self.steps + 1)) if after_steps >= first else 0

    @property
    def latency(self) -> int:
        """Steps from an image's first input step to its last logit, inclusive."""
        return self.done(self.readout, 0)

    def total_steps(self, images: int) -> int:
        return self.done(self.readout, images - 1)


def schedule(desc: NetworkDescription) -> Schedule:
    s = Schedule(desc.steps)
    for p in desc.processes:
        if p.kind == "input":
            s.start[p.name] = 1
        elif p.kind in ("conv", "dense"):
            s.start[p.name] = s.start[p.inputs[0].source] + 1
        else:
            times = [s.start[i.source] for i in p.inputs]
            s.arrive[p.name] = max(times)
            s.delays[p.name] = [s.arrive[p.name] - t for t in times]
            if p.kind in ("layer", "lif"):
                s.start[p.name] = s.arrive[p.name] + desc.steps
            else:
                s.readout = p.name
    return s
