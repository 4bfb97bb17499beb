from __future__ import annotations

import typer
from rich.table import Table

from .. import scores
from ..console import console, fail
from ..export import export_state
from ..registry import RegistryError, all_modules, find_root

STATE_STYLE = {"current": "[green]exported[/]", "stale": "[yellow]stale: run tito export[/]",
               "missing": "[red]not exported[/]"}


def status() -> None:
    """Table of modules: exported or stale, last score, prerequisites."""
    try:
        root = find_root()
        modules = all_modules(root)
    except RegistryError as exc:
        raise fail(str(exc))
    last = scores.load(root)
    table = Table(title=f"tinyq course at {root}", title_justify="left")
    for col in ("module", "title", "export", "last score", "prerequisites", "time"):
        table.add_column(col)
    for m in modules:
        score = last.get(m.key)
        shown = f"{score['score']:g} / {score['max_score']:g}" if score else "-"
        table.add_row(m.key, m.title, STATE_STYLE[export_state(m)], shown,
                      ", ".join(m.prerequisites) or "-", m.time)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(status)
