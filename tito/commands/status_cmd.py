from __future__ import annotations

import typer
from rich.table import Table

from .. import scores
from ..console import console, escape, reports_errors
from ..export import export_state
from ..registry import all_modules, find_root

STATE_STYLE = {"current": "[green]exported[/]", "stale": "[yellow]stale: run tito export[/]",
               "missing": "[red]not exported[/]",
               "notebook changed": "[yellow]notebook edited: run tito export[/]",
               "conflict": "[red].py and .ipynb both edited: run tito notebooks[/]"}


@reports_errors
def status() -> None:
    """Table of modules: exported or stale, last score, prerequisites."""
    root = find_root()
    modules = all_modules(root)
    last = scores.load(root)
    table = Table(title=escape(f"tinyq course at {root}"), title_justify="left")
    for col in ("module", "title", "export", "last score", "prerequisites", "time"):
        table.add_column(col)
    for m in modules:
        score = last.get(m.key)
        shown = f"{score['score']:g} / {score['max_score']:g}" if score else "-"
        table.add_row(m.key, escape(m.title), STATE_STYLE[export_state(m)], shown,
                      ", ".join(m.prerequisites) or "-", escape(m.time))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(status)
