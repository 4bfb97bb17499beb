from __future__ import annotations

import importlib
import platform
import sys

import typer
from rich.table import Table

from ..console import console, escape
from ..grading.plugin import gpu_unusable_reason
from ..grading.requirements import OPTIONAL, TOOLS, is_installed

CORE = [  # (import name, needed for)
    ("numpy", "everything"),
    ("numba", "CPU kernels (modules 19, 21)"),
    ("jupytext", "export, notebooks"),
    ("nbformat", "notebooks"),
    ("nbclient", "running notebooks in tests"),
    ("pytest", "tito test"),
    ("matplotlib", "plots in the modules"),
    ("sklearn", "digits data (modules 16-18)"),
]


def _version(name: str) -> str | None:
    try:
        return getattr(importlib.import_module(name), "__version__", "ok")
    except Exception:
        return None


def doctor() -> None:
    """Check Python, the libraries (required and optional, with what each unlocks) and whether a
    CUDA device is usable, with the command that fixes each gap."""
    table = Table(title="tito doctor", title_justify="left")
    for col in ("what", "status", "needed for", "fix"):
        table.add_column(col, overflow="fold")
    ok_py = sys.version_info >= (3, 10)
    table.add_row("python", f"{'[green]' if ok_py else '[red]'}{platform.python_version()}[/]", "everything",
                  "" if ok_py else "use Python 3.10 or newer")
    for name, why in CORE:
        version = _version(name)
        table.add_row(name, f"[green]{escape(version)}[/]" if version else "[red]missing[/]", why,
                      "" if version else escape("pip install -e ."))
    for opt in OPTIONAL.values():
        if opt.name == "cupy":
            continue                      # reported with the CUDA device below
        version = _version(opt.name)
        table.add_row(f"{opt.name} (optional)", f"[green]{escape(version)}[/]" if version else "[yellow]missing[/]",
                      escape(opt.unlocks), "" if version else escape(opt.hint))
    for tool in TOOLS.values():
        found = is_installed(tool.name)
        table.add_row(f"{tool.name} (optional)", "[green]found[/]" if found else "[yellow]missing[/]",
                      escape(tool.unlocks), "" if found else escape(tool.hint))
    reason = gpu_unusable_reason()
    table.add_row("CUDA device (CuPy)", "[green]usable[/]" if reason is None else f"[yellow]{escape(reason)}[/]",
                  "GPU tests (else reported as 'needs GPU')",
                  "" if reason is None else escape(f"{OPTIONAL['cupy'].hint} on a machine with an NVIDIA GPU "
                                                   "(e.g. Colab)"))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
