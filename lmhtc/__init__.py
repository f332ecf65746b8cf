"""lmhtc: a deployment compiler for LM-HT spiking networks.

The Python API (``lmhtc.compile``, ``lmhtc.load``, ``lmhtc.Artifact``; see ``lmhtc.api``) loads on
first use, so that importing ``lmhtc`` itself loads nothing heavy: an exported Lava ``run.py``
imports ``lmhtc.targets.lava`` with numpy and lava-nc only.

Sub-packages: ``lmhtc.compiler`` (frontends, IR, passes, artifacts, command line),
``lmhtc.runtime`` (the bit-accurate integer runtime), ``lmhtc.targets`` (ONNX and Lava emitters).
"""
__version__ = "0.1.0"

_API = ("Artifact", "Simulation", "compile", "load")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from lmhtc import api

        return getattr(api, name)
    raise AttributeError(f"module 'lmhtc' has no attribute {name!r}")
