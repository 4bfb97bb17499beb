"""Batch autograding: every submission graded by the instructor's tests in its own processes.

A submission is a student-flavour tree (folder or .zip) after a learner's work. Only its module
sources are taken from it: the package is rebuilt from the instructor's support code plus the
submission's exports, and graded with a private copy of the instructor's tests (hidden ones
included) and the instructor's pytest plugin. Each module runs in its own process with a wall-time
and memory limit, so a hang, a crash or `os._exit` costs that module only, and every submission
gets a row whatever it does.
"""
from __future__ import annotations

import ast
import csv
import dataclasses
import hashlib
import io
import json
import os
import resource
import shutil
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TitoError
from .export import export_modules
from .files import write_atomically
from .grading.exercises import exercise_map
from .grading.records import ModuleResult
from .grading.requirements import describe, is_installed
from .grading.runner import TestRunError, run_pytest, score_modules
from .notebooks import notebook_to_source, same_inputs
from .registry import Module, all_modules
from .source import SourceError

SUPPORT_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")


@dataclass
class Submission:
    student: str
    path: Path

    def digest(self) -> str:
        h = hashlib.sha256()
        files = [self.path] if self.path.is_file() else sorted(p for p in self.path.rglob("*") if p.is_file())
        for p in files:
            h.update(p.relative_to(self.path).as_posix().encode() if p != self.path else b"")
            h.update(p.read_bytes())
        return h.hexdigest()[:16]


@dataclass
class GradeRow:
    student: str
    digest: str
    results: list[ModuleResult] = field(default_factory=list)
    status: str = "graded"

    @property
    def total(self) -> float:
        return round(sum(r.score for r in self.results), 2)

    @property
    def max_total(self) -> float:
        return round(sum(r.max_score for r in self.results), 2)


@dataclass
class Limits:
    timeout_s: float = 300.0
    memory_mb: int = 6144

    def preexec(self):
        mem = self.memory_mb * 1024 * 1024

        def apply():
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        return apply


def find_submissions(folder: Path) -> list[Submission]:
    subs = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() or p.suffix == ".zip":
            subs.append(Submission(p.stem if p.suffix == ".zip" else p.name, p))
    return subs


def _safe_extract(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if dest.resolve() not in target.parents and target != dest.resolve():
                raise ValueError(f"unsafe path in zip: {info.filename}")
        zf.extractall(dest)


def _course_root(folder: Path) -> Path | None:
    """The folder holding modules/ (the tree may be nested one or two levels in an archive)."""
    for candidate in (folder, *sorted(folder.glob("*")), *sorted(folder.glob("*/*"))):
        if (candidate / "modules").is_dir():
            return candidate
    return None


def read_tree(folder: Path, skip=lambda rel: False) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes), kept in memory so nothing on disk that a
    submission could reach is reused from one grading run to the next."""
    files = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and "__pycache__" not in p.parts and not skip(rel):
            files[rel] = p.read_bytes()
    return files


def write_tree(files: dict[str, bytes], dest: Path) -> None:
    for rel, data in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


class GradingSetupError(TitoError):
    """The grading machine lacks something the instructor's tests need: nothing is graded."""


def required_packages(modules: list[Module]) -> set[str]:
    """Every package named by a `pytest.mark.requires(...)` in the modules' tests."""
    names = set()
    for m in modules:
        for path in sorted(m.tests_dir.glob("*.py")) if m.tests_dir.is_dir() else ():
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "requires":
                    names.update(a.value for a in node.args if isinstance(a, ast.Constant))
    return names


def check_grading_machine(modules: list[Module]) -> None:
    """Refuse to grade where a test would be skipped for want of a package (a learner would lose
    nothing, but the grade would silently cover less than the course)."""
    missing = sorted(n for n in required_packages(modules) if not is_installed(n))
    if missing:
        raise GradingSetupError("cannot grade: the tests need packages this machine lacks: "
                                + "; ".join(describe(n) for n in missing))


def _zip_times(archive: Path, dest: Path) -> None:
    """Give extracted files their times from the archive (which file a learner changed last)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = dest / info.filename
            if target.is_file() and not target.is_symlink():
                stamp = time.mktime(info.date_time + (0, 0, -1))
                os.utime(target, (stamp, stamp))


def choose_source(folder: Path, source_name: str) -> tuple[Path | None, str]:
    """Which of a submission's module files to grade, and what to say about it: the .py, the
    .ipynb (a learner who worked in Colab), or of both the one changed last (the pair when equal)."""
    py = folder / source_name
    nb = py.with_suffix(".ipynb")
    has_py = py.is_file() and not py.is_symlink()
    has_nb = nb.is_file() and not nb.is_symlink()
    if has_py and has_nb:
        if same_inputs(py, nb):
            return py, f"{py.name} + {nb.name} (paired)"
        return (nb, f"{nb.name} (changed last)") if nb.stat().st_mtime > py.stat().st_mtime \
            else (py, f"{py.name} (changed last)")
    if has_py:
        return py, py.name
    if has_nb:
        return nb, nb.name
    return None, ""


def hidden_test_names(files: dict[str, bytes]) -> set[str]:
    """Names of the tests in hidden test files (`test_NN_hidden_*.py`), as the plugin records them
    (`test_x`, `TestCase::test_x`; parameters stripped): which results a learner sees only later."""
    names = set()
    for rel, data in files.items():
        if "_hidden" not in Path(rel).name or not rel.endswith(".py"):
            continue
        for node in ast.parse(data.decode(), rel).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                names.add(node.name)
            elif isinstance(node, ast.ClassDef):
                names.update(f"{node.name}::{f.name}" for f in node.body
                             if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name.startswith("test"))
    return names


class Grader:
    def __init__(self, instructor_root: Path, modules: list[Module], limits: Limits, work: Path,
                 exercises: dict | None = None):
        """`exercises`: the instructor's exercise map where the reference sources are not at hand
        (the Gradescope autograder ships the map, never the sources)."""
        self.modules = modules
        self.limits = limits
        self.work = work
        exported = {f"{m.export}.py" for m in all_modules(instructor_root)}
        # the grading kit alone (plugin, records, kit): nothing else of tito runs in the sandbox
        self.plugin = {"__init__.py": (instructor_root / "tito" / "__init__.py").read_bytes(),
                       **{f"grading/{k}": v for k, v in read_tree(instructor_root / "tito" / "grading").items()}}
        # the instructor's, never the submission's
        self.exercises = exercises if exercises is not None else exercise_map(instructor_root)
        self.support = read_tree(instructor_root / "tinyq", skip=lambda rel: rel in exported)
        self.tests = {m.key: read_tree(m.tests_dir) for m in modules if m.tests_dir.is_dir()}
        self.hidden = {key: hidden_test_names(files) for key, files in self.tests.items()}
        self.metadata = {m.key: (m.dir / "module.yaml").read_bytes() for m in modules}
        self.source_names = {m.key: m.source.name for m in modules}

    def grade(self, sub: Submission) -> GradeRow:
        row = GradeRow(sub.student, sub.digest())
        base = Path(tempfile.mkdtemp(prefix=f"{sub.student[:20]}-", dir=self.work))
        try:
            try:
                tree = self._unpack(sub, base)
            except Exception as exc:   # unreadable archive, unsafe paths...
                tree, row.status = None, f"unreadable submission: {exc}"
            if tree is None:
                row.status = row.status if row.status != "graded" else "no modules/ folder in the submission"
                row.results = [ModuleResult(m.key, 0.0, m.points, [], 0.0, row.status) for m in self.modules]
                return row
            package_root = base / "package"
            write_tree(self.support, package_root / "tinyq")
            export_errors, graded_files = self._export(tree, package_root)
            for m in self.modules:
                result = self._grade_module(m, package_root, export_errors.get(m.key))
                result.graded_file = graded_files.get(m.key, "")
                row.results.append(result)
            return row
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def _unpack(self, sub: Submission, base: Path) -> Path | None:
        raw = base / "submission"
        if sub.path.is_file():
            raw.mkdir()
            _safe_extract(sub.path, raw)
            _zip_times(sub.path, raw)
        else:
            shutil.copytree(sub.path, raw, symlinks=True, ignore=SUPPORT_SKIP)
        return _course_root(raw)

    def _export(self, tree: Path, package_root: Path) -> tuple[dict[str, str], dict[str, str]]:
        """Export each module from the submission's source on its own; returns (module -> reason,
        module -> which file was graded)."""
        errors, graded = {}, {}
        for m in self.modules:
            name = self.source_names[m.key]
            theirs, graded[m.key] = choose_source(tree / "modules" / m.key, name)
            folder = package_root / "modules" / m.key
            folder.mkdir(parents=True)
            (folder / "module.yaml").write_bytes(self.metadata[m.key])   # the instructor's metadata
            if theirs is None:
                errors[m.key] = f"module source missing: modules/{m.key}/{name} (or its .ipynb)"
                continue
            try:
                text = notebook_to_source(theirs) if theirs.suffix == ".ipynb" else theirs.read_text()
            except Exception as exc:
                errors[m.key] = f"unreadable {theirs.name}: {type(exc).__name__}: {exc}"
                continue
            (folder / name).write_text(text)
            try:
                export_modules([x for x in all_modules(package_root) if x.key == m.key])
            except SourceError as exc:
                errors[m.key] = f"export failed: {exc}"
            except Exception as exc:
                errors[m.key] = f"export failed: {type(exc).__name__}: {exc}"
        return errors, graded

    def _grade_module(self, m: Module, package_root: Path, export_error: str | None) -> ModuleResult:
        if export_error:
            return ModuleResult(m.key, 0.0, m.points, [], 0.0, export_error)
        if m.key not in self.tests:
            return ModuleResult(m.key, 0.0, m.points, [], 0.0, "the instructor has no tests for this module")
        run_dir = Path(tempfile.mkdtemp(prefix=f"{m.key}-", dir=package_root.parent))
        shutil.copytree(package_root / "tinyq", run_dir / "tinyq")
        tests, plugin = run_dir / "tests" / m.key, run_dir / "_grader"
        write_tree(self.tests[m.key], tests)
        write_tree(self.plugin, plugin / "tito")
        try:
            records, _, _ = run_pytest([tests], run_dir, plugin_path=plugin, exercises=self.exercises,
                                       capture=True, timeout=self.limits.timeout_s,
                                       preexec=self.limits.preexec())
        except TestRunError as exc:
            return ModuleResult(m.key, 0.0, m.points, [], 0.0, str(exc).splitlines()[0])
        if read_tree(tests) != self.tests[m.key] or read_tree(plugin / "tito") != self.plugin:
            return ModuleResult(m.key, 0.0, m.points, [], 0.0,
                                "the submission modified the grading tests or plugin while they ran")
        (result,) = score_modules([dataclasses.replace(m, root=run_dir)], records)
        if result.score == 0 and not result.note:
            reasons = sorted({t.message for t in result.tests if t.message})
            result.note = "; ".join(reasons)[:300] or "no test passed"
        return result


CSV_BASE = ["student", "submission_sha256", "status", "total", "max_total"]


def load_rows(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def write_rows(path: Path, modules: list[Module], rows: dict[str, dict]) -> None:
    fields = (CSV_BASE + [f"{m.key}" for m in modules] + [f"{m.key}_reason" for m in modules]
              + [f"{m.key}_file" for m in modules])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for student in sorted(rows):
        writer.writerow(rows[student])
    write_atomically({path: buf.getvalue()})


def row_dict(row: GradeRow) -> dict:
    d = {"student": row.student, "submission_sha256": row.digest, "status": row.status,
         "total": f"{row.total:g}", "max_total": f"{row.max_total:g}"}
    for r in row.results:
        d[r.module] = f"{r.score:g}"
        d[f"{r.module}_reason"] = r.note if r.score < r.max_score or r.note else ""
        d[f"{r.module}_file"] = r.graded_file
    return d


VISIBLE, HIDDEN_UNTIL_PUBLISHED = "visible", "after_published"


def _perf_text(t) -> str:
    """A perf test's measured ratio next to its bar (and floor), as `tito test` shows it."""
    word = "at most" if t.lower_is_better else "at least"
    text = f"measured {t.measured:.2f} {t.unit}; full points {word} {t.bar:.2f}".replace("  ", " ")
    return text + (f", none {'above' if t.lower_is_better else 'below'} {t.floor:.2f}" if t.floor is not None else "")


def gradescope_payload(row: GradeRow, *, hidden: dict[str, set[str]] | None = None,
                       execution_time: float | None = None, leaderboard: bool = False) -> dict:
    """Gradescope's results.json for one submission: one entry per graded test (hidden tests
    shown after the grades are published), perf tests with their measured ratio and bar, and
    optionally the perf ratios as leaderboard entries."""
    hidden = hidden or {}
    tests, board = [], []
    for i, r in enumerate(row.results, 1):
        graded = [t for t in r.tests if t.kind == "test"]
        for j, t in enumerate(graded, 1):
            lines = [t.message or t.outcome]
            if t.measured is not None and t.bar is not None:
                lines.insert(0, _perf_text(t))
                if leaderboard:
                    board.append({"name": f"{r.module}::{t.name}", "value": round(t.measured, 3),
                                  "order": "asc" if t.lower_is_better else "desc"})
            if r.note and r.score == 0 and t.outcome == "passed" and t.points < t.max_points:
                lines.append(r.note)      # passed, yet zeroed: the module's run was tampered with
            is_hidden = t.name.split("[")[0] in hidden.get(r.module, ())
            tests.append({"name": f"{r.module}::{t.name}", "number": f"{i}.{j}", "score": t.points,
                          "max_score": 0.0 if t.not_counted else t.max_points,
                          "output": "\n".join(x for x in lines if x),
                          "tags": [r.module] + ([t.exercise] if t.exercise else []),
                          "visibility": HIDDEN_UNTIL_PUBLISHED if is_hidden else VISIBLE})
        # points no test record stands for (tests that could not run or be imported): one entry with the reason
        rest = round(r.max_score - sum(t.max_points for t in graded if not t.not_counted), 2)
        if rest > 0 or not graded:
            tests.append({"name": r.module if not graded else f"{r.module}: tests that did not run",
                          "number": f"{i}" if not graded else f"{i}.{len(graded) + 1}",
                          "score": r.score if not graded else 0.0, "max_score": max(rest, 0.0),
                          "output": r.note, "tags": [r.module],
                          "visibility": VISIBLE if not graded else HIDDEN_UNTIL_PUBLISHED})
        elif r.note and r.score < r.max_score:     # why a graded module lost its points (it may quote hidden tests)
            tests.append({"name": f"{r.module}: why points were lost", "number": f"{i}.{len(graded) + 1}",
                          "score": 0.0, "max_score": 0.0, "output": r.note, "tags": [r.module],
                          "visibility": HIDDEN_UNTIL_PUBLISHED})
    # per module, the score only: a zero's reasons can quote hidden tests, which the entries show later
    notes = [f"{r.module}: {r.score:g} / {r.max_score:g}" for r in row.results]
    payload = {"score": row.total, "output": "\n".join([f"total {row.total:g} / {row.max_total:g}", *notes]),
               "tests": tests}
    if execution_time is not None:
        payload["execution_time"] = max(0, round(execution_time))
    if leaderboard:
        payload["leaderboard"] = board
    return payload


def write_gradescope(folder: Path | None, row: GradeRow, *, target: Path | None = None, **options) -> Path:
    """Write Gradescope's results.json for one submission to `folder/<student>/results.json` (or to
    `target`); `options` as `gradescope_payload`."""
    target = target or folder / row.student / "results.json"
    write_atomically({target: json.dumps(gradescope_payload(row, **options), indent=1)})
    return target


def grade_all(instructor_root: Path, modules: list[Module], submissions: list[Submission], out_csv: Path,
              *, jobs: int = 1, limits: Limits | None = None, regrade: bool = False,
              gradescope: Path | None = None, on_row=None) -> dict[str, dict]:
    """Grade every submission (resuming from `out_csv` unless `regrade`); returns the CSV rows.
    Raises GradingSetupError, before grading anything, where the tests need a missing package."""
    check_grading_machine(modules)
    rows = {} if regrade else load_rows(out_csv)
    todo = [s for s in submissions if s.student not in rows or rows[s.student].get("submission_sha256") != s.digest()]
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="tito-grade-") as work:
        grader = Grader(instructor_root, modules, limits or Limits(), Path(work))

        def one(sub: Submission) -> None:
            try:
                row = grader.grade(sub)
            except Exception as exc:     # the grader itself must never lose a row
                row = GradeRow(sub.student, sub.digest(), [ModuleResult(m.key, 0.0, m.points, [], 0.0,
                               f"grader error: {type(exc).__name__}: {exc}") for m in modules], "grader error")
            with lock:
                rows[sub.student] = row_dict(row)
                write_rows(out_csv, modules, rows)
                if gradescope:
                    write_gradescope(gradescope, row, hidden=grader.hidden)
                if on_row:
                    on_row(row)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(one, todo))
    if not todo:
        write_rows(out_csv, modules, rows)
    return rows
