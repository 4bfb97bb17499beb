"""`tito gradescope build`: the autograder zip for Gradescope (one container per submission)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..console import reports_errors, say
from ..grade import Limits, check_grading_machine
from ..gradescope import build as build_zip
from ..registry import find_root, select

gradescope_app = typer.Typer(help="Grade on Gradescope: the autograder zip for an assignment.",
                             no_args_is_help=True)


@gradescope_app.command("build")
@reports_errors
def build(out: Path = typer.Argument(..., metavar="OUT.zip", help="the autograder file to write, e.g. autograder.zip"),
          names: Optional[List[str]] = typer.Argument(None, metavar="MODULES",
                                                     help="the same as --modules"),
          modules: Optional[List[str]] = typer.Option(
              None, "--modules", "-m", help="grade only these modules, e.g. --modules 15,16 or -m 15 -m 16 "
                                            "(default: every module)"),
          timeout: float = typer.Option(300.0, "--timeout", help="wall-time limit per module, seconds"),
          memory: int = typer.Option(6144, "--memory", help="memory limit per module, MB"),
          leaderboard: bool = typer.Option(False, "--leaderboard",
                                           help="send the perf tests' measured ratios to Gradescope's leaderboard")) -> None:
    """Build the autograder zip: setup.sh (Python, pinned dependencies, the course's grading code,
    tests and oracles) and run_autograder (grades /autograder/submission as `tito grade` does and
    writes results.json). No reference solution is in it (leak-checked)."""
    root = find_root()
    wanted = [n.strip() for item in [*(modules or []), *(names or [])] for n in item.split(",") if n.strip()]
    selected = select(wanted, not wanted, root)
    check_grading_machine(selected)     # the zip pins this machine's versions: it must grade here too
    built = build_zip(root, out, selected, limits=Limits(timeout, memory), leaderboard=leaderboard)
    say(f"wrote {built.zip_path} ({built.files} files) for {len(built.modules)} module(s): "
        + ", ".join(m.key for m in built.modules), "green")
    say("setup.sh installs the project" + (f" with the extras {', '.join(built.extras)}" if built.extras else "")
        + f"; no solution text in the zip (looked for {built.checked} solution lines and pairs)")
    say("upload it as the assignment's autograder (an Ubuntu base image); learners submit "
        "their module files (name_dev.py or name_dev.ipynb) or their whole course folder")


def register(app: typer.Typer) -> None:
    app.add_typer(gradescope_app, name="gradescope")
