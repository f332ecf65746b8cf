"""IR → IR passes. Each documents the invariant it keeps."""
from .fold_batchnorm import fold_batchnorm
from .reparameterize import reparameterize

__all__ = ["fold_batchnorm", "reparameterize"]
