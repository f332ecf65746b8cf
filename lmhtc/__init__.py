"""lmhtc: a deployment compiler for LM-HT spiking networks.

Sub-packages: ``lmhtc.compiler`` (frontends, IR, passes, artifacts, CLI), ``lmhtc.runtime`` (the
bit-accurate integer runtime) and ``lmhtc.targets`` (ONNX and Lava emitters). Importing ``lmhtc``
itself loads nothing heavy, so that an exported Lava ``run.py`` imports ``lmhtc.targets.lava``
with numpy and lava-nc only.
"""
__version__ = "0.1.0"
