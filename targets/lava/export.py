"""``export_lava``: write an integer network as a self-contained Lava network directory.

DIR holds ``network.json`` (processes, connections, parameters, per-process
resource figures, schedule), ``arrays.npz`` (integer arrays, no pickle) and
``run.py``, which runs the network with lava-nc, numpy and ``lmhtc.targets.lava``
only: ``python DIR/run.py --inputs X.npz -o OUT.npz``. The directory appears
whole or not at all: it is built in a temporary directory next to DIR and
renamed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lmhtc.compiler.atomic import check_output, os_error
from lmhtc.compiler.ir import Graph
from lmhtc.targets.lava.description import save_description
from lmhtc.targets.lava.errors import LavaExportError
from lmhtc.targets.lava.lowering import lower_to_lava, resource_totals

RUN_TEMPLATE = Path(__file__).with_name("run_template.py")


def export_lava(graph: Graph, out_dir: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``graph`` (an integer network) to ``out_dir``; refuses a non-empty existing directory."""
    out = check_output(out_dir, directory=True)     # the output rule: no link, device or input
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LavaExportError(f"{out}: already exists and is not an empty directory; choose another -o")
    desc = lower_to_lava(graph)          # every refusal happens before anything is written
    desc.meta.update(metadata or {})
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise os_error(out, exc) from None
    try:
        save_description(desc, tmp, {"resources": resource_totals(desc)})
        shutil.copyfile(RUN_TEMPLATE, tmp / "run.py")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)    # mkdtemp creates 0700; give the directory the usual permissions
        if out.exists():
            out.rmdir()                  # empty (checked above)
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise os_error(out, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
