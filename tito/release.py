"""The student flavour: same layout, solutions stripped, hidden tests removed, package re-exported.

Built in a staging folder beside OUT, checked for leaks, then moved into place; a learner's work in
OUT is never overwritten (refused, or with force moved to a backup first).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import TitoError
from .export import export_modules
from .files import STATE_DIR, install_folder, sha256_of, write_atomically
from .notebooks import sync
from .registry import Module, all_modules
from .source import add_markdown_after_title, solution_regions, student_text

MANIFEST = ".tinyq-release.json"
TOP_LEVEL = ("pyproject.toml", "LEARNING_PATH.md", "jupytext.toml", "tito", "tinyq", "modules", "tests",
             "benchmarks")
SKIP_TESTS = ("tooling", "notebooks", "support")  # instructor-side checks of this repository itself
# what only an instructor runs: absent from the learner's tito (and so from `tito --help`)
INSTRUCTOR_ONLY = ("tito/release.py", "tito/grade.py", "tito/site.py", "tito/scaffold.py",
                   "tito/commands/release_cmd.py", "tito/commands/grade_cmd.py", "tito/commands/site_cmd.py",
                   "tito/commands/new_cmd.py", "tito/templates/new", "tito/gradescope.py",
                   "tito/commands/gradescope_cmd.py", "tito/templates/gradescope", "tito/templates/classroom.yml")
STUDENT_README = Path(__file__).parent / "templates" / "README.student.md"   # the release's README.md
CLASSROOM_TEMPLATE = Path(__file__).parent / "templates" / "classroom.yml"
CLASSROOM_WORKFLOW = ".github/workflows/classroom.yml"
CLASSROOM_TIMEOUT_MIN = 10                        # per module step, in minutes (the grader's unit)
CLASSROOM_STEP = """      - name: {key}
        id: {id}
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: {key}
          setup-command: ""
          command: tito test {number} --require-pass
          timeout: {timeout}
          max-score: {points:g}
"""
STUDENT_GITIGNORE = """# written by tito release: what a learner's git should not track
.venv/
venv/
__pycache__/
*.pyc
*.egg-info/
.ipynb_checkpoints/
.pytest_cache/
.hypothesis/
.tito/
"""
# never a learner's work: environments and caches (not listed when a release refuses to overwrite)
NOT_WORK = (".venv", "venv", ".git", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".hypothesis",
            ".tito", "build", "dist")
LEARNER_NOTE = (
    "> **Working through this notebook.** Each exercise is a cell marked `# YOUR CODE HERE`, followed by\n"
    "> a test cell. Running the whole notebook stops with `NotImplementedError` at the first exercise\n"
    "> you have not done yet: that is expected. Fill it in, run it and its test, then go on.\n"
    "> `tito test {number}` grades your work (it exports this notebook into `tinyq/` first).")
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


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _work_files(folder: Path) -> list[Path]:
    """Files of a learner's folder that could be their work: environments and caches left out."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part in NOT_WORK or part.endswith(".egg-info")
                              for part in p.relative_to(folder).parts[:-1]))


def learner_changes(out: Path) -> list[str]:
    """Files of OUT that are not exactly as a previous release wrote them (a learner's work)."""
    if not out.exists() or not any(out.iterdir()):
        return []
    manifest = out / MANIFEST
    if not manifest.exists():
        return ["(no release manifest: the folder was not written by tito release)"]
    recorded = json.loads(manifest.read_text())["files"]
    changed = []
    for path in _work_files(out):
        rel = path.relative_to(out).as_posix()
        if rel == MANIFEST:
            continue
        if recorded.get(rel) != sha256_of(path):
            changed.append(rel)
    changed.extend(rel for rel in recorded if not (out / rel).exists())
    # the learner's modules first: that is the work a person wants to hear about
    return sorted(changed, key=lambda rel: (not rel.startswith("modules/"), rel))


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
    for rel in INSTRUCTOR_ONLY:
        path = staging / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    write_atomically({staging / "README.md": STUDENT_README.read_text(),
                      staging / ".gitignore": STUDENT_GITIGNORE})
    for path in list((staging / "tests").rglob("*")):
        if path.is_file() and _hidden(path):
            path.unlink()
    shutil.rmtree(staging / "tinyq" / "__pycache__", ignore_errors=True)
    released = all_modules(staging)
    for m in released:
        text = student_text(m.source.read_text())
        m.source.write_text(add_markdown_after_title(text, LEARNER_NOTE.format(number=m.number)))
        sync(m, create=True)    # the paired notebook, and the record that the pair agrees
    export_modules(released)   # every learner function now raises NotImplementedError
    return released


def public_points(folder: Path, modules: list[Module]) -> dict[str, float]:
    """Points of each module's public tests in the release at `folder`, GPU tests left out (GitHub's
    runners have none, and `tito test` leaves them out of the maximum there)."""
    from .grading.runner import run_pytest
    dirs = [m.tests_dir for m in modules if m.tests_dir.is_dir()]
    records, _, output = run_pytest(dirs, folder, capture=True, extra=["--collect-only"])
    broken = [r for r in records if r.kind == "collection"]
    if broken:
        raise ReleaseError(f"the released tests do not import: {broken[0].message}")
    points = {m.key: 0.0 for m in modules}
    for r in records:
        if r.kind == "test" and not r.needs_gpu and r.module in points:
            points[r.module] += r.max_points
    return {k: round(v, 2) for k, v in points.items()}


def classroom_workflow(folder: Path, modules: list[Module]) -> str:
    """GitHub Classroom's workflow for the release at `folder`: one command-grader step per module
    (`tito test NN --require-pass`, max-score its public points), then the reporter."""
    import sys
    from .gradescope import extras_for
    points = public_points(folder, modules)
    graded = [m for m in modules if points[m.key] > 0]
    ids = {m.key: f"module-{m.number:02d}" for m in graded}
    extras = extras_for(graded)
    steps = "".join(CLASSROOM_STEP.format(key=m.key, id=ids[m.key], number=f"{m.number:02d}",
                                          timeout=CLASSROOM_TIMEOUT_MIN, points=points[m.key]) for m in graded)
    env = "".join(f'          {ids[m.key].upper()}_RESULTS: "${{{{steps.{ids[m.key]}.outputs.result}}}}"\n'
                  for m in graded)
    return (CLASSROOM_TEMPLATE.read_text()
            .replace("@PYTHON_VERSION@", f"{sys.version_info.major}.{sys.version_info.minor}")
            .replace("@INSTALL@", f".[{','.join(extras)}]" if extras else ".")
            .replace("@STEPS@\n", steps).replace("@REPORTER_ENV@\n", env)
            .replace("@RUNNERS@", ",".join(ids.values())))


def _merge_tito_state(old: Path, new: Path) -> None:
    """Redoing an untouched release keeps the learner's tito state (scores, backups); the new
    release's record of its notebook pairs wins."""
    state = old / STATE_DIR
    if state.is_dir():
        (new / STATE_DIR).mkdir(exist_ok=True)
        for child in state.iterdir():
            if not (new / STATE_DIR / child.name).exists():
                child.rename(new / STATE_DIR / child.name)


def write_manifest(folder: Path) -> None:
    files = {p.relative_to(folder).as_posix(): sha256_of(p) for p in _work_files(folder)}
    (folder / MANIFEST).write_text(json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                               "files": files}, indent=1))


def release(root: Path, out: Path, force: bool = False,
            classroom: bool = False) -> tuple[list[Module], Path | None]:
    """Build, leak-check and install the student flavour at `out`. Returns (modules, backup).
    `classroom`: add GitHub Classroom's autograding workflow (`.github/workflows/classroom.yml`)."""
    out = out.resolve()
    if out == root or root in out.parents:
        raise ReleaseError(f"{out} is inside the course folder; release somewhere else")
    if out.exists() and not out.is_dir():
        raise ReleaseError(f"{out} is a file, not a folder: name a new or existing folder for the release")
    missing = [m.rel(m.source) for m in all_modules(root) if not m.source.exists()]
    if missing:
        raise ReleaseError(f"module source(s) missing: {', '.join(missing)}")
    changed = learner_changes(out)
    if changed and not force:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise ReleaseError(f"{out} holds work that a release would overwrite: {', '.join(changed[:5])}{more}. "
                           "Choose another folder, or pass --force to move it to a backup first.")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{int(time.time() * 1000)}"
    staging.mkdir()
    try:
        released = build(root, staging)
        if classroom:
            write_atomically({staging / CLASSROOM_WORKFLOW: classroom_workflow(staging, released)})
        leaks = find_leaks(staging, solution_lines(all_modules(root)))
        if leaks:
            first = "; ".join(f"{l.file}:{l.line} ({l.exercise}): {l.text[:60]}" for l in leaks[:5])
            raise ReleaseError(f"refusing to release: {len(leaks)} solution line(s) survive: {first}")
        write_manifest(staging)
        if out.is_dir() and not changed:
            _merge_tito_state(out, staging)
        backup = install_folder(staging, out, keep_old=bool(changed), carry=(".venv", "venv", ".git"))
        return [m for m in all_modules(out)], backup
    finally:
        shutil.rmtree(staging, ignore_errors=True)
