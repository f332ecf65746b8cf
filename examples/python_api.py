"""lmhtc from Python: compile a checkpoint, simulate it bit-accurately, export it, verify the targets.

    python examples/python_api.py ../shared/fixtures/hybrid_resnet20_digits_Q8_L2_T2.pth \\
        --arch resnet20 -L 2 -T 2 --recipe hybrid \\
        --inputs ../shared/fixtures/digits32_test.npz --calib ../shared/fixtures/digits32_calib.npz --out out_api

A checkpoint with an lmhtc sidecar (``lmhtc train``) needs none of the network flags.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import lmhtc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--arch")
    p.add_argument("-L", "--levels", type=int)
    p.add_argument("-T", "--timesteps", type=int)
    p.add_argument("--recipe")
    p.add_argument("--inputs", required=True, help=".npz with x [N,C,H,W] and y [N]")
    p.add_argument("--calib", help=".npz with x: calibration images for the integer lowering")
    p.add_argument("--limit", type=int, default=64, help="images of --inputs to simulate")
    p.add_argument("--out", default="out_api", help="directory for the artifact and the exported models")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with np.load(args.inputs) as f:
        x, y = f["x"][:args.limit], f["y"][:args.limit]
    calib = None
    if args.calib:
        with np.load(args.calib) as f:
            calib = f["x"][:64]

    art = lmhtc.compile(args.checkpoint, arch=args.arch, levels=args.levels, timesteps=args.timesteps,
                        recipe=args.recipe, calib=calib)                  # reparam="exact", 8-bit weights
    path = art.save(out / "model.lmhtc")
    art = lmhtc.load(path)

    run = art.simulate(x, mode="int")                                     # the bit-accurate integer runtime
    ref = art.simulate(x, mode="float")                                   # the float reference executor
    print(f"integer runtime: accuracy {100 * (run.logits.argmax(1) == y).mean():.2f} % "
          f"(float {100 * (ref.logits.argmax(1) == y).mean():.2f} %), "
          f"{run.sops.mean():.4g} SOPs per image")

    for target, name in (("onnx", "model.onnx"), ("onnx-int", "model_int.onnx")):
        print(f"exported {art.export(target, out / name)}")

    for pair in art.verify(x[:8], targets=["int", "onnx-int"]):
        print(f"{pair['a']} vs {pair['b']}: bit-exact {pair['bit_exact']}")


if __name__ == "__main__":
    main()
