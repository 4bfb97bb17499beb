"""Entry point of `tito`: registers each command group (one file per group under tito/commands).

The learner's commands are always there; the instructor's (release, grade, site) only where their
files are: `tito release` leaves them out of the student flavour, so a learner's `tito --help`
offers what a learner can use.
"""
from __future__ import annotations

import importlib

import typer

from .commands import data_cmd, doctor_cmd, export_cmd, notebooks_cmd, status_cmd, test_cmd

LEARNER = (export_cmd, test_cmd, status_cmd, notebooks_cmd, doctor_cmd, data_cmd)
INSTRUCTOR = ("release_cmd", "grade_cmd", "site_cmd", "new_cmd", "gradescope_cmd")


def _instructor_groups() -> list:
    groups = []
    for name in INSTRUCTOR:
        try:
            groups.append(importlib.import_module(f"{__package__}.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name not in (f"{__package__}.commands.{name}", f"{__package__}.release",
                                f"{__package__}.grade", f"{__package__}.site", f"{__package__}.scaffold"):
                raise                     # a missing library is an error, not a learner's copy
    return groups


INSTRUCTOR_GROUPS = _instructor_groups()
app = typer.Typer(help=("tito: export, test and grade the tinyq quantization course." if INSTRUCTOR_GROUPS
                        else "tito: export your work from the module notebooks and grade it."),
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

for group in (*LEARNER, *INSTRUCTOR_GROUPS):
    group.register(app)

if __name__ == "__main__":
    app()
