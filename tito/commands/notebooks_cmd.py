from __future__ import annotations

import importlib.util
import os
import sys
from typing import List, Optional

import typer

from ..console import fail, reports_errors, say
from ..registry import all_modules, find_root, select
from .common import synchronise

LAB_HINT = "JupyterLab is not installed in this environment: pip install -e '.[lab]'"


@reports_errors
def notebooks(modules: Optional[List[str]] = typer.Argument(None),
              all_: bool = typer.Option(True, "--all/--only", help="every module (default)"),
              keep: Optional[str] = typer.Option(None, "--keep", metavar="py|ipynb",
                                                 help="after a conflict: keep this side, back up the other")) -> None:
    """Pair each module source with its .ipynb: the side edited since the last sync updates the other
    (after a backup); both edited is a conflict, reported and left alone."""
    if keep not in (None, "py", "ipynb"):
        raise fail(f"--keep takes 'py' or 'ipynb', not {keep!r}")
    selected = select(modules, not modules and all_, find_root())
    synchronise(selected, create=True, keep=keep)
    say(f"{len(selected)} notebook(s) paired with their sources", "green")


@reports_errors
def lab(port: Optional[int] = typer.Option(None, help="port for JupyterLab")) -> None:
    """Start JupyterLab on the course, every notebook paired with its source."""
    root = find_root()
    modules = all_modules(root)
    if importlib.util.find_spec("jupyterlab") is None:      # checked before any file is touched
        raise fail(LAB_HINT)
    synchronise(modules, create=True)
    args = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}",
            "--LabApp.default_url=/lab/tree/modules"]
    if port:
        args.append(f"--port={port}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:        # containers and Colab run as root
        args.append("--allow-root")
    say("starting JupyterLab: edit the notebooks in modules/ (a save writes the .py too), "
        "then run `tito test NN`")
    os.execv(sys.executable, args)


def register(app: typer.Typer) -> None:
    app.command()(notebooks)
    app.command()(lab)
