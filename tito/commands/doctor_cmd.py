from __future__ import annotations

import importlib
import platform
import sys

import typer
from rich.table import Table

from ..console import console
from ..pytest_plugin import gpu_unusable_reason

CHECKS = [  # (import name, needed for, fix)
    ("numpy", "everything", "pip install -e ."),
    ("numba", "CPU kernels (modules 19, 21)", "pip install -e ."),
    ("jupytext", "export, notebooks", "pip install -e ."),
    ("nbformat", "notebooks", "pip install -e ."),
    ("nbclient", "running notebooks in tests", "pip install -e ."),
    ("pytest", "tito test", "pip install -e ."),
    ("matplotlib", "plots in the modules", "pip install -e ."),
    ("sklearn", "digits data (modules 16-18)", "pip install -e ."),
    ("jupyterlab", "tito lab", "pip install -e '.[lab]'"),
    ("cupy", "GPU kernels (modules 20, 21)", "pip install -e '.[gpu]' on a machine with an NVIDIA GPU"),
]


def doctor() -> None:
    """Check Python, the libraries and whether a CUDA device is usable, with fixes."""
    table = Table(title="tito doctor", title_justify="left")
    for col in ("what", "status", "needed for", "fix"):
        table.add_column(col, overflow="fold")
    ok_py = sys.version_info >= (3, 10)
    table.add_row("python", f"{'[green]' if ok_py else '[red]'}{platform.python_version()}[/]", "everything",
                  "" if ok_py else "use Python 3.10 or newer")
    for name, why, fix in CHECKS:
        try:
            mod = importlib.import_module(name)
            table.add_row(name, f"[green]{getattr(mod, '__version__', 'ok')}[/]", why, "")
        except Exception as exc:
            table.add_row(name, f"[yellow]missing[/] ({type(exc).__name__})", why, fix)
    reason = gpu_unusable_reason()
    table.add_row("CUDA device", "[green]usable[/]" if reason is None else f"[yellow]{reason}[/]",
                  "GPU tests (else reported as 'needs GPU')",
                  "" if reason is None else "use a machine with an NVIDIA GPU (e.g. Colab) for modules 20-21")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
