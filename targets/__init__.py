"""lmhtc targets: emitters that read the IR (ONNX, Lava). Nothing here reads checkpoints."""
