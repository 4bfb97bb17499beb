"""Helpers of the tooling tests: throwaway copies of the course tree and a way to run tito in them."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]


def copy_course(dest: Path, modules: tuple[str, ...] = ("15_quantization",)) -> Path:
    """A minimal course tree in `dest` holding the given modules, their tests and the support code."""
    (dest / "modules").mkdir(parents=True)
    (dest / "tests").mkdir()
    for key in modules:
        shutil.copytree(REPO / "modules" / key, dest / "modules" / key,
                        ignore=shutil.ignore_patterns("*.ipynb", "__pycache__"))
        if (REPO / "tests" / key).is_dir():
            shutil.copytree(REPO / "tests" / key, dest / "tests" / key,
                            ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "tinyq", dest / "tinyq", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "tito", dest / "tito", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (to prove that nothing changed)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def run_tito(monkeypatch, cwd: Path, *args: str):
    """Invoke the tito CLI in-process with `cwd` as the working directory."""
    from tito.cli import app
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, list(args))
