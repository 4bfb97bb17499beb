"""Entry point of `tito`: registers each command group (one file per group under tito/commands)."""
from __future__ import annotations

import typer

from .commands import doctor_cmd, export_cmd, grade_cmd, notebooks_cmd, release_cmd, site_cmd, status_cmd, test_cmd

app = typer.Typer(help="tito: export, test and grade the tinyq quantization course.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

for group in (export_cmd, test_cmd, status_cmd, notebooks_cmd, doctor_cmd, release_cmd, grade_cmd, site_cmd):
    group.register(app)

if __name__ == "__main__":
    app()
