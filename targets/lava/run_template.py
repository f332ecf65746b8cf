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


def write_npz_atomic(path: Path, arrays: dict) -> None:
    """Write to a temporary file next to ``path``, then rename: no partial file on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    from lmhtc.targets.lava.network import run_description

    try:
        with np.load(args.inputs, allow_pickle=False) as f:
            if "x" not in f.files:
                raise LavaNetworkError(f"{args.inputs}: no array 'x'")
            x = f["x"]
    except (OSError, ValueError) as exc:
        print(f"error: {args.inputs}: cannot be read as .npz ({' '.join(str(exc).split())})", file=sys.stderr)
        return 2
    except LavaNetworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_description(HERE, x, conv_model=args.conv_model, record_spikes=not args.no_spikes,
                                 progress=args.progress)
    except LavaNetworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    arrays = {"logits_int": result.logits_int, "outputs_int": result.outputs_int, "logits": result.logits,
              "layer_names": np.array(result.layer_names, dtype=str)}
    arrays.update({f"spikes/{name}": s for name, s in result.spikes.items()})
    try:
        write_npz_atomic(out, arrays)
    except OSError as exc:
        print(f"error: {out}: cannot be written ({exc.strerror or exc})", file=sys.stderr)
        return 2
    print(f"{len(x)} images, {result.time_steps} Lava time-steps (latency {result.latency_steps} per image), "
          f"{result.wall_s:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
