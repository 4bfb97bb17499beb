from __future__ import annotations

from pathlib import Path

import typer

from ..console import console, fail
from ..registry import RegistryError, find_root
from ..release import ReleaseError, release as build_release
from ..source import SourceError


def release(out: Path = typer.Argument(..., help="folder to write the student flavour into"),
            force: bool = typer.Option(False, "--force",
                                       help="if OUT holds a learner's work, move it to a backup and release")) -> None:
    """Build the student flavour: solutions stripped, hidden tests removed, package re-exported."""
    try:
        modules, backup = build_release(find_root(), out, force=force)
    except (RegistryError, ReleaseError, SourceError) as exc:
        raise fail(str(exc))
    if backup:
        console.print(f"[yellow]moved the previous contents of {out} to {backup}[/]")
    console.print(f"[green]released[/] {len(modules)} module(s) to {out}: "
                  + ", ".join(m.key for m in modules))
    console.print("no solution text survives in any released file (checked)")


def register(app: typer.Typer) -> None:
    app.command()(release)
