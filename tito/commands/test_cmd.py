from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import scores
from ..console import console, fail, reports_errors, say
from ..export import export_modules, export_state
from ..registry import find_root, select
from ..report import module_table, totals_table
from ..grading.runner import run_pytest, score_modules, write_json
from .common import synchronise


@reports_errors
def test(modules: Optional[List[str]] = typer.Argument(None, help="15, quantization or 15_quantization"),
         all_: bool = typer.Option(False, "--all", help="grade every module"),
         json_file: Optional[Path] = typer.Option(None, "--json", help="also write the results as JSON"),
         no_export: bool = typer.Option(False, "--no-export",
                                        help="refuse (instead of re-exporting) when a source changed"),
         keyword: Optional[str] = typer.Option(None, "-k", help="only tests matching this pytest expression"),
         verbose: bool = typer.Option(False, "-v", "--verbose", help="show pytest's own output"),
         require_pass: bool = typer.Option(False, "--require-pass",
                                           help="exit 1 unless every graded test passed (a speed test "
                                                "passes at or past its floor); for CI such as GitHub Classroom")) -> None:
    """Grade your exported package with the module's tests: points, measured ratios, total.

    Exits 0 whenever grading ran (whatever the score), non-zero when it could not run; with
    --require-pass, also 1 when a graded test did not pass.
    """
    root = find_root()
    selected = select(modules, all_, root)
    stale = [m for m in selected if export_state(m) != "current"]
    if stale and no_export:
        names = ", ".join(m.key for m in stale)
        raise fail(f"the package is out of date for {names} (source or notebook changed, or never "
                   f"exported); run `tito export {stale[0].key}` first")
    synchronise(selected)
    stale = [m for m in selected if export_state(m) != "current"]
    if stale:
        export_modules(stale)
        for m in stale:
            say(f"re-exported {m.key}: its source changed since the last export", "yellow")
    dirs = [m.tests_dir for m in selected if m.tests_dir.is_dir()]
    records, _, _ = run_pytest(dirs, root, capture=not verbose, extra=["-k", keyword] if keyword else None)
    results = score_modules(selected, records, selected_only=bool(keyword))
    for r in results:
        console.print(module_table(r))
    console.print(totals_table(results))
    if keyword:
        say(f"a partial run (-k {keyword}): not recorded as the modules' last score", "yellow")
    else:
        scores.save(root, results)
    if json_file:
        write_json(results, json_file)
        say(f"wrote {json_file}")
    if require_pass:
        failing = [f"{r.module}::{t.name}" for r in results for t in r.tests
                   if not t.not_counted and t.outcome != "passed"]
        if failing or not any(r.tests for r in results):
            more = f" and {len(failing) - 3} more" if len(failing) > 3 else ""
            raise fail("not every graded test passed: " + (", ".join(failing[:3]) + more if failing else "no tests"), 1)


def register(app: typer.Typer) -> None:
    app.command()(test)
