"""User errors of the Lava target (export side; imports compiler, so never imported by run.py)."""
from lmhtc.compiler.errors import LmhtcError


class LavaExportError(LmhtcError):
    """An IR graph the Lava target cannot express; the message names the node and the reason."""


class LavaRunError(LmhtcError):
    """An exported network or an input that the Lava run cannot use (wraps LavaNetworkError)."""
