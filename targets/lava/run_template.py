"""Run this exported lmhtc Lava network on a batch of images.

    python run.py --inputs X.npz -o OUT.npz [--no-spikes] [--conv-model fast|stock] [--progress]

X.npz holds ``x`` [N, C, H, W] (float). OUT.npz receives ``logits_int`` [N, classes] and ``outputs_int``
[steps, N, classes] (int64), ``logits`` (float64, logits_int · scale / steps), ``layer_names`` and, per
neuron layer, ``spikes/<layer>`` [steps, N, ...] (spike counts). Needs lava-nc, numpy and the
``lmhtc.targets.lava`` package of lmhtc on the Python path — not lmhtc's compiler, not torch.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def check_output(path: Path, inputs: list) -> None:
    """The output rule: a new path or a regular file, never a symbolic link, device or one of the inputs."""
    from lmhtc.targets.lava.description import LavaNetworkError

    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise LavaNetworkError(f"{path}: exists and is not a regular file; choose another output")
    for inp in inputs:
        if path.resolve() == Path(inp).resolve() or (path.exists() and Path(inp).exists()
                                                     and os.path.samefile(path, inp)):
            raise LavaNetworkError(f"{path}: is also an input of this run ({inp}); choose another output")


def write_npz_atomic(path: Path, arrays: dict) -> None:
    """Write to a temporary file next to ``path``, then rename: no partial file on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        from lmhtc.npz_file import write_npz

        with os.fdopen(fd, "wb") as f:
            write_npz(f, arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", required=True, help=".npz file with the images under key 'x'")
    parser.add_argument("-o", "--output", required=True, help="where to write the results (.npz)")
    parser.add_argument("--conv-model", choices=("fast", "stock"), default="fast",
                        help="ProcessModel of Lava's Conv: vectorised (fast) or Lava's own (stock)")
    parser.add_argument("--no-spikes", action="store_true", help="do not record the layers' spikes")
    parser.add_argument("--progress", action="store_true", help="show a progress bar (needs tqdm)")
    args = parser.parse_args()

    from lmhtc.targets.lava.description import LavaNetworkError

    try:
        return run(args)
    except LavaNetworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename or args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001  (one line, never a traceback)
        print(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} (please report it)",
              file=sys.stderr)
        return 3


def run(args) -> int:
    """Check the description, the inputs (lmhtc.array_gate) and the output before Lava starts, then run."""
    from lmhtc.array_gate import read_inputs
    from lmhtc.targets.lava.description import ARRAYS_NPZ, NETWORK_JSON, LavaNetworkError, load_description
    from lmhtc.targets.lava.network import run_description

    desc = load_description(HERE)
    inp = desc.of_kind("input")[0].params
    shape = tuple(inp["ir_shape"])
    out = Path(args.output)
    check_output(out, [args.inputs, HERE / NETWORK_JSON, HERE / ARRAYS_NPZ, Path(__file__)])
    # a sequence-encoded input (an imported NIR network) also takes per-step sequences [steps, N, ...]
    x, _ = read_inputs(args.inputs, LavaNetworkError, shape=shape, steps=desc.steps if inp.get("sequence") else None)
    result = run_description(desc, x, conv_model=args.conv_model, record_spikes=not args.no_spikes,
                             progress=args.progress)
    arrays = {"logits_int": result.logits_int, "outputs_int": result.outputs_int, "logits": result.logits,
              "layer_names": np.array(result.layer_names, dtype=str)}
    arrays.update({f"spikes/{name}": s for name, s in result.spikes.items()})
    write_npz_atomic(out, arrays)
    print(f"{result.logits_int.shape[0]} images, {result.time_steps} Lava time-steps (latency {result.latency_steps} per image), "
          f"{result.wall_s:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
