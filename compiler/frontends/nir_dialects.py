"""How each NIR dialect discretizes NIR's continuous-time neurons into the ``lif`` kind (docs/nir.md).

A dialect is the simulator a ``.nir`` file came from (a file does not say how it
was discretized). ``neuron_params`` maps one NIR neuron node to ``LIFNeuron``
keyword arguments; ``export_params`` inverts it for ``export --target nir``.

* ``snntorch``: dt = 1e-4 (hard-coded by snnTorch), β = clip(1 − dt/τ, 0, 1) and
  input scale r·dt/τ computed in float32 as snnTorch's importer does; spike v > θ;
  default reset "zero" (what snnTorch's importer forces); reset timing of
  ``Leaky(reset_delay=False)``.
* ``norse``: forward Euler with dt (default 1e-3): β = 1 − dt/τ, scale dt/τ,
  bias (dt/τ)·v_leak, membrane starting at v_leak (Norse's initial state); v > θ;
  reset to 0; Norse ignores r and v_reset, so values other than 1 and 0 are refused.
* ``sinabs``: τ counted in steps (dt = 1): β = exp(−dt/τ), scale 1; MultiSpike
  (trunc(v/θ) spikes per step), reset subtract; IF's membrane floored at −θ;
  r ≠ 1 and v_leak ≠ 0 are refused.
* ``generic``: forward Euler with an explicit ``--dt``: β = 1 − dt/τ, scale r·dt/τ,
  bias (dt/τ)·v_leak; v > θ; reset "zero" to v_reset unless ``--reset subtract``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LmhtcError

DIALECTS = ("snntorch", "norse", "sinabs", "generic")


class DialectError(LmhtcError):
    """A NIR node that the chosen dialect cannot discretize; the message names the node."""


@dataclass(frozen=True)
class Dialect:
    name: str
    dt: float
    reset: str           # default reset of spiking neurons
    compare: str
    reset_timing: str


def make_dialect(name: str, dt: float | None, reset: str | None, compare: str | None = None) -> Dialect:
    """The dialect ``name`` with the user's ``--dt`` and ``--reset`` (and a recorded comparison) applied;
    raises on a bad value."""
    if name not in DIALECTS:
        raise LmhtcError(f"--dialect must be one of {', '.join(DIALECTS)}, got {name!r}")
    if reset is not None and reset not in ("subtract", "zero"):
        raise LmhtcError(f"--reset must be subtract or zero, got {reset!r}")
    if compare is not None and compare not in (">", ">="):
        raise LmhtcError(f"comparison must be > or >=, got {compare!r}")
    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise LmhtcError(f"--dt must be a positive number of seconds, got {dt}")
    if name == "generic" and dt is None:
        raise LmhtcError("--dialect generic needs --dt (the step length the graph's τ are measured against)")
    default_dt = {"snntorch": 1e-4, "norse": 1e-3, "sinabs": 1.0, "generic": dt}[name]
    default_reset = {"snntorch": "zero", "norse": "zero", "sinabs": "subtract", "generic": "zero"}[name]
    return Dialect(name=name, dt=float(default_dt if dt is None else dt), reset=reset or default_reset,
                   compare=compare or (">=" if name == "sinabs" else ">"),
                   reset_timing="snntorch" if name == "snntorch" else "same-step")


def _arr(node, key: str) -> np.ndarray:
    return np.asarray(getattr(node, key), dtype=np.float64)


def _require(where: str, cond: bool, what: str) -> None:
    if not cond:
        raise DialectError(f"{where}: {what}")


def _leak(d: Dialect, tau: np.ndarray, r: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(β, input scale) for a membrane with time constant τ and resistance r under ``d``."""
    _require(where, bool(np.all(tau > 0)) and bool(np.all(np.isfinite(tau))), "tau must be positive and finite")
    if d.name == "snntorch":
        tau32, dt32 = tau.astype(np.float32), np.float32(d.dt)
        beta = np.clip(np.float32(1) - dt32 / tau32, 0, 1)
        return beta.astype(np.float64), (r.astype(np.float32) * dt32 / tau32).astype(np.float64)
    if d.name == "sinabs":
        _require(where, bool(np.all(r == 1)), "the sinabs dialect needs r = 1 (sinabs has no input scale)")
        return np.exp(-d.dt / tau), np.ones_like(tau)
    if d.name == "norse":
        _require(where, bool(np.all(r == 1)), "the norse dialect needs r = 1 (Norse ignores r)")
        return 1 - d.dt / tau, d.dt / tau
    return 1 - d.dt / tau, r * d.dt / tau


def neuron_params(d: Dialect, node, where: str) -> dict:
    """``LIFNeuron`` keyword arguments for the NIR neuron ``node`` (IF, LIF, LI, I, CubaLIF, CubaLI, Threshold)."""
    kind = type(node).__name__
    spiking = kind in ("IF", "LIF", "CubaLIF", "Threshold")
    out = dict(spiking=spiking, reset=d.reset if spiking else "none", compare=d.compare,
               reset_timing=d.reset_timing if spiking else "same-step")
    if kind == "Threshold":
        th = _arr(node, "threshold")
        return dict(out, beta=np.zeros_like(th), scale=np.ones_like(th), bias=np.zeros_like(th), threshold=th,
                    v_reset=np.zeros_like(th), reset="zero", reset_timing="same-step")
    if kind in ("IF", "I"):
        r = _arr(node, "r")
        _require(where, d.name not in ("norse", "sinabs") or bool(np.all(r == 1)), f"the {d.name} dialect needs r = 1")
        scale = r * d.dt if d.name == "generic" else r
        out.update(beta=np.ones_like(r), scale=scale, bias=np.zeros_like(r))
    elif kind in ("LIF", "LI"):
        tau, r, v_leak = _arr(node, "tau"), _arr(node, "r"), _arr(node, "v_leak")
        beta, scale = _leak(d, tau, r, where)
        _require(where, d.name not in ("sinabs", "snntorch") or bool(np.all(v_leak == 0)),
                 f"the {d.name} dialect needs v_leak = 0")
        out.update(beta=beta, scale=scale, bias=(1 - beta) * v_leak)
        if d.name == "norse" and np.any(v_leak != 0):   # LIBoxCell/LIFBoxCell start at v = v_leak
            out.update(v_init=v_leak)
    elif kind in ("CubaLIF", "CubaLI"):
        _require(where, d.name in ("snntorch", "generic"), f"the {d.name} dialect has no CubaLIF mapping")
        tau_syn, w_in = _arr(node, "tau_syn"), _arr(node, "w_in")
        tau, r, v_leak = _arr(node, "tau_mem"), _arr(node, "r"), _arr(node, "v_leak")
        alpha, w_scale = _leak(d, tau_syn, w_in, where)
        beta, scale = _leak(d, tau, r, where)
        _require(where, d.name != "snntorch" or bool(np.all(v_leak == 0)), "the snntorch dialect needs v_leak = 0")
        out.update(beta=beta, scale=scale, bias=(1 - beta) * v_leak, alpha=alpha, w_in=w_scale)
    else:
        raise DialectError(f"{where}: NIR node type {kind} is not a neuron")
    if spiking:
        th = _arr(node, "v_threshold")
        v_reset = _arr(node, "v_reset") if hasattr(node, "v_reset") else np.zeros_like(th)
        _require(where, d.name not in ("norse", "sinabs") or bool(np.all(v_reset == 0)),
                 f"the {d.name} dialect resets to 0 and cannot honour v_reset = {v_reset.ravel()[:1]}")
        out.update(threshold=th, v_reset=v_reset)
        if d.name == "sinabs" and kind in ("IF", "LIF"):   # IAFSqueeze/LIFSqueeze: MultiSpike, MembraneSubtract
            out.update(multi_spike=True, v_min=-th if kind == "IF" else None)
    return out


def _inverse_r32(scale: np.ndarray, tau: np.ndarray, dt32: np.float32) -> np.ndarray:
    """A float32 r with float32(r·dt/τ) == scale wherever one lies within a few ulps of scale·τ/dt (the
    importer computes r·dt/τ in float32, so the plain quotient can come back one ulp off)."""
    r = scale * tau / dt32
    for _ in range(4):
        off = (r * dt32 / tau) != scale
        if not off.any():
            break
        r = np.where(off, np.nextafter(r, np.where((r * dt32 / tau) < scale, np.inf, -np.inf).astype(np.float32)), r)
    return r.astype(np.float32)


def export_params(d: Dialect, node) -> tuple[str, dict]:
    """The NIR node type and arrays that ``neuron_params`` maps back to ``node`` (an ``LIFNeuron``)."""
    beta, scale, bias = (np.asarray(a, np.float64) for a in (node.beta, node.scale, node.bias))
    where = f"node {node.name!r} (lif)"
    _require(where, node.alpha is None, "CubaLIF export is not supported")
    _require(where, node.v_min is None, "NIR 1.0 cannot express a membrane floor (v_min)")
    _require(where, not node.multi_spike, "NIR 1.0 neurons emit one spike per step, not several")
    _require(where, node.v_init is None or d.name == "norse",
             "NIR 1.0 neurons start at 0 (only the norse dialect starts them at v_leak)")
    _require(where, d.name == "generic" or d.name in ("snntorch", "norse", "sinabs"), f"unknown dialect {d.name}")
    if np.all(beta == 1) and np.all(bias == 0):
        r = scale / d.dt if d.name == "generic" else scale
        if not node.spiking:
            return "I", dict(r=r)
        return "IF", dict(r=r, v_threshold=np.asarray(node.threshold, np.float64),
                          v_reset=np.asarray(node.v_reset, np.float64))
    _require(where, bool(np.all((beta > 0) & (beta < 1))), "a decay outside (0, 1) has no NIR time constant")
    if d.name == "snntorch":   # float32 arithmetic, as snnTorch's export_to_nir
        dt32, b32 = np.float32(d.dt), beta.astype(np.float32)
        tau = dt32 / (np.float32(1) - b32)
        r = _inverse_r32(scale.astype(np.float32), tau, dt32)
    elif d.name == "sinabs":
        tau = -d.dt / np.log(beta)
        r = np.ones_like(beta)
    else:
        tau = d.dt / (1 - beta)
        r = scale * tau / d.dt
    v_leak = bias / (1 - beta)
    if not node.spiking:
        return "LI", dict(tau=tau, r=r, v_leak=v_leak)
    return "LIF", dict(tau=tau, r=r, v_leak=v_leak, v_threshold=np.asarray(node.threshold, np.float64),
                       v_reset=np.asarray(node.v_reset, np.float64))
