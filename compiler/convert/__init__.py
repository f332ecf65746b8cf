"""ANN → SNN conversion frontends.

* ``ann``       — the ANN side: a zoo ANN in QCFS or plain-ReLU form, its per-layer
                  activations, and the IF-network IR built from it (threshold balancing).
* ``qcfs``      — QCFS ANN → LM-HT checkpoint of the hybrid recipe (LM-HT paper §4.4).
* ``msat_node`` — the MSAT neuron as an IR node kind (registered with the artifact loader).
* ``msat``      — the MSAT neuron's float dynamics (run by ``lmhtc.compiler.executor``).
* ``schemes``   — threshold schemes on an IF-network IR: θ_max, 0.7·θ_max, MSAT, MSAT + spike confidence.
* ``analysis``  — per-layer conversion error: quantization, clip and SIN terms, SIN ratio over time.
* ``curve``     — the accuracy-vs-T experiment.
* ``plots``     — PNG plots of the above.

See docs/conversion.md.
"""
