from __future__ import annotations

import os
import shutil
import sys
from typing import List, Optional

import typer

from ..console import console, fail
from ..notebooks import write_paired
from ..registry import RegistryError, all_modules, find_root, select


def notebooks(modules: Optional[List[str]] = typer.Argument(None),
              all_: bool = typer.Option(True, "--all/--only", help="every module (default)")) -> None:
    """Write the paired .ipynb of each module source (jupytext keeps .py and .ipynb in sync)."""
    try:
        selected = select(modules, not modules and all_, find_root())
    except RegistryError as exc:
        raise fail(str(exc))
    for m in selected:
        path = write_paired(m.source)
        console.print(f"[green]wrote[/] {m.rel(path)} (paired with {m.source.name})")


def lab(port: Optional[int] = typer.Option(None, help="port for JupyterLab")) -> None:
    """Start JupyterLab on the modules, with paired notebooks."""
    try:
        root = find_root()
        modules = all_modules(root)
    except RegistryError as exc:
        raise fail(str(exc))
    if shutil.which("jupyter") is None and not _has_module("jupyterlab"):
        raise fail("JupyterLab is not installed: pip install -e '.[lab]'")
    for m in modules:
        write_paired(m.source)
    args = [sys.executable, "-m", "jupyter", "lab", str(root / "modules")]
    if port:
        args.append(f"--port={port}")
    console.print("starting JupyterLab; edit the notebooks, then run `tito export NN` and `tito test NN`")
    os.execv(sys.executable, args)


def _has_module(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


def register(app: typer.Typer) -> None:
    app.command()(notebooks)
    app.command()(lab)
