"""Grading on Gradescope: the autograder zip (`tito gradescope build`) and what it runs per submission.

Gradescope unpacks the zip into /autograder/source, runs `setup.sh` once to build its image, then for
every submission runs `run_autograder` in a fresh container with the learner's files in
/autograder/submission, and reads /autograder/results/results.json. The zip holds what `tito grade`
needs and nothing a learner must not see beyond the instructor's tests: the grading code (tito/), the
support code of tinyq/ (no exported module), each module's module.yaml, the tests (hidden ones and
oracles included: the zip goes to the instructor's Gradescope account only), the map of which names
each exercise defines, pyproject.toml and the pinned versions of its dependencies. Never a reference
solution: the build refuses to write a zip in which the release's leak check finds solution text.

`run_autograder` calls `python -m tito.gradescope run --root /autograder` (the root can be moved with
TINYQ_AUTOGRADER_ROOT, which is how the project's tests run it without Gradescope), which grades
the one submission with tito grade's `Grader` and writes results.json with tito grade's writer.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import TitoError
from .grade import (SUPPORT_SKIP, Grader, Limits, Submission, _course_root, check_grading_machine,
                    required_packages, write_gradescope)
from .grading.exercises import exercise_map
from .grading.requirements import OPTIONAL, TOOLS
from .registry import Module, all_modules
from .release import find_leaks, solution_lines

ROOT_ENV = "TINYQ_AUTOGRADER_ROOT"
DEFAULT_ROOT = Path("/autograder")
CONFIG = "tinyq-autograder.json"          # modules, limits, leaderboard: read by `run`
EXERCISES = "tinyq-exercises.json"        # the instructor's exercise map (names only, no code)
CONSTRAINTS = "constraints.txt"
TEMPLATES = Path(__file__).parent / "templates" / "gradescope"
SCRIPTS = ("setup.sh", "run_autograder")
README = ("# tinyq autograder for Gradescope\n\nWritten by `tito gradescope build`; upload this zip as the "
          "assignment's autograder. Instructors only: it holds the hidden tests.\n")


class GradescopeError(TitoError):
    pass


@dataclass
class Built:
    zip_path: Path
    modules: list[Module]
    extras: list[str]
    files: int
    checked: int                  # solution lines and pairs the leak check looked for


def extras_for(modules: list[Module]) -> list[str]:
    """The pyproject extras that install every optional package the modules' tests require
    (tools such as a C++ compiler are not packages: see `apt_for`)."""
    needed = required_packages(modules) - set(TOOLS)
    unknown = sorted(n for n in needed if n not in OPTIONAL)
    if unknown:
        raise GradescopeError(f"the tests require {', '.join(unknown)}, which no extra of pyproject.toml "
                              "installs (add it to tito/grading/requirements.py and pyproject.toml)")
    return sorted({OPTIONAL[n].extra for n in needed})


def _tools(modules: list[Module]) -> list:
    return [TOOLS[t] for t in sorted(required_packages(modules) & set(TOOLS))]


def apt_for(modules: list[Module]) -> list[str]:
    """Ubuntu packages for the tools the modules' tests require (setup.sh installs them)."""
    return sorted({t.apt for t in _tools(modules) if t.apt})


def fetches_for(modules: list[Module]) -> list[str]:
    """tito commands that fetch the data the modules' tests require (setup.sh runs them once)."""
    unprovided = [t.name for t in _tools(modules) if not (t.apt or t.fetch)]
    if unprovided:
        raise GradescopeError(f"the tests require {', '.join(unprovided)}, which an autograder image cannot "
                              "provide: give it an Ubuntu package or a fetch command in tito/grading/requirements.py")
    return [t.fetch for t in _tools(modules) if t.fetch]


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0]


def pinned_requirements(root: Path, extras: list[str]) -> list[str]:
    """`name==version` for every dependency (and of the extras) as installed on this machine, so
    the autograder grades with the versions the course was tested with; unpinned where absent."""
    try:
        import tomllib
    except ModuleNotFoundError:      # Python 3.10 (only the build needs it, never a grading run)
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise GradescopeError("building the autograder needs Python >= 3.11 (or `pip install tomli`)") from None
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs.extend(project.get("optional-dependencies", {}).get(extra, []))
    lines = []
    for spec in specs:
        name = _requirement_name(spec)
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(spec)
    return sorted(set(lines), key=str.lower)


def _script(name: str, extras: list[str], apt: list[str], fetches: list[str]) -> str:
    text = (TEMPLATES / name).read_text().replace("@APT@", " ".join(apt))
    text = text.replace("@FETCH@\n", "".join(f'"$ROOT/venv/bin/tito" {f}\n' for f in fetches))
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return text.replace("[@EXTRAS@]", f"[{','.join(extras)}]" if extras else "").replace("@PYTHON@", python)


def stage(root: Path, modules: list[Module], dest: Path, *, limits: Limits, leaderboard: bool) -> list[str]:
    """Write the autograder's files for `modules` of the course at `root` into the empty `dest`."""
    every = all_modules(root)
    exports = {f"{m.export}.py" for m in every}
    # tito without its templates (scaffolds and scripts: nothing a grading run reads)
    shutil.copytree(root / "tito", dest / "tito", ignore=lambda folder, names: list(SUPPORT_SKIP(folder, names))
                    + (["templates"] if Path(folder) == root / "tito" else []))
    shutil.copytree(root / "tinyq", dest / "tinyq",
                    ignore=lambda folder, names: [n for n in names if n in exports and Path(folder) == root / "tinyq"]
                    + list(SUPPORT_SKIP(folder, names)))
    for m in modules:
        (dest / "modules" / m.key).mkdir(parents=True)
        shutil.copy2(m.dir / "module.yaml", dest / "modules" / m.key / "module.yaml")
        if m.tests_dir.is_dir():
            shutil.copytree(m.tests_dir, dest / "tests" / m.key, ignore=SUPPORT_SKIP)
    shutil.copy2(root / "pyproject.toml", dest / "pyproject.toml")
    (dest / "README.md").write_text(README)     # pyproject's readme: pip needs it to build the package
    extras = extras_for(modules)
    (dest / CONSTRAINTS).write_text("\n".join(pinned_requirements(root, extras)) + "\n")
    (dest / EXERCISES).write_text(json.dumps(exercise_map(root), indent=1))
    (dest / CONFIG).write_text(json.dumps({"modules": [m.key for m in modules], "timeout_s": limits.timeout_s,
                                           "memory_mb": limits.memory_mb, "leaderboard": leaderboard}, indent=1))
    for name in SCRIPTS:
        (dest / name).write_text(_script(name, extras, apt_for(modules), fetches_for(modules)))
        (dest / name).chmod(0o755)
    return extras


TESTS_RUN = 3       # in the instructor's tests, this many consecutive leaking lines (4 solution lines) is a leak


def autograder_leaks(folder: Path, secret) -> list:
    """The release's leak check on the autograder's files. Outside tests/ it applies unchanged. The
    instructor's tests ship on purpose (hidden tests and oracles, written independently of the
    reference) and share idioms with it (`x = np.asarray(x)` then `if axis is None:`), so there only
    a run of TESTS_RUN or more consecutive leaking lines counts: a pasted block of the solution."""
    leaks = find_leaks(folder, secret)
    at = {(leak.file, leak.line) for leak in leaks}

    def run_length(leak) -> int:
        lo = hi = leak.line
        while (leak.file, lo - 1) in at:
            lo -= 1
        while (leak.file, hi + 1) in at:
            hi += 1
        return hi - lo + 1
    return [leak for leak in leaks if not leak.file.startswith("tests/") or run_length(leak) >= TESTS_RUN]


def build(root: Path, out: Path, modules: list[Module] | None = None, *, limits: Limits | None = None,
          leaderboard: bool = False) -> Built:
    """The autograder zip for `modules` (default: every module), leak-checked; written atomically."""
    modules = modules or all_modules(root)
    missing = [m.rel(m.tests_dir) for m in modules if not m.tests_dir.is_dir()]
    if missing:
        raise GradescopeError(f"no tests to grade with: {', '.join(missing)}")
    if out.suffix != ".zip":
        raise GradescopeError(f"{out}: name the autograder file OUT.zip")
    with tempfile.TemporaryDirectory(prefix="tito-gradescope-") as tmp:
        staging = Path(tmp) / "autograder"
        staging.mkdir()
        extras = stage(root, modules, staging, limits=limits or Limits(), leaderboard=leaderboard)
        secret = solution_lines(all_modules(root))
        leaks = autograder_leaks(staging, secret)
        if leaks:
            first = "; ".join(f"{l.file}:{l.line} ({l.exercise}): {l.text[:60]}" for l in leaks[:5])
            raise GradescopeError(f"refusing to build: {len(leaks)} solution line(s) in the autograder: {first}")
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                rel = path.relative_to(staging).as_posix()
                info = zipfile.ZipInfo(rel, date_time=time.localtime(path.stat().st_mtime)[:6])
                info.external_attr = (0o755 if rel in SCRIPTS else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
        partial.replace(out)
    return Built(out, modules, extras, len(files), len(secret))


def unpack(zip_path: Path, root: Path) -> Path:
    """Lay the zip out as Gradescope does: `root/source` holds its contents, `root/run_autograder`
    a copy of the script, `root/submission` and `root/results` empty. Returns root/source."""
    source = root / "source"
    source.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(source)
        for info in zf.infolist():
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                (source / info.filename).chmod(mode)
    shutil.copy2(source / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir(exist_ok=True)
    (root / "results").mkdir(exist_ok=True)
    return source


def arrange(submission: Path, modules: list[Module], dest: Path) -> Path:
    """The submission as a course tree: as handed in where it has modules/ (a repository or a whole
    release), else its loose module files (`quantization_dev.py` / `.ipynb`, uploaded on their own)
    put where the grader looks for them."""
    if _course_root(submission) is not None:
        return submission
    for m in modules:
        for name in (m.source.name, m.source.with_suffix(".ipynb").name):
            found = sorted((p for p in submission.rglob(name) if p.is_file() and not p.is_symlink()),
                           key=lambda p: len(p.parts))
            if found:
                (dest / "modules" / m.key).mkdir(parents=True, exist_ok=True)
                shutil.copy2(found[0], dest / "modules" / m.key / name)
    (dest / "modules").mkdir(parents=True, exist_ok=True)
    return dest


def run(root: Path) -> Path:
    """Grade the submission in `root/submission` with the autograder in `root/source`; write and
    return `root/results/results.json`. A machine that cannot grade (a missing package) raises:
    the run fails on Gradescope rather than giving the learner a zero that is not theirs."""
    start = time.monotonic()
    source = root / "source"
    config = json.loads((source / CONFIG).read_text())
    modules = [m for m in all_modules(source) if m.key in config["modules"]]
    check_grading_machine(modules)
    exercises = json.loads((source / EXERCISES).read_text())
    with tempfile.TemporaryDirectory(prefix="tinyq-gradescope-") as tmp:
        work = Path(tmp)
        tree = arrange(root / "submission", modules, work / "loose")
        grader = Grader(source, modules, Limits(float(config["timeout_s"]), int(config["memory_mb"])), work,
                        exercises=exercises)
        row = grader.grade(Submission("submission", tree))
    return write_gradescope(None, row, target=root / "results" / "results.json", hidden=grader.hidden,
                            execution_time=time.monotonic() - start, leaderboard=bool(config["leaderboard"]))


def main(argv: list[str] | None = None) -> int:
    import os
    parser = argparse.ArgumentParser(prog="python -m tito.gradescope",
                                     description="Grade one Gradescope submission (run_autograder calls this).")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="grade ROOT/submission, write ROOT/results/results.json")
    run_parser.add_argument("--root", type=Path, default=Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT)))
    args = parser.parse_args(argv)
    try:
        target = run(args.root)
    except TitoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    payload = json.loads(target.read_text())
    print(payload["output"])
    print(f"wrote {target} in {payload.get('execution_time', 0)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
