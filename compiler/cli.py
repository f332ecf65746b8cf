"""The ``lmhtc`` command line: the typer app and its commands (compiler/commands/, one module per family).

Every user error ends in one line on stderr (``error: ...`` naming the file,
layer or key at fault) and exit status 2; no partial output file is left.
The order of ``COMMANDS`` is the order ``lmhtc --help`` lists them in.
"""
from __future__ import annotations

import typer

from .commands import compiling, conversion, interchange, model, running

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lmhtc: deployment compiler for LM-HT spiking neural networks.")

COMMANDS = (
    ("train", model.train),
    ("evaluate", model.evaluate),
    ("compile", compiling.compile_cmd),
    ("exactness", compiling.exactness),
    ("inspect", compiling.inspect),
    ("simulate", running.simulate),
    ("sweep", running.sweep),
    ("import-nir", interchange.import_nir),
    ("export", interchange.export),
    ("verify", running.verify),
    ("dataset", model.dataset),
    ("zoo", model.zoo),
    ("version", model.version),
    ("report", running.report),
    ("convert", conversion.convert),
    ("conversion-report", conversion.conversion_report),
    ("sensitivity", running.sensitivity),
)

for _name, _command in COMMANDS:
    app.command(_name)(_command)


def main() -> None:
    """Console entry point."""
    app(prog_name="lmhtc")


if __name__ == "__main__":
    main()
