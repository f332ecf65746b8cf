"""User-facing errors: one line, naming the file, layer or key at fault."""


class LmhtcError(Exception):
    """An error caused by the user's input. The CLI prints it on one line and exits non-zero."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class CheckpointError(LmhtcError):
    """A checkpoint file that cannot be loaded as the requested network."""
