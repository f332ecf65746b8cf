"""The Python API: what a researcher calls from a notebook. The ``lmhtc`` command line runs the same
pipeline functions (``lmhtc.compiler.pipeline``), so the two give the same results.

    import lmhtc
    art = lmhtc.compile("model.pth", calib=x_calib)          # sidecar gives arch, L, T, recipe, ...
    run = art.simulate(x, mode="int")                        # bit-accurate integer runtime
    art.export("onnx-int", "model_int.onnx")
    pairs = art.verify(x[:16], targets=["int", "onnx-int"])
    art.save("model.lmhtc"); art = lmhtc.load("model.lmhtc")
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from lmhtc.compiler.errors import LmhtcError

__all__ = ["Artifact", "Simulation", "compile", "load"]


@dataclass(frozen=True)
class Simulation:
    """One run's results; the fields are the keys of the ``simulate`` npz (int-only fields are None in float mode)."""

    logits: np.ndarray                       # [N, classes] float32
    outputs: np.ndarray                      # [steps, N, classes] float32
    spike_counts: np.ndarray                 # [N, neuron layers] int64
    layer_names: np.ndarray
    logits_int: np.ndarray | None = None     # [N, classes] int64
    outputs_int: np.ndarray | None = None    # [steps, N, classes] int64
    sops: np.ndarray | None = None           # [N] synaptic operations per image
    macs: np.ndarray | None = None           # [N] analog-input MACs per image
    saturation: np.ndarray | None = None     # [N, neuron layers] membrane saturation events
    sops_by_layer_step: np.ndarray | None = None
    synaptic_layer_names: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The npz keys and arrays that ``lmhtc simulate`` writes."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class Artifact:
    """A compiled network: its graphs (``source``, ``compiled`` and, when lowered, ``integer``) and metadata."""

    graphs: dict
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def _name(self) -> str:
        return str(self.path) if self.path is not None else "artifact"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the artifact file (zip of JSON + safetensors, written atomically)."""
        from lmhtc.compiler.artifact import save_artifact

        self.path = save_artifact(path, self.graphs, self.meta)
        return self.path

    def simulate(self, x, mode: str = "int", graph: str = "compiled", batch_size: int = 64,
                 progress: bool = False, device: str = "cpu", *, workers: int | None = None,
                 scheduler: str | None = None, client=None, resume: str | os.PathLike | None = None) -> Simulation:
        """Run ``x`` [N, C, H, W] through the integer runtime (``mode="int"``, on ``device``: cpu or cuda[:N],
        the same integers on both) or the float executor.

        With ``workers`` (a local Dask cluster), ``scheduler`` (an address), ``client`` (a dask Client) or
        ``resume`` (a directory of finished shards), the run is sharded in whole batches of ``batch_size``:
        the artifact must be saved, ``x`` may also be a path (.npz, a directory of .npz shards, a .npy),
        and the result is identical to the in-process run with the same batch size.
        """
        from lmhtc.compiler.pipeline import simulate_arrays

        if workers is not None or scheduler is not None or client is not None or resume is not None:
            from lmhtc.compiler.distributed import run_sharded
            from lmhtc.compiler.sources import InputSource

            if self.path is None:
                raise LmhtcError("a sharded run reads the artifact file on every worker: save() the artifact first")
            if not isinstance(x, (str, os.PathLike, InputSource)):
                raise LmhtcError("a sharded run reads its inputs by slices: pass a path (.npz, directory of .npz "
                                 "shards, .npy) or an InputSource")
            r = run_sharded(self.path, x, mode, batch_size, graph=graph, workers=workers, scheduler=scheduler,
                            client=client, resume=resume, progress=progress)
            r.pop("kernels", None)
            return Simulation(**{k: np.array(v) if isinstance(v, list) else v for k, v in r.items()})
        arrays, _ = simulate_arrays(self.graphs, _images(x), mode, graph, batch_size, self._name(), progress, device)
        return Simulation(**arrays)

    def export(self, target: str, path: str | os.PathLike, *, graph: str = "compiled", spikes: bool = False,
               products: str = "auto") -> Path:
        """Write the network for a registered target: ``onnx`` (float), ``onnx-int``, ``nir`` (files) or
        ``lava`` (a directory); refused, naming the node kind, when the target cannot express the network.
        ``products`` (onnx-int): ``uint8``, ``float`` or ``auto``, as ``lmhtc export --products``."""
        from lmhtc.compiler.pipeline import export_model

        out, _ = export_model(self.graphs, self.meta, target, path, self._name(), graph=graph, spikes=spikes,
                              products=products)
        return Path(out)

    def verify(self, x: np.ndarray, targets: list[str] | None = None, progress: bool = False) -> list[dict]:
        """Run the targets on ``x`` and compare every pair: the ``pairs`` of ``lmhtc verify --json``."""
        from lmhtc.compiler.verify import default_targets, verify

        from lmhtc.compiler.finite import naming_file

        names = list(targets) if targets is not None else default_targets(self.graphs)
        with naming_file(self._name()):     # the runner names the target; the artifact is named here
            _, pairs = verify(self.graphs, _images(x), names, progress=progress)
        return [p.to_json() for p in pairs]

    def report(self, x: np.ndarray, *, y: np.ndarray | None = None, mode: str | None = None,
               graph: str | None = None, energy_model: str = "45nm", hardware: str = "loihi2",
               batch_size: int = 16, progress: bool = False) -> dict:
        """SOPs, energy and chip resources measured on ``x``: the record ``lmhtc report --json`` writes."""
        from lmhtc.compiler.cost.energy import load_energy_model
        from lmhtc.compiler.cost.hardware import load_hardware
        from lmhtc.compiler.pipeline import cost_graph_name
        from lmhtc.compiler.report import build_report

        energy, core = load_energy_model(energy_model), load_hardware(hardware)
        mode, name = cost_graph_name(self.graphs, mode, graph, self._name())
        arch = self.meta.get("model_spec", {}).get("arch")
        artifact_name = self.path.name if self.path is not None else None
        return build_report(self.graphs[name], _images(x), mode, energy, core, y=y, graph_name=name,
                            batch_size=batch_size, progress=progress, meta={"artifact": artifact_name, "arch": arch},
                            where=self._name())


def _images(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
        raise LmhtcError(f"x must be a float array [N, C, H, W], got {x.dtype} {x.shape}")
    return x.astype(np.float32, copy=False)


def load(path: str | os.PathLike) -> Artifact:
    """Read an artifact file (checksummed; no pickle)."""
    from lmhtc.compiler.artifact import load_artifact

    graphs, meta = load_artifact(path)
    return Artifact(graphs, meta, Path(path))


def compile(checkpoint: str | os.PathLike, *, arch: str | None = None, levels: int | None = None,
            timesteps: int | None = None, recipe: str | None = None, num_classes: int | None = None,
            input_shape: tuple[int, int, int] | None = None, reparam: str | None = "exact",
            calib: np.ndarray | None = None, weight_bits: int = 8, per_channel: bool = True,
            quant_method: str = "auto", mixed_precision: float | None = None, integer: bool | None = None,
            progress: bool = False) -> Artifact:
    """Compile a checkpoint as ``lmhtc compile`` does: BN folding, reparameterization, integer lowering.

    Arguments left None come from the checkpoint's sidecar. ``reparam`` is the window schedule
    (``exact`` or ``uniform``), or None to keep the M-HT neurons. ``integer``: True requires the
    integer lowering, False skips it, None (default) lowers when the network allows it and otherwise
    keeps the float graphs only, with the reason in ``Artifact.notes``. ``quant_method`` is the integer
    lowering method (``auto``, ``maxabs``, ``bias``, ``mse``, ``mse-ta``; docs/integer-semantics.md).
    ``mixed_precision`` is ``lmhtc compile --mixed-precision``: an argmax-agreement budget in (0, 1] on
    ``calib``, with ``weight_bits`` below 8; the most sensitive layers widen to 8 bits.
    The options are checked by the same pipeline functions as the command line's flags.
    """
    from lmhtc.compiler import pipeline
    from lmhtc.compiler.checkpoint import resolve_spec

    schedule = pipeline.window_schedule(reparam, keep_mht=reparam is None)
    config = pipeline.quant_config(weight_bits, per_channel, quant_method)
    pipeline.check_mixed_precision(mixed_precision, calib is not None, config)
    spec = resolve_spec(checkpoint, arch, levels, timesteps, recipe, num_classes,
                        None if input_shape is None else tuple(input_shape))
    graphs = pipeline.compile_checkpoint(checkpoint, spec, reparam=schedule is not None,
                                         schedule=schedule or pipeline.DEFAULT_SCHEDULE)
    meta = pipeline.artifact_meta(spec, graphs, schedule is not None)
    notes = []
    if integer is not False:
        cx = None if calib is None else _images(calib)
        if mixed_precision is not None:
            config, meta["mixed_precision"], _ = pipeline.mixed_precision(graphs["compiled"], cx, config,
                                                                          mixed_precision, progress)
        lowered, why_not = pipeline.lower_integer(graphs["compiled"], config, cx,
                                                  required=pipeline.lowering_required(integer, cx is not None),
                                                  progress=progress)
        if lowered is not None:
            graphs["integer"] = lowered
        else:
            notes.append(f"no integer lowering: {why_not}")
    return Artifact(graphs, meta, None, notes)
