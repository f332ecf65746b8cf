"""Frontends: checkpoints and PyTorch modules → IR graphs."""
from .checkpoint import checkpoint_to_ir
from .torch_fx import FrontendError, trace_to_ir

__all__ = ["checkpoint_to_ir", "trace_to_ir", "FrontendError"]
