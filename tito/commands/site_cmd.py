"""`tito site build`: the course website (Jupyter Book 1.x) from the registry and the student flavour."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from ..console import console, escape, reports_errors, say
from ..registry import find_root
from ..site import DEFAULT_BOOK, DEFAULT_OUT, build_site

site_app = typer.Typer(help="The course website (Jupyter Book 1.x), configured in site/course.yml.",
                       no_args_is_help=True)


@site_app.command("build")
@reports_errors
def build(names: Optional[List[str]] = typer.Argument(None, metavar="MODULES",
                                                     help="the same as --modules"),
          out: Optional[Path] = typer.Option(None, "--out", help=f"folder of the HTML site (default: {DEFAULT_OUT})"),
          modules: Optional[List[str]] = typer.Option(
              None, "--modules", "-m",
              help="publish only these modules, e.g. --modules 15 16 or 15,16 (default: the 'modules' "
                   "setting of site/course.yml)"),
          book: Optional[Path] = typer.Option(
              None, "--book", help=f"folder for the generated Jupyter Book sources (default: {DEFAULT_BOOK})"),
          timeout: int = typer.Option(600, help="seconds a notebook cell may run")) -> None:
    """Build the site: module pages from the student flavour with the reference's outputs, leak-checked."""
    wanted = [n.strip() for item in [*(modules or []), *(names or [])] for n in item.split(",") if n.strip()]
    start = time.perf_counter()
    result = build_site(find_root(), out=out, modules=wanted or None, book=book, timeout=timeout,
                        progress=lambda message: say(f"{message} ...", "dim"))
    for warning in result.warnings:
        console.print(f"[yellow]jupyter-book:[/] {escape(warning)}", soft_wrap=True)
    for key, seconds in result.seconds.items():
        console.print(f"  {key:<24} {seconds:6.1f} s")
    console.print(f"no solution text in the site (looked for {result.checked} solution lines and pairs)")
    console.print(f"[green]built[/] the site with {len(result.modules)} module(s) in "
                  f"{time.perf_counter() - start:.0f} s: {result.out / 'index.html'}")


def register(app: typer.Typer) -> None:
    app.add_typer(site_app, name="site")
