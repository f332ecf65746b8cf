"""lmhtc compiler: frontends (checkpoints, model zoo), IR, passes, artifacts and CLI."""

__version__ = "0.1.0"
