from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import scores
from ..console import console, fail
from ..export import export_modules, export_state
from ..registry import RegistryError, find_root, select
from ..report import module_table, totals_table
from ..source import SourceError
from ..testing import TestRunError, run_pytest, score_modules, write_json


def test(modules: Optional[List[str]] = typer.Argument(None, help="15, quantization or 15_quantization"),
         all_: bool = typer.Option(False, "--all", help="grade every module"),
         json_file: Optional[Path] = typer.Option(None, "--json", help="also write the results as JSON"),
         no_export: bool = typer.Option(False, "--no-export",
                                        help="refuse (instead of re-exporting) when a source changed"),
         keyword: Optional[str] = typer.Option(None, "-k", help="only tests matching this pytest expression"),
         verbose: bool = typer.Option(False, "-v", "--verbose", help="show pytest's own output")) -> None:
    """Grade your exported package with the module's tests: points, measured ratios, total.

    Exits 0 whenever grading ran (whatever the score), non-zero when it could not run.
    """
    try:
        root = find_root()
        selected = select(modules, all_, root)
        stale = [m for m in selected if export_state(m) != "current"]
        if stale and no_export:
            names = ", ".join(m.key for m in stale)
            raise fail(f"the package is out of date for {names} (source changed or never exported); "
                       f"run `tito export {stale[0].key}` first")
        if stale:
            export_modules(stale)
            for m in stale:
                console.print(f"[yellow]re-exported {m.key}[/]: its source changed since the last export")
    except (RegistryError, SourceError) as exc:
        raise fail(str(exc))
    dirs = [m.tests_dir for m in selected if m.tests_dir.is_dir()]
    try:
        records, _, output = run_pytest(dirs, root, capture=not verbose,
                                        extra=["-k", keyword] if keyword else None)
    except TestRunError as exc:
        raise fail(str(exc))
    results = score_modules(selected, records, selected_only=bool(keyword))
    for r in results:
        console.print(module_table(r))
    console.print(totals_table(results))
    scores.save(root, results)
    if json_file:
        write_json(results, json_file)
        console.print(f"wrote {json_file}")


def register(app: typer.Typer) -> None:
    app.command()(test)
