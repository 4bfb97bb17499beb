from __future__ import annotations

from typing import List, Optional

import typer

from ..console import reports_errors, say
from ..errors import TitoError
from ..export import export_modules
from ..registry import find_root, select
from ..source import SourceError
from .common import synchronise


@reports_errors
def export(modules: Optional[List[str]] = typer.Argument(None, help="15, quantization or 15_quantization"),
           all_: bool = typer.Option(False, "--all", help="export every module")) -> None:
    """Write the `#| export` cells of module sources into the tinyq package (all or nothing).
    A notebook edited since its last sync is taken into its source first."""
    selected = select(modules, all_, find_root())
    synchronise(selected)
    try:
        rendered = export_modules(selected)
    except SourceError as exc:
        raise TitoError(f"{exc}\nnothing was written: the package is unchanged") from None
    for r in rendered:
        say(f"exported {r.module.key} -> {r.module.rel(r.target)}", "green")


def register(app: typer.Typer) -> None:
    app.command()(export)
