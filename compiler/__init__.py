"""lmhtc compiler: frontends (checkpoints, model zoo), IR, passes, artifacts and CLI."""

from lmhtc import __version__  # noqa: F401  (defined once, in lmhtc/__init__.py)
