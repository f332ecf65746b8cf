"""The one output rule: every file lmhtc writes goes through ``atomic_write``.

Invariants:

* an output is a new path or an existing regular file (a directory where the
  writer makes a directory); a symbolic link, device, FIFO or socket is refused;
* an output is never one of the running command's inputs (same resolved path
  or same inode, so hard links count), registered with ``command_inputs``;
* the data goes to a temporary file in the target directory, then is renamed
  over the target: a failure leaves the old file (or nothing) and no partial file;
* every ``OSError`` becomes one ``OutputError`` line naming the path and the cause.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from lmhtc.npz_file import write_npz

from .errors import LmhtcError

_INPUTS: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("lmhtc_command_inputs", default=())


class OutputError(LmhtcError):
    """An output path that lmhtc may not or cannot write."""


@contextlib.contextmanager
def command_inputs(paths: Iterable[str | os.PathLike]) -> Iterator[None]:
    """While the block runs, no output may be (or share the inode of) one of ``paths``."""
    token = _INPUTS.set(tuple(Path(p) for p in paths))
    try:
        yield
    finally:
        _INPUTS.reset(token)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, RuntimeError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_output(path: str | os.PathLike, directory: bool = False) -> Path:
    """Refuse ``path`` as an output (one line) unless it is new or a regular file (or, with ``directory``,
    a directory), and not one of the command's inputs."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise OutputError(f"{path}: is a symbolic link; lmhtc writes only regular files or new paths")
        allowed = stat.S_ISREG(st.st_mode) or (directory and stat.S_ISDIR(st.st_mode))
        if not allowed:
            raise OutputError(f"{path}: exists and is {_kind(st.st_mode)}, not a regular file"
                              f"{' or a directory' if directory else ''}; choose another output")
    for inp in _INPUTS.get():
        if _same_file(path, inp):
            raise OutputError(f"{path}: is also an input of this command ({inp}); choose another output")
    return path


def os_error(path: str | os.PathLike, exc: OSError) -> OutputError:
    """The one-line error of an OSError met while writing ``path``."""
    return OutputError(f"{path}: cannot be written ({exc.strerror or type(exc).__name__})")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` under the output rule; nothing is left on failure."""
    path = check_output(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp creates 0600; give the file the usual permissions
        check_output(path)              # the target may have changed while the data was produced
        os.replace(tmp, path)
    except OSError as exc:
        raise os_error(path, exc) from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def save_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write_npz(f, arrays)
    return atomic_write(path, write)
