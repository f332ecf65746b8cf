"""Export a small snnTorch network to NIR (model.nir) and an input sequence (seq.npz) for `lmhtc import-nir`.

python examples/snntorch_to_nir.py [OUTDIR]   (needs the dev extra: snntorch, nirtorch)
"""
import sys
from pathlib import Path

import nir
import numpy as np
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir


def leaky(n, output=False):
    # per-neuron β and θ: a scalar exports an LIF node of empty shape, which NIR's type check rejects
    return snn.Leaky(beta=torch.full((n,), 0.875), threshold=torch.ones(n), reset_mechanism="subtract",
                     reset_delay=False, init_hidden=True, output=output)


def main(out: Path) -> None:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), leaky(8), torch.nn.Linear(8, 3), leaky(3, output=True))
    out.mkdir(parents=True, exist_ok=True)
    nir.write(out / "model.nir", export_to_nir(net, torch.zeros(4)))   # one sample, no batch dimension
    x = np.random.default_rng(0).uniform(0, 3, size=(16, 32, 4)).astype(np.float32)   # [steps, N, features]
    with torch.no_grad():
        spikes = np.stack([net(torch.as_tensor(x[t]))[0].numpy() for t in range(16)])
    np.savez(out / "seq.npz", x=x, snntorch_spikes=spikes)
    print(f"wrote {out}/model.nir and {out}/seq.npz")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
