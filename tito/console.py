"""Shared Rich console and the one way tito reports a fatal problem."""
from __future__ import annotations

import typer
import shutil

from rich.console import Console

# wide enough for the results table when output is captured (no terminal to measure)
_WIDTH = shutil.get_terminal_size((150, 40)).columns
console = Console(highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, width=_WIDTH)


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print an error and return the Exit to raise (callers write `raise fail(...)`)."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)
