"""Checkpoint I/O: the authors' format (``{'model': state_dict, ...}``) and lmhtc's JSON sidecar.

Loading never runs code from the file: ``torch.load(..., weights_only=True)``
refuses any pickled object that is not a tensor or a plain container, and the
refusal becomes a one-line ``CheckpointError`` naming the file. Keys are
matched strictly (after dropping the ``*.core`` aliases the authors' neurons
save); every missing or unexpected key, wrong shape or non-finite value is an
error naming the key. Saving is atomic (temporary file, then rename).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from lmhtc.safe_json import read_json
from torch import nn

from .atomic import atomic_write, check_output
from .errors import CheckpointError, LmhtcError
from .graph_checks import MAX_ABS_FLOAT, MAX_ELEMENTS, MAX_LEVELS, MAX_STEPS

SIDECAR_FORMAT = "lmhtc-checkpoint-sidecar"
SIDECAR_VERSION = 1


@dataclass
class ModelSpec:
    """Everything needed to rebuild a network that its state_dict does not say."""

    arch: str
    levels: int
    timesteps: int
    recipe: str = "direct"
    num_classes: int = 10
    input_shape: tuple[int, int, int] = (3, 32, 32)
    v_init: float = 0.0
    input_scale: float = 1.0
    normalization: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], source: str) -> "ModelSpec":
        if not isinstance(d, Mapping):
            raise CheckpointError(f"{source}: invalid sidecar (model_spec is a {type(d).__name__}, not an object)")

        def field_(key, convert, default=None):
            if key not in d and default is None:
                raise CheckpointError(f"{source}: invalid sidecar (model_spec.{key} is missing)")
            try:
                return convert(d.get(key, default))
            except (TypeError, ValueError, AttributeError, OverflowError) as exc:
                raise CheckpointError(f"{source}: invalid sidecar (model_spec.{key}: {type(exc).__name__}: "
                                      f"{exc})") from None

        spec = cls(arch=field_("arch", str), levels=field_("levels", int), timesteps=field_("timesteps", int),
                   recipe=field_("recipe", str, "direct"), num_classes=field_("num_classes", int, 10),
                   input_shape=field_("input_shape", lambda v: tuple(int(s) for s in v), (3, 32, 32)),
                   v_init=field_("v_init", float, 0.0), input_scale=field_("input_scale", float, 1.0),
                   normalization=field_("normalization", dict, {}))
        spec.check(source)
        return spec

    def check(self, source: str) -> None:
        """The sidecar's values in range (the same bounds as the flags); errors name the file and key."""
        bounds = {"levels": (1, MAX_LEVELS), "timesteps": (1, MAX_STEPS), "num_classes": (1, 2 ** 20)}
        for key, (lo, hi) in bounds.items():
            if not lo <= getattr(self, key) <= hi:
                raise CheckpointError(f"{source}: model_spec.{key} must lie in [{lo}, {hi}], got {getattr(self, key)}")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1 or math.prod(self.input_shape) > MAX_ELEMENTS:
            raise CheckpointError(f"{source}: model_spec.input_shape must be three positive sizes C,H,W with at most "
                                  f"{MAX_ELEMENTS} values, got {list(self.input_shape)}")
        for key in ("v_init", "input_scale"):
            if not math.isfinite(getattr(self, key)):
                raise CheckpointError(f"{source}: model_spec.{key} must be finite, got {getattr(self, key)}")
        from .recipes import get_recipe
        from .zoo import get_arch

        for key, lookup in (("arch", get_arch), ("recipe", get_recipe)):
            try:
                lookup(getattr(self, key))
            except LmhtcError as exc:
                raise CheckpointError(f"{source}: model_spec.{key}: {exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state_dict and the other top-level entries (metadata) of a checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "unsupported" in ln.lower()), _first_line(exc))
        if "global" in detail.lower():
            raise CheckpointError(f"{path}: refused: the file holds pickled Python objects, not only tensors "
                                  f"(nothing was executed; {detail})") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({detail})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, AttributeError,
            IndexError, TypeError, UnicodeDecodeError, AssertionError) as exc:   # torch asserts on some bytes
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not a checkpoint: expected a dict, found {type(obj).__name__}")
    if "model" in obj:
        state, meta = obj["model"], {k: v for k, v in obj.items() if k != "model"}
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: entry 'model' is a {type(state).__name__}, not a state_dict")
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta = obj, {}
    else:
        raise CheckpointError(f"{path}: no state_dict: expected {{'model': state_dict, ...}} "
                              f"or a plain state_dict (top-level keys: {', '.join(map(str, list(obj)[:6]))})")
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: state_dict key {key!r} is a {type(key).__name__}, not a parameter name")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
    return dict(state), meta


def drop_core_aliases(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``<neuron>.core`` entries (the authors' alias of ``mask``/``mask_linear``)."""
    return {k: v for k, v in state.items()
            if not (k.endswith(".core") and (k[:-5] + ".mask") in state)}


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Every floating tensor finite and within ±MAX_ABS_FLOAT (beyond it float32 activations overflow).

    One ``aminmax`` pass per tensor: it propagates NaN to both ends and shows ±Inf at one of them."""
    for key, value in state.items():
        if not value.is_floating_point() or not value.numel():
            continue
        lo, hi = (float(v) for v in torch.aminmax(value))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = "NaN" if math.isnan(lo) or math.isnan(hi) else "Inf"
            raise CheckpointError(f"{source}: {key} contains {bad} values")
        peak = max(-lo, hi)
        if peak > MAX_ABS_FLOAT:
            raise CheckpointError(f"{source}: {key} has values beyond ±{MAX_ABS_FLOAT:g} (|max| "
                                  f"{peak:.3g}); float32 activations would overflow")


def _listing(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(k or "''" for k in keys[:limit])     # an empty key shows as ''
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str,
                      give: bool = False) -> None:
    """Load ``state`` into ``model`` with strict key and shape checks; errors name the key.

    ``give``: the state's tensors are the caller's to give away (just read from a file): where each has the
    dtype the model holds they become its parameters and buffers, without a copy. Otherwise (a state_dict
    of another live module, say) they are copied, so the model never shares memory with its source."""
    state = drop_core_aliases(state)
    check_finite(state, source)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        raise CheckpointError(f"{source}: does not match {what}: " + "; ".join(parts))
    for key, want in expected.items():
        got = state[key]
        if want.is_floating_point() and not got.is_floating_point():
            raise CheckpointError(f"{source}: {key} has dtype {str(got.dtype).replace('torch.', '')}, "
                                  f"{what} expects floating point")
        if tuple(got.shape) == tuple(want.shape):
            continue
        if key.endswith(".mask_linear") and got.dim() == 4 and tuple(got.shape[:2]) == tuple(want.shape[:2]) \
                and tuple(got.shape[2:]) == (1, 1):
            continue  # the earlier [T,T,1,1] layout; LMHTNeuron reshapes it
        hint = ""
        if key.endswith((".mask", ".mask_linear")) and got.dim() >= 2:
            hint = f" (the checkpoint was trained with T={got.shape[0]} time-steps, not {want.shape[0]})"
        raise CheckpointError(f"{source}: {key} has shape {tuple(got.shape)}, {what} expects "
                              f"{tuple(want.shape)}{hint}")
    # given tensors of the model's own dtypes are assigned (no copy of every weight into the randomly
    # initialised ones); otherwise they are copied over, converted to the model's dtypes
    assign = give and all(state[key].dtype == want.dtype for key, want in expected.items())
    model.load_state_dict(state, strict=True, assign=assign)


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def read_sidecar(path: str | os.PathLike) -> ModelSpec | None:
    """The ModelSpec recorded next to a zoo checkpoint, or None for a bare (authors') checkpoint."""
    side = sidecar_path(path)
    if side == Path(path) or not side.is_file():
        return None
    data = read_json(side, "sidecar", CheckpointError)
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise CheckpointError(f"{side}: not an lmhtc sidecar (missing format {SIDECAR_FORMAT!r})")
    return ModelSpec.from_json(data.get("model_spec", {}), str(side))


def check_checkpoint_output(path: str | os.PathLike) -> Path:
    """Refuse (one line) a checkpoint output whose sidecar would be the checkpoint itself, or either
    of them an output that the output rule refuses; call it before any work."""
    path = Path(path)
    if sidecar_path(path) == path or path.suffix == ".json":
        raise CheckpointError(f"{path}: a checkpoint cannot end in .json: its sidecar "
                              f"{sidecar_path(path).name} would overwrite it; use .pth")
    check_output(path)
    check_output(sidecar_path(path))
    return path


def save_checkpoint(path: str | os.PathLike, model: nn.Module, spec: ModelSpec,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``{'model': state_dict, **extra}`` (authors' format) plus the JSON sidecar, atomically."""
    path = check_checkpoint_output(path)
    payload = {"model": model.state_dict(), **(extra or {})}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    side = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "checkpoint": path.name,
            "model_spec": spec.to_json(),
            "metadata": {k: v for k, v in (extra or {}).items() if isinstance(v, (int, float, str, bool))}}
    text = json.dumps(side, indent=2, sort_keys=True) + "\n"
    atomic_write(sidecar_path(path), lambda tmp: Path(tmp).write_text(text))
    return path


def resolve_spec(path: str | os.PathLike, arch: str | None = None, levels: int | None = None,
                 timesteps: int | None = None, recipe: str | None = None, num_classes: int | None = None,
                 input_shape: tuple[int, int, int] | None = None) -> ModelSpec:
    """The ModelSpec of a checkpoint: its sidecar, else the flags (which a bare checkpoint needs).

    Flags given next to a sidecar must agree with it; v_init and the input scale
    always come from the recipe (docs/design.md §1), never from a guess.
    """
    from .recipes import get_recipe

    side = read_sidecar(path)
    flags = {"arch": arch, "levels": levels, "timesteps": timesteps, "recipe": recipe,
             "num_classes": num_classes, "input_shape": tuple(input_shape) if input_shape else None}
    if side is not None:
        for name, value in flags.items():
            if value is not None and value != getattr(side, name):
                raise LmhtcError(f"{path}: --{name.replace('_', '-')} {value} contradicts its sidecar "
                                 f"({name} = {getattr(side, name)})")
        return side
    for name in ("arch", "levels", "timesteps"):
        if flags[name] is None:
            raise LmhtcError(f"{path}: no lmhtc sidecar ({sidecar_path(path).name}); "
                             f"give --arch, --levels and --timesteps (missing --{name})")
    rec = get_recipe(recipe or "direct")
    from .zoo import get_arch

    shape = flags["input_shape"] or get_arch(arch).default_input_shape
    return ModelSpec(arch=arch, levels=int(levels), timesteps=int(timesteps), recipe=rec.name,
                     num_classes=int(num_classes or 10), input_shape=tuple(shape), v_init=rec.v_init,
                     input_scale=rec.input_scale(int(levels)))


def load_snn(path: str | os.PathLike, spec: ModelSpec) -> nn.Module:
    """Build the zoo network of ``spec`` and load the checkpoint at ``path`` into it (eval mode)."""
    from .zoo import build_snn

    model = build_snn(spec.arch, spec.levels, spec.timesteps, spec.num_classes, spec.recipe, spec.input_shape)
    state, _ = read_checkpoint(path)
    what = (f"--arch {spec.arch} (levels L={spec.levels}, timesteps T={spec.timesteps}, recipe {spec.recipe}, "
            f"input_shape {','.join(map(str, spec.input_shape))}, num_classes {spec.num_classes})")
    side = sidecar_path(path)
    origin = ""
    if side != Path(path) and side.is_file():
        what = f"the network its sidecar {side.name} describes ({what[2:]})"
        origin = f" (L from its sidecar {side.name})"
    load_state_strict(model, state, str(path), what, give=True)
    if spec.recipe == "direct":
        _check_direct_thresholds(model, spec, str(path), origin)
    return model.eval()


def _check_direct_thresholds(model: nn.Module, spec: ModelSpec, source: str, origin: str = "") -> None:
    """The direct recipe fixes θ = 2/L (not learned), so a threshold reveals a wrong --levels."""
    from .neurons import LMHTNeuron

    want = 2.0 / spec.levels
    for name, m in model.named_modules():
        if isinstance(m, LMHTNeuron):
            got = float(m.v_threshold.item())
            if abs(got - want) > 1e-6 * want:
                trained = f"; it was trained with L={round(2 / got)}" if got > 0 and abs(2 / got - round(2 / got)) < 1e-6 else ""
                raise CheckpointError(f"{source}: {name}.v_threshold is {got:g}, but the direct recipe with "
                                      f"L={spec.levels}{origin} fixes θ = 2/L = {want:g}{trained}")


def load_qcfs_ann(path: str | os.PathLike, arch: str, num_classes: int = 10, q_levels: int = 8,
                  input_shape: tuple[int, int, int] | None = None) -> nn.Module:
    """Load a QCFS ANN checkpoint (hybrid recipe, first stage) into the zoo's ANN of ``arch``."""
    from .zoo import build_qcfs_ann

    model = build_qcfs_ann(arch, num_classes, q_levels, input_shape)
    state, _ = read_checkpoint(path)
    load_state_strict(model, state, str(path), f"the QCFS ANN of --arch {arch}", give=True)
    return model.eval()

