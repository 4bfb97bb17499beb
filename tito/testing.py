"""Running a module's graded tests against a package and scoring them (used by `test` and `grade`)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .registry import Module

PYTEST_INI = "[pytest]\naddopts =\n"
RESULT_KEYS = ("name", "points", "max_points", "outcome", "message", "measured", "bar")


class TestRunError(Exception):
    """pytest could not run at all (usage error, crash before collection...)."""


@dataclass
class ModuleResult:
    module: str
    score: float
    max_score: float
    tests: list[dict] = field(default_factory=list)
    gpu_points: float = 0.0          # points of tests skipped for lack of a GPU (not in max_score)
    note: str = ""

    def as_json(self) -> dict:
        tests = []
        for t in self.tests:
            row = {k: t.get(k) for k in RESULT_KEYS}
            if t.get("measured") is None:
                row.pop("measured"), row.pop("bar")
            tests.append(row)
        return {"module": self.module, "score": self.score, "max_score": self.max_score, "tests": tests}


def pytest_command(test_dirs: list[Path], json_path: Path, ini_path: Path, root: Path,
                   extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "pytest", *map(str, test_dirs), "-c", str(ini_path),
            "--rootdir", str(root), "-p", "tito.pytest_plugin", "-p", "no:cacheprovider",
            "--noconftest", "-q", "-rN", "--tb=short", "--tinyq-json", str(json_path), *(extra or [])]


def grading_env(package_root: Path, plugin_path: Path | None = None) -> dict[str, str]:
    """Environment in which `import tinyq` finds the graded tree's package and nothing else."""
    env = dict(os.environ)
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
               extra: list[str] | None = None, capture: bool = False, timeout: float | None = None,
               preexec=None) -> tuple[list[dict], int, str]:
    """Run pytest on `test_dirs` against `package_root`'s tinyq; returns (records, exit code, output).

    The process gets its own session so that a timeout kills everything it started; `preexec` can
    set resource limits in the child (used by `tito grade`).
    """
    with tempfile.TemporaryDirectory(prefix="tito-test-") as tmp:
        json_path, ini_path = Path(tmp) / "results.json", Path(tmp) / "pytest.ini"
        ini_path.write_text(PYTEST_INI)
        cmd = pytest_command(test_dirs, json_path, ini_path, package_root, extra)
        pipe = subprocess.PIPE if capture else None
        proc = subprocess.Popen(cmd, cwd=package_root, env=grading_env(package_root, plugin_path),
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
        records = json.loads(json_path.read_text())["tests"]
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


def score_modules(modules: list[Module], records: list[dict], selected_only: bool = False) -> list[ModuleResult]:
    """Per-module scores. A module whose tests could not even be imported scores 0 of its full points.
    `selected_only`: a subset of the tests ran (-k), so say nothing about the ones that did not."""
    results = []
    for m in modules:
        mine = [r for r in records if r["module"] == m.key]
        tests = [r for r in mine if r["kind"] == "test"]
        broken = [r for r in mine if r["kind"] == "collection"]
        gpu_points = sum(r["max_points"] for r in tests if r["outcome"] == "skipped" and r["needs_gpu"])
        for r in tests:
            if r["outcome"] == "skipped" and r["needs_gpu"]:
                r["message"] = r["message"] or "needs GPU"
        score = round(sum(r["points"] for r in tests), 2)
        if broken:
            max_score, note = m.points - gpu_points, broken[0]["message"]
            tests = tests + broken
        else:
            max_score, note = sum(r["max_points"] for r in tests) - gpu_points, ""
            hidden = m.points - sum(r["max_points"] for r in tests)
            if hidden > 0 and not selected_only:
                note = f"public tests only: {hidden:g} more points in the instructor's hidden tests"
        if not mine:
            max_score, note = m.points, f"no tests found in {m.rel(m.tests_dir)}"
        results.append(ModuleResult(m.key, score, round(max_score, 2), tests, gpu_points, note))
    return results


def write_json(results: list[ModuleResult], path: Path) -> None:
    payload = {"modules": [r.as_json() for r in results]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)
