from __future__ import annotations

from typing import Optional

import typer

from ..console import reports_errors, say
from ..registry import find_root
from ..scaffold import new_module


@reports_errors
def new(number: str = typer.Argument(..., help="two digits, e.g. 22"),
        name: str = typer.Argument(..., help="lowercase letters, digits and _, e.g. llm_ptq"),
        title: Optional[str] = typer.Option(None, "--title", help="the module's title (default: from the name)"),
        export: Optional[str] = typer.Option(None, "--export",
                                             help="the package file tinyq/EXPORT.py (default: the name)")) -> None:
    """Start module NN_name: module.yaml, a source with one example exercise, its public and hidden
    tests, helpers and oracle; then export it. It gets full marks at once. Nothing is overwritten."""
    module, written = new_module(find_root(), number, name, title=title, export=export)
    for path in written:
        say(f"wrote {module.rel(path)}", "green")
    say(f"exported {module.key} -> {module.rel(module.target)}", "green")
    say(f"next: replace the example exercise (clip_ratio) in {module.rel(module.source)} and "
        f"{module.rel(module.tests_dir)}/ with the module's own, keep `points` in module.yaml equal to the "
        f"tests' sum, mark module {module.number} built in LEARNING_PATH.md with module.yaml's time and "
        f"prerequisites, then run `python -m pytest {module.rel(module.tests_dir)} tests/tooling`")


def register(app: typer.Typer) -> None:
    app.command()(new)
