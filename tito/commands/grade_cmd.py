from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..console import fail, reports_errors, say
from ..grade import Limits, check_grading_machine, find_submissions, grade_all
from ..registry import find_root, select


@reports_errors
def grade(submissions: Path = typer.Argument(..., help="folder of submissions (folders or .zip files)"),
          out: Path = typer.Option(Path("grades.csv"), "--out", help="gradebook CSV (written atomically)"),
          modules: Optional[List[str]] = typer.Option(None, "--module", "-m", help="grade only these modules"),
          jobs: int = typer.Option(1, "--jobs", "-j", help="submissions graded in parallel"),
          timeout: float = typer.Option(300.0, "--timeout", help="wall-time limit per module, seconds"),
          memory: int = typer.Option(6144, "--memory", help="memory limit per module, MB"),
          gradescope: Optional[Path] = typer.Option(None, "--gradescope",
                                                    help="also write DIR/<student>/results.json"),
          regrade: bool = typer.Option(False, "--regrade", help="regrade submissions already in the CSV")) -> None:
    """Autograde a class with the instructor's tests, each module of each submission in its own
    process with a time and memory limit. Every submission gets a row, whatever it does.
    A submission may hand in name_dev.py, name_dev.ipynb or both (the one changed last is graded)."""
    root = find_root()
    selected = select(modules, not modules, root)
    check_grading_machine(selected)
    if not submissions.is_dir():
        raise fail(f"{submissions} is not a folder of submissions")
    subs = find_submissions(submissions)
    if not subs:
        raise fail(f"no submissions (folders or .zip files) in {submissions}")

    def show(row):
        say(f"graded {row.student}: {row.total:g} / {row.max_total:g}"
            + "".join(f"\n    {r.module}: {r.score:g} / {r.max_score:g}  {r.graded_file}  {r.note}"
                      for r in row.results))

    rows = grade_all(root, selected, subs, out, jobs=jobs, limits=Limits(timeout, memory),
                     regrade=regrade, gradescope=gradescope, on_row=show)
    say(f"wrote {out} ({len(rows)} submission(s))", "green")


def register(app: typer.Typer) -> None:
    app.command()(grade)
