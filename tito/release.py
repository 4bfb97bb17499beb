"""The student flavour: same layout, solutions stripped, hidden tests removed, package re-exported.

Built in a staging folder beside OUT, checked for leaks, then moved into place; a learner's work in
OUT is never overwritten (refused, or with force moved to a backup first).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import jupytext

from .errors import TitoError
from .export import export_modules
from .notebooks import to_notebook
from .registry import Module, all_modules
from .source import solution_regions, student_text

MANIFEST = ".tinyq-release.json"
TOP_LEVEL = ("pyproject.toml", "README.md", "LEARNING_PATH.md", "docs", "tito", "tinyq", "modules", "tests",
             "benchmarks")
SKIP_TESTS = ("tooling", "notebooks")            # instructor-side checks of this repository itself
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.ipynb", ".ipynb_checkpoints", "*.egg-info")
MIN_LEAK_CHARS = 40                                # a shorter line alone is not evidence


class ReleaseError(TitoError):
    pass


@dataclass
class Leak:
    file: str
    line: int
    text: str
    exercise: str


def _hidden(path: Path) -> bool:
    return "_hidden" in path.name


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def learner_changes(out: Path) -> list[str]:
    """Files of OUT that are not exactly as a previous release wrote them (a learner's work)."""
    if not out.exists() or not any(out.iterdir()):
        return []
    manifest = out / MANIFEST
    if not manifest.exists():
        return ["(no release manifest: the folder was not written by tito release)"]
    recorded = json.loads(manifest.read_text())["files"]
    changed = []
    for path in _files(out):
        rel = path.relative_to(out).as_posix()
        if rel == MANIFEST or rel.startswith(".tito/"):
            continue
        if recorded.get(rel) != _digest(path):
            changed.append(rel)
    changed.extend(rel for rel in recorded if not (out / rel).exists())
    return sorted(changed)


@dataclass
class Secrets:
    """What must not reach a learner: distinctive solution lines, and consecutive pairs of lines.

    A single short line (`return lo, hi`, `if axis is None:`) proves nothing, so single lines count
    only when long; two consecutive solution lines count at any length. Text the student sources
    themselves give away outside solution regions (scaffolding, narrative) is not secret.
    """
    lines: dict[str, str]                       # long line -> exercise
    pairs: dict[tuple[str, str], str]           # consecutive lines -> exercise

    def __len__(self) -> int:
        return len(self.lines) + len(self.pairs)


def _significant(lines) -> list[str]:
    return [t for t in (line.strip() for line in lines) if t and not t.startswith("#")]


def solution_lines(modules: list[Module]) -> Secrets:
    given: set[str] = set()
    for m in modules:
        given.update(_significant(student_text(m.source.read_text()).splitlines()))
    lines, pairs = {}, {}
    for m in modules:
        for exercise, region in solution_regions(m.source):
            where = f"{m.key}:{exercise}"
            body = _significant(region)
            for text in body:
                if len(text) >= MIN_LEAK_CHARS and text not in given:
                    lines[text] = where
            for a, b in zip(body, body[1:]):
                if not (a in given and b in given):
                    pairs[(a, b)] = where
    return Secrets(lines, pairs)


def find_leaks(folder: Path, secret: Secrets) -> list[Leak]:
    """Solution text that appears anywhere under `folder` (code, notebooks, pages, ...)."""
    leaks = []
    for path in _files(folder):
        try:
            raw = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        rel = path.relative_to(folder).as_posix()
        previous = None
        for number, line in enumerate(raw.splitlines(), 1):
            for piece in _candidates(line):
                if not piece or piece.startswith("#"):
                    continue
                if piece in secret.lines:
                    leaks.append(Leak(rel, number, piece, secret.lines[piece]))
                elif (previous, piece) in secret.pairs:
                    leaks.append(Leak(rel, number, f"{previous} / {piece}", secret.pairs[(previous, piece)]))
                previous = piece
    return leaks


def _candidates(line: str) -> list[str]:
    """The stripped line, or for a JSON-encoded notebook source line the string inside it."""
    stripped = line.strip()
    if stripped.startswith('"'):
        try:
            decoded = json.loads(stripped.rstrip(","))
            if isinstance(decoded, str):
                return [decoded.strip()]
        except ValueError:
            pass
    return [stripped]


def build(root: Path, staging: Path) -> list[Module]:
    """Write the student flavour of the course at `root` into the empty folder `staging`."""
    for name in TOP_LEVEL:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, staging / name, ignore=IGNORE)
        elif src.exists():
            shutil.copy2(src, staging / name)
    for sub in SKIP_TESTS:
        shutil.rmtree(staging / "tests" / sub, ignore_errors=True)
    for path in list((staging / "tests").rglob("*")):
        if path.is_file() and _hidden(path):
            path.unlink()
    shutil.rmtree(staging / "tinyq" / "__pycache__", ignore_errors=True)
    released = all_modules(staging)
    for m in released:
        m.source.write_text(student_text(m.source.read_text()))
        jupytext.write(to_notebook(m.source), m.source.with_suffix(".ipynb"), fmt="ipynb")
    export_modules(released)   # every learner function now raises NotImplementedError
    return released


def write_manifest(folder: Path) -> None:
    files = {p.relative_to(folder).as_posix(): _digest(p) for p in _files(folder)}
    (folder / MANIFEST).write_text(json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                               "files": files}, indent=1))


def release(root: Path, out: Path, force: bool = False) -> tuple[list[Module], Path | None]:
    """Build, leak-check and install the student flavour at `out`. Returns (modules, backup)."""
    out = out.resolve()
    if out == root or root in out.parents:
        raise ReleaseError(f"{out} is inside the course folder; release somewhere else")
    missing = [m.rel(m.source) for m in all_modules(root) if not m.source.exists()]
    if missing:
        raise ReleaseError(f"module source(s) missing: {', '.join(missing)}")
    changed = learner_changes(out)
    if changed and not force:
        shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        raise ReleaseError(f"{out} holds work that a release would overwrite ({shown}); "
                           "choose another folder, or pass --force to move it to a backup first")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{int(time.time() * 1000)}"
    staging.mkdir()
    try:
        released = build(root, staging)
        leaks = find_leaks(staging, solution_lines(all_modules(root)))
        if leaks:
            first = "; ".join(f"{l.file}:{l.line} ({l.exercise}): {l.text[:60]}" for l in leaks[:5])
            raise ReleaseError(f"refusing to release: {len(leaks)} solution line(s) survive: {first}")
        write_manifest(staging)
        backup = None
        if out.exists() and any(out.iterdir()):
            if changed:
                backup = out.parent / f"{out.name}.backup-{time.strftime('%Y%m%d-%H%M%S')}"
                out.rename(backup)
            else:
                shutil.rmtree(out)
        elif out.exists():
            out.rmdir()
        staging.rename(out)
        return [m for m in all_modules(out)], backup
    finally:
        shutil.rmtree(staging, ignore_errors=True)
