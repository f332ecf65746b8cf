"""Built-in JSON presets (energy models, core descriptions) found by name, or a user's JSON file by path."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import LmhtcError


def builtin_names(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json"))


def read_preset(spec: str, directory: Path, what: str, error: type[LmhtcError]) -> tuple[dict, str]:
    """The JSON object of preset ``spec`` (a built-in name in ``directory`` or a file path) and where it came from.

    Errors are one line naming the file: missing, unreadable, not JSON.
    """
    path = Path(spec)
    if not path.is_file():
        if path.suffix == ".json" or "/" in spec or "\\" in spec:
            raise error(f"{spec}: no such {what} file")
        if spec not in builtin_names(directory):
            raise error(f"unknown {what} {spec!r} (built in: {', '.join(builtin_names(directory))}; "
                        f"or give a JSON file)")
        path = directory / f"{spec}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read {what} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    return data, str(path)
