"""Writing ``.npz`` files: numpy's layout with fixed timestamps, closed cleanly on a failed write.

numpy and the standard library only (an exported Lava ``run.py`` uses it). Invariant: ``write_npz``
writes what ``np.savez`` writes (uncompressed ``NAME.npy`` members, no pickle), byte-identical for the
same arrays, and on an OSError (a full disk) the archive is closed before the error propagates, so no
second traceback appears when it is garbage-collected.
"""
from __future__ import annotations

import zipfile

import numpy as np

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def write_npz(file, arrays: dict) -> None:
    """Write ``arrays`` (name → array) to ``file`` (a path or a binary file object)."""
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            with z.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
