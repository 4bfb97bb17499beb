"""Shared Rich console, the one way tito reports a fatal problem, and the commands' error handler."""
from __future__ import annotations

import functools
import shutil

import typer
from rich.console import Console
from rich.markup import escape

from .errors import TitoError

# wide enough for the results table when output is captured (no terminal to measure)
_WIDTH = shutil.get_terminal_size((150, 40)).columns
console = Console(highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, width=_WIDTH)

__all__ = ["console", "err_console", "escape", "fail", "reports_errors", "say"]


def say(message: str, style: str = "") -> None:
    """Print plain text (paths, install hints like `pip install -e '.[lab]'`): never read as markup."""
    console.print(f"[{style}]{escape(message)}[/]" if style else escape(message), soft_wrap=True)


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print an error and return the Exit to raise (callers write `raise fail(...)`).
    The message is plain text: brackets in it are shown, not read as Rich markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def reports_errors(command):
    """Decorator of a command: a TitoError ends it with its message and exit code 2."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TitoError as exc:
            raise fail(str(exc)) from None
    return wrapper
