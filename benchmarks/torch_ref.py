"""A minimal, independent PyTorch float LM-HT ResNet-18: the straightforward baseline of the runtime benchmark.

Built from the checkpoint's state dict alone (no zoo module): per-step
``F.conv2d`` and eval-mode ``F.batch_norm`` on ``[T·B, …]`` tensors and the
M-HT neuron loop over T (λ = sigmoid(a) + 0.5, Ω = 2·sigmoid(M)/T, soft reset,
L-level spikes θ·Σ_i [v ≥ iθ]). It computes the same float function as the zoo
model (checked by the benchmark and by a test under the float rule); it is a
baseline to measure against, not product code.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F


def stage_of(name: str) -> str:
    """The ResNet stage a layer belongs to: ``stem`` (conv1/bn1/sn1), ``layer1`` … ``layer4``, ``fc``."""
    head = name.split(".")[0]
    return head if head.startswith("layer") or head == "fc" else "stem"


def unit_of(name: str) -> str:
    """The neuron layer (or ``fc``) a reference layer belongs to: a conv (+BN) is timed with the neuron it
    feeds — ``conv1`` → ``sn1``, ``layerX.Y.conv1`` → ``layerX.Y.sn1``, ``layerX.Y.conv2`` and
    ``layerX.Y.downsample.0`` → ``layerX.Y.sn2``; a neuron is its own unit."""
    if name == "conv1":
        return "sn1"
    head, _, tail = name.partition(".conv")
    if tail:
        return f"{head}.sn{tail[0]}"
    if ".downsample" in name:
        return name.split(".downsample")[0] + ".sn2"
    return name


class RefResNet18:
    """``__call__(x [B, 3, H, W]) → [T, B, classes]`` float32 logits per step.

    ``times``, when set to a dict, accumulates seconds per (neuron unit, "synapse" | "neuron"): see ``unit_of``.
    """

    def __init__(self, state: dict[str, torch.Tensor], levels: int, timesteps: int, v_init: float = 0.0):
        self.s = {k: v.float() for k, v in state.items() if not k.endswith(".core")}
        self.L, self.T, self.v_init = levels, timesteps, v_init
        self.times: dict[tuple[str, str], float] | None = None

    @contextmanager
    def _timed(self, name: str, part: str):
        start = time.perf_counter()
        yield
        if self.times is not None:
            key = (unit_of(name), part)
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - start

    def _bn(self, x: torch.Tensor, p: str) -> torch.Tensor:
        s = self.s
        return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"], s[p + ".bias"],
                            False, 0.0, 1e-5)

    def _conv_bn(self, x: torch.Tensor, p: str, stride: int, pad: int) -> torch.Tensor:
        with self._timed(p, "synapse"):
            return self._bn(F.conv2d(x, self.s[p + ".0.weight"], None, stride, pad), p + ".1")

    def _neuron(self, x: torch.Tensor, p: str) -> torch.Tensor:
        with self._timed(p, "neuron"):
            return self._neuron_loop(x, p)

    def _neuron_loop(self, x: torch.Tensor, p: str) -> torch.Tensor:
        """x [T·B, ...] → spikes [T·B, ...] of the LM-HT neuron ``p``."""
        s, T = self.s, self.T
        x = x.reshape(T, -1, *x.shape[1:])
        theta = s[p + ".v_threshold"]
        lam = s[p + ".alpha"].sigmoid() + 0.5
        omega = (2 * s[p + ".mask"].reshape(T, T).sigmoid() / T).tolist()
        v = torch.full_like(x[0], self.v_init) * theta
        out = []
        for t in range(T):
            v = lam * v + sum(w * x[j] for j, w in enumerate(omega[t]))
            k = sum((v >= i * theta).to(v.dtype) for i in range(1, self.L + 1))
            spike = k * theta
            v = v - spike
            out.append(spike)
        return torch.stack(out).flatten(0, 1)

    def _block(self, x: torch.Tensor, p: str, stride: int) -> torch.Tensor:
        identity = x
        if p + ".downsample.0.0.weight" in self.s:
            identity = self._conv_bn(x, p + ".downsample.0", stride, 0)
        out = self._neuron(self._conv_bn(x, p + ".conv1", stride, 1), p + ".sn1")
        return self._neuron(self._conv_bn(out, p + ".conv2", 1, 1) + identity, p + ".sn2")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s, T = self.s, self.T
        b = x.shape[0]
        with self._timed("conv1", "synapse"):
            y = self._bn(F.conv2d(x, s["conv1.weight"], None, 1, 1), "bn1")
        y = self._neuron(y.unsqueeze(0).expand(T, *y.shape).flatten(0, 1), "sn1")
        for layer, stride in zip(range(1, 5), (1, 2, 2, 2)):
            y = self._block(y, f"layer{layer}.0", stride)
            y = self._block(y, f"layer{layer}.1", 1)
        with self._timed("fc", "synapse"):
            y = y.mean(dim=(2, 3))
            return F.linear(y, s["fc.0.weight"], s["fc.0.bias"]).reshape(T, b, -1)
