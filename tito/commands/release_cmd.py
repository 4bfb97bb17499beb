from __future__ import annotations

from pathlib import Path

import typer

from ..console import reports_errors, say
from ..registry import find_root
from ..release import release as build_release


@reports_errors
def release(out: Path = typer.Argument(..., help="folder to write the student flavour into"),
            force: bool = typer.Option(False, "--force",
                                       help="if OUT holds a learner's work, move it to a backup and release"),
            classroom: bool = typer.Option(False, "--classroom",
                                           help="add GitHub Classroom's autograding workflow "
                                                "(.github/workflows/classroom.yml: tito test per module on push)")) -> None:
    """Build the student flavour: solutions stripped, hidden tests removed, package re-exported,
    its own README, .gitignore and a learner's tito."""
    modules, backup = build_release(find_root(), out, force=force, classroom=classroom)
    if backup:
        say(f"moved the previous contents of {out} to {backup}", "yellow")
    say(f"released {len(modules)} module(s) to {out}: " + ", ".join(m.key for m in modules), "green")
    if classroom:
        say("with .github/workflows/classroom.yml: on every push, tito test per module with the public tests")
    say("no solution text survives in any released file (checked)")


def register(app: typer.Typer) -> None:
    app.command()(release)
