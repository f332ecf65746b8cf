"""Built-in JSON presets (energy models, core descriptions) found by name, or a user's JSON file by path."""
from __future__ import annotations

from pathlib import Path

from lmhtc.safe_json import read_json

from ..errors import LmhtcError


def builtin_names(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json"))


def read_preset(spec: str, directory: Path, what: str, error: type[LmhtcError]) -> tuple[dict, str]:
    """The JSON object of preset ``spec`` (a built-in name in ``directory`` or a file path) and where it came from.

    Errors are one line naming the file: missing, unreadable, not JSON, too large or too deep.
    """
    path = Path(spec)
    if not path.is_file():
        if path.suffix == ".json" or "/" in spec or "\\" in spec:
            raise error(f"{spec}: no such {what} file")
        if spec not in builtin_names(directory):
            raise error(f"unknown {what} {spec!r} (built in: {', '.join(builtin_names(directory))}; "
                        f"or give a JSON file)")
        path = directory / f"{spec}.json"
    return read_json(path, what, error), str(path)
