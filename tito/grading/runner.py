"""Running a module's graded tests against a package and scoring them (used by `test` and `grade`)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import TitoError
from ..files import write_atomically
from ..registry import Module
from .plugin import EXERCISES_ENV
from .records import ModuleResult, TestRecord

PYTEST_INI = "[pytest]\naddopts =\n"
PLUGIN = "tito.grading.plugin"


class TestRunError(TitoError):
    """pytest could not run at all (usage error, crash before collection...)."""


def pytest_command(test_dirs: list[Path], json_path: Path, ini_path: Path, root: Path,
                   extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "pytest", *map(str, test_dirs), "-c", str(ini_path),
            "--rootdir", str(root), "-p", PLUGIN, "-p", "no:cacheprovider",
            "--noconftest", "-q", "-rN", "--tb=short", "--tinyq-json", str(json_path), *(extra or [])]


def grading_env(package_root: Path, plugin_path: Path | None = None,
                exercises: Path | None = None) -> dict[str, str]:
    """Environment in which `import tinyq` finds the graded tree's package and nothing else."""
    env = dict(os.environ)
    if exercises is not None:
        env[EXERCISES_ENV] = str(exercises)
    paths = [str(plugin_path)] if plugin_path else []
    paths.append(str(package_root))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["TINYQ_EXPECT_ROOT"] = str(package_root)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"   # no third-party plugin can rewrite results
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


class TestRunTimeout(TestRunError):
    """The test process ran past its wall-time limit and was killed (with its children)."""


def run_pytest(test_dirs: list[Path], package_root: Path, *, plugin_path: Path | None = None,
               exercises: dict | None = None, extra: list[str] | None = None, capture: bool = False,
               timeout: float | None = None, preexec=None) -> tuple[list[TestRecord], int, str]:
    """Run pytest on `test_dirs` against `package_root`'s tinyq; returns (records, exit code, output).

    The process gets its own session so that a timeout kills everything it started; `preexec` can
    set resource limits in the child (used by `tito grade`). `exercises`: the exercise map the `only`
    fixture uses (default: derived by the plugin from the sources of `package_root`).
    """
    with tempfile.TemporaryDirectory(prefix="tito-test-") as tmp:
        json_path, ini_path = Path(tmp) / "results.json", Path(tmp) / "pytest.ini"
        ini_path.write_text(PYTEST_INI)
        exercises_path = None
        if exercises is not None:
            exercises_path = Path(tmp) / "exercises.json"
            write_atomically({exercises_path: json.dumps(exercises)})
        cmd = pytest_command(test_dirs, json_path, ini_path, package_root, extra)
        pipe = subprocess.PIPE if capture else None
        proc = subprocess.Popen(cmd, cwd=package_root, env=grading_env(package_root, plugin_path, exercises_path),
                                stdout=pipe, stderr=subprocess.STDOUT if capture else None, text=True,
                                start_new_session=True, preexec_fn=preexec)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise TestRunTimeout(f"timed out after {timeout:g} s") from None
        output = output or ""
        if proc.returncode in (3, 4) or not json_path.exists():   # internal error / usage error
            raise TestRunError(describe_exit(proc.returncode) + _cause(output)
                               + (f"\n{output[-2000:]}" if output else ""))
        payload = json.loads(json_path.read_text())
        records = [TestRecord.from_dict(r) for r in payload["tests"]]
        if not payload.get("integrity_checked"):
            raise TestRunError("the results were written without the grader's integrity check")
        return records, proc.returncode, output


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _cause(output: str) -> str:
    """The exception that stopped pytest, from its last INTERNALERROR / error line."""
    for line in reversed(output.splitlines()):
        text = line.removeprefix("INTERNALERROR>").strip().removeprefix("E").strip()
        if text and (text.split(":")[0].endswith(("Error", "Exit", "Exception")) or "SystemExit" in text):
            return f" ({text[:200]})"
    return ""


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the test process crashed ({name}) before reporting results"
    return f"the test process exited with code {code} before reporting results"


def score_modules(modules: list[Module], records: list[TestRecord],
                  selected_only: bool = False) -> list[ModuleResult]:
    """Per-module scores. A module whose tests could not even be imported scores 0 of its full points;
    one whose run replaced the grading helpers scores 0 with that reason. Tests that need a GPU or a
    missing optional package leave the maximum. `selected_only`: a subset of the tests ran (-k), so
    say nothing about the ones that did not."""
    results = []
    for m in modules:
        mine = [r for r in records if r.module == m.key]
        tests = [r for r in mine if r.kind == "test"]
        broken = [r for r in mine if r.kind == "collection"]
        tampered = [r for r in mine if r.kind == "integrity"]
        for r in tests:
            if r.outcome == "skipped" and r.needs_gpu:
                r.message = r.message or "needs GPU"
        not_counted = sum(r.max_points for r in tests if r.not_counted)
        score = round(sum(r.points for r in tests), 2)
        if broken:
            max_score, note = m.points - not_counted, broken[0].message
            tests = tests + broken
        else:
            max_score, note = sum(r.max_points for r in tests) - not_counted, ""
            hidden = m.points - sum(r.max_points for r in tests)
            if hidden > 0 and not selected_only:
                note = f"public tests only: {hidden:g} more points in the instructor's hidden tests"
        if tampered:
            score, note = 0.0, tampered[0].message
            for r in tests:
                r.points = 0.0
        if not mine:
            max_score, note = m.points, f"no tests found in {m.rel(m.tests_dir)}"
        results.append(ModuleResult(m.key, score, round(max_score, 2), tests, not_counted, note))
    return results


def write_json(results: list[ModuleResult], path: Path) -> None:
    write_atomically({path: json.dumps({"modules": [r.as_json() for r in results]}, indent=2)})
