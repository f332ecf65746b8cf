"""Spiking neuron and activation modules in the training form of the LM-HT paper.

Tensors flowing between spiking layers are sequences shaped ``[T, B, ...]``.
State-dict names and shapes follow the authors' code, so their checkpoints
load with ``strict=True`` (after the ``*.core`` aliases are dropped, see
``lmhtc.compiler.checkpoint``).

The semantics (docs/design.md §1), per neuron, with threshold θ, levels L, leak
parameter a and T-GIM logits M (T×T)::

    λ      = sigmoid(a) + 0.5
    Ω[t,j] = 2·sigmoid(M[t,j]) / T
    v(-1)  = v_init·θ
    v(t)   = λ·v(t-1) + Σ_j Ω[t,j]·(s·x[j])
    o(t)   = θ·clip(floor(v(t)/θ), 0, L)          (computed as θ·Σ_i [v ≥ iθ])
    v(t)  ← v(t) − o(t)
"""
from __future__ import annotations

import torch
from torch import nn


class MultiLevelSpike(torch.autograd.Function):
    """``θ·Σ_{i=1..L} [v ≥ iθ]`` with a straight-through gradient of 1 on [θ/2, Lθ + θ/2].

    Levels are found by comparisons, not by ``floor(v/θ)``: a division can
    round across a level boundary in float.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, theta: torch.Tensor, levels: int) -> torch.Tensor:
        count = torch.zeros_like(v)
        for i in range(1, levels + 1):
            count = count + (v >= i * theta).to(v.dtype)
        window = (v >= 0.5 * theta) & (v <= (levels + 0.5) * theta)
        ctx.save_for_backward(window)
        return count * theta

    @staticmethod
    def backward(ctx, grad_output):
        (window,) = ctx.saved_tensors
        return grad_output * window.to(grad_output.dtype), None, None


def multi_level_spike(v: torch.Tensor, theta: torch.Tensor, levels: int) -> torch.Tensor:
    return MultiLevelSpike.apply(v, theta, levels)


class LMHTNeuron(nn.Module):
    """Learnable multi-hierarchical threshold neuron (L levels, T steps).

    Parameters (authors' names): ``v_threshold`` [1] (θ), ``alpha`` [1] (a),
    ``mask`` [T,T,1,1,1,1] (M for feature-map inputs), ``mask_linear``
    [T,T,1,1,1] (M for vector inputs; the earlier [T,T,1,1] layout loads too).
    Not stored in checkpoints: ``v_init`` (a recipe property) and the input
    scale ``scale`` (the first neuron of the hybrid recipe uses L).

    Both mask layouts are applied with the intended per-step mixing
    ``Σ_j Ω[t,j]·x[j]``. (The authors' latest code broadcasts the 5-D
    ``mask_linear`` against a 3-D input and mixes time wrongly after linear
    layers; this module does not reproduce that bug.)
    """

    def __init__(self, levels: int, timesteps: int, threshold: float | None = None,
                 v_init: float = 0.0, scale: float = 1.0):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        if threshold is None:
            threshold = 2.0 / levels
        self.levels = int(levels)
        self.T = int(timesteps)
        self.v_init = float(v_init)
        self.scale = float(scale)
        self.v_threshold = nn.Parameter(torch.tensor([float(threshold)]), requires_grad=False)
        self.alpha = nn.Parameter(torch.tensor([0.0]))
        self.mask = nn.Parameter(torch.zeros(self.T, self.T, 1, 1, 1, 1))
        self.mask_linear = nn.Parameter(torch.zeros(self.T, self.T, 1, 1, 1))

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, T={self.T}, threshold={self.v_threshold.item():.4g}, "
                f"v_init={self.v_init}, scale={self.scale}")

    # -- derived quantities -------------------------------------------------
    def leak(self) -> torch.Tensor:
        """λ = sigmoid(alpha) + 0.5 (a scalar tensor)."""
        return self.alpha.sigmoid() + 0.5

    def omega(self, feature_map: bool = True) -> torch.Tensor:
        """The T×T Temporal-Global Information Matrix Ω = 2·sigmoid(M)/T."""
        logits = self.mask if feature_map else self.mask_linear
        return 2.0 * logits.reshape(self.T, self.T).sigmoid() / self.T

    def logits_for(self, x: torch.Tensor) -> torch.Tensor:
        """The mask used for input ``x`` ([T, B, C, H, W] → ``mask``, otherwise ``mask_linear``)."""
        return self.mask if x.dim() == 5 else self.mask_linear

    # -- loading ------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        key = prefix + "mask_linear"
        value = state_dict.get(key)
        if value is not None and value.dim() == 4 and tuple(value.shape[2:]) == (1, 1):
            state_dict[key] = value.reshape(*value.shape[:2], 1, 1, 1)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    # -- forward ------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.T:
            raise ValueError(f"LMHTNeuron expects {self.T} time-steps, got input of shape {tuple(x.shape)}")
        x = x * self.scale
        logits = self.logits_for(x).reshape(self.T, self.T, *([1] * (x.dim() - 1)))
        lam = self.leak()
        theta = self.v_threshold
        v = torch.ones_like(x[0]) * (self.v_init * theta)
        out = []
        for t in range(self.T):
            v = lam * v.detach() + ((2 * logits[t].sigmoid() / self.T) * x).sum(dim=0)
            spike = multi_level_spike(v, theta, self.levels)
            v = v - spike.detach()
            out.append(spike)
        return torch.stack(out, dim=0)


class IFNeuron(nn.Module):
    """Single-threshold integrate-and-fire neuron with soft reset (λ = 1, Ω = identity).

    The authors use it for L = 1 networks and as the intermediate step of the
    hybrid recipe (QCFS → IF with v_init 0.5 → LM-HT). State: ``v_threshold`` [1].
    """

    def __init__(self, timesteps: int, threshold: float = 1.0, v_init: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.levels = 1
        self.T = int(timesteps)
        self.v_init = float(v_init)
        self.scale = float(scale)
        self.v_threshold = nn.Parameter(torch.tensor([float(threshold)]), requires_grad=False)

    def extra_repr(self) -> str:
        return f"T={self.T}, threshold={self.v_threshold.item():.4g}, v_init={self.v_init}, scale={self.scale}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.T:
            raise ValueError(f"IFNeuron expects {self.T} time-steps, got input of shape {tuple(x.shape)}")
        x = x * self.scale
        theta = self.v_threshold
        v = torch.ones_like(x[0]) * (self.v_init * theta)
        out = []
        for t in range(self.T):
            v = v + x[t]
            spike = multi_level_spike(v, theta, 1)
            v = v - spike.detach()
            out.append(spike)
        return torch.stack(out, dim=0)


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.floor()

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation: ``θ·clip(floor(x·Q/θ + 0.5)/Q, 0, 1)``.

    ``thresh`` [1] is the learnable θ (authors' name); ``Q`` the number of levels.
    """

    def __init__(self, levels: int = 8, thresh: float = 8.0):
        super().__init__()
        self.Q = int(levels)
        self.thresh = nn.Parameter(torch.tensor([float(thresh)]))

    def extra_repr(self) -> str:
        return f"Q={self.Q}, thresh={self.thresh.item():.4g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x / self.thresh
        y = _FloorSTE.apply(y * self.Q + 0.5) / self.Q
        return torch.clamp(y, 0, 1) * self.thresh


class TimeDistributed(nn.Sequential):
    """Applies its layers to every time-step of a ``[T, B, ...]`` sequence.

    Equivalent to spikingjelly's ``SeqToANNContainer``: the state-dict keys of
    the wrapped layers are ``<name>.0``, ``<name>.1``, … as in the authors' models.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, batch = x.shape[0], x.shape[1]
        y = super().forward(x.flatten(0, 1))
        return y.reshape(steps, batch, *y.shape[1:])


def repeat_steps(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Direct encoding: the static tensor ``x`` [B, ...] repeated as a ``[steps, B, ...]`` sequence.

    The IR frontend traces it as a leaf function (torch.fx autowrap): the
    point where a network's time dimension begins.
    """
    return x.unsqueeze(0).expand(steps, *x.shape).contiguous()


SPIKING_NEURONS = (LMHTNeuron, IFNeuron)


def spiking_neuron(levels: int, timesteps: int, threshold: float | None = None,
                   v_init: float = 0.0) -> nn.Module:
    """The authors' neuron choice: LM-HT for L > 1, IF (threshold 1) for L = 1."""
    if levels > 1:
        return LMHTNeuron(levels, timesteps, threshold, v_init)
    return IFNeuron(timesteps, 1.0 if threshold is None else threshold, v_init)


def spiking_neurons(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """All spiking neurons of ``model`` in registration order (the first is the input neuron)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SPIKING_NEURONS)]
