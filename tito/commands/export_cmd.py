from __future__ import annotations

from typing import List, Optional

import typer

from ..console import console, fail
from ..export import export_modules
from ..registry import RegistryError, find_root, select
from ..source import SourceError


def export(modules: Optional[List[str]] = typer.Argument(None, help="15, quantization or 15_quantization"),
           all_: bool = typer.Option(False, "--all", help="export every module")) -> None:
    """Write the `#| export` cells of module sources into the tinyq package (all or nothing)."""
    try:
        selected = select(modules, all_, find_root())
        rendered = export_modules(selected)
    except (RegistryError, SourceError) as exc:
        raise fail(f"{exc}\nnothing was written: the package is unchanged")
    for r in rendered:
        console.print(f"[green]exported[/] {r.module.key} -> {r.module.rel(r.target)}")


def register(app: typer.Typer) -> None:
    app.command()(export)
