"""pytest plugin of the grading tests: points, perf bars, GPU skips and the machine-readable report.

Loaded with `-p tito.pytest_plugin` (by `tito test`, `tito grade` and the project's pytest config).
The grader runs pytest with `--noconftest`, so markers and fixtures live here, never in a conftest.py
that a learner's tree could shadow.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

MODULE_DIR = re.compile(r"^\d\d_[a-z0-9_]+$")
GPU_SKIP_PREFIX = "needs GPU"


@dataclass
class TestRecord:
    module: str
    name: str
    exercise: str | None
    points: float
    max_points: float
    outcome: str = "error"          # passed | failed | error | skipped
    message: str = ""
    measured: float | None = None
    bar: float | None = None
    floor: float | None = None
    lower_is_better: bool = False
    needs_gpu: bool = False
    kind: str = field(default="test")  # test | collection


def module_of(path: Path) -> str | None:
    """The `NN_name` folder a test file lives in, or None for non-graded tests (tooling, notebooks)."""
    for part in reversed(path.parts[:-1]):
        if MODULE_DIR.match(part):
            return part
    return None


def short_message(excinfo) -> str:
    """One line that tells a learner why the test failed."""
    if excinfo is None:
        return ""
    exc = excinfo.value
    if isinstance(exc, NotImplementedError):
        return "not implemented"
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    name = type(exc).__name__
    if isinstance(exc, AssertionError):
        return ("assertion failed: " + first)[:300] if first else "assertion failed"
    return f"{name}: {first}"[:300]


def _caused_by_not_implemented(excinfo) -> bool:
    exc = excinfo.value if excinfo is not None else None
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, NotImplementedError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class Perf:
    """Handed to perf tests: `perf.record(measured, bar, floor=None, lower_is_better=False)`."""

    def __init__(self, record: TestRecord, strict: bool = False):
        self._record = record
        self._strict = strict      # reference runs: anything short of the full bar is a failure

    def record(self, measured: float, bar: float, floor: float | None = None,
               lower_is_better: bool = False) -> None:
        rec = self._record
        rec.measured, rec.bar, rec.floor, rec.lower_is_better = (
            float(measured), float(bar), None if floor is None else float(floor), lower_is_better)
        limit = bar if floor is None or self._strict else floor
        word = "at most" if lower_is_better else "at least"
        ok = measured <= limit if lower_is_better else measured >= limit
        assert ok, f"measured {measured:.2f}, needs {word} {limit:.2f} (full points at {bar:.2f})"


def perf_fraction(rec: TestRecord) -> float:
    """Share of a perf test's points earned by its measured ratio (1.0 at or past the bar)."""
    if rec.measured is None or rec.bar is None:
        return 1.0
    m, bar = rec.measured, rec.bar
    floor = rec.floor if rec.floor is not None else bar
    if rec.lower_is_better:
        if m <= bar:
            return 1.0
        return max(0.0, min(1.0, (floor - m) / (floor - bar))) if floor != bar else 0.0
    if m >= bar:
        return 1.0
    return max(0.0, min(1.0, (m - floor) / (bar - floor))) if floor != bar else 0.0


class GradingReport:
    def __init__(self, config):
        self.config = config
        self.records: dict[str, TestRecord] = {}

    # -- collection ------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        for item in items:
            module = module_of(Path(str(item.path)))
            if module is None:
                continue
            marker = item.get_closest_marker("points")
            if marker is None or not marker.args:
                raise pytest.UsageError(
                    f"{item.nodeid}: a graded test needs @pytest.mark.points(n, exercise=...)")
            self.records[item.nodeid] = TestRecord(
                module=module, name=item.nodeid.split("::", 1)[-1], exercise=marker.kwargs.get("exercise"),
                points=0.0, max_points=float(marker.args[0]),
                needs_gpu="gpu" in getattr(item, "fixturenames", ()))

    def pytest_collectreport(self, report):
        if report.failed:
            module = module_of(Path(report.nodeid.split("::")[0]))
            if module is None:
                return
            text = str(report.longrepr).strip().splitlines()
            cause = next((ln for ln in reversed(text) if ln.startswith("E ")), text[-1] if text else "")
            self.records["collect::" + report.nodeid] = TestRecord(
                module=module, name=report.nodeid, exercise=None, points=0.0, max_points=0.0,
                outcome="error", message=("could not import the tests: " + cause.lstrip("E ").strip())[:300],
                kind="collection")

    # -- running -----------------------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        rec = self.records.get(item.nodeid)
        if rec is None:
            return
        if report.when == "setup" and report.skipped:
            rec.outcome = "skipped"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            rec.message = reason.removeprefix("Skipped: ")
            rec.needs_gpu = rec.needs_gpu or rec.message.startswith(GPU_SKIP_PREFIX)
        elif report.failed:
            rec.outcome = "failed" if report.when == "call" else "error"
            rec.points = 0.0
            rec.message = ("not implemented" if _caused_by_not_implemented(call.excinfo)
                           else short_message(call.excinfo))
        elif report.when == "call" and report.skipped:
            rec.outcome = "skipped"
            rec.message = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        elif report.when == "call" and report.passed:
            rec.outcome = "passed"
            rec.message = ""
            rec.points = round(rec.max_points * perf_fraction(rec), 2)

    def pytest_sessionfinish(self, session, exitstatus):
        path = self.config.getoption("tinyq_json")
        if not path:
            return
        payload = {"tinyq_root": os.environ.get("TINYQ_EXPECT_ROOT"),
                   "tests": [asdict(r) for r in self.records.values()]}
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)


def pytest_addoption(parser):
    parser.addoption("--tinyq-json", dest="tinyq_json", default=None,
                     help="write the graded results (points, outcomes, perf ratios) to this JSON file")
    parser.addoption("--tinyq-strict", dest="tinyq_strict", action="store_true", default=False,
                     help="perf tests fail below their full bar (used on the reference solutions)")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n, exercise=None): points of a graded test and its exercise")
    config.addinivalue_line("markers", "perf: a speed or memory test timed against its FP32 baseline")
    config.addinivalue_line("markers", "gpu: needs a usable CUDA device (skips elsewhere)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.pluginmanager.register(GradingReport(config), "tinyq-grading-report")
    _check_package_origin()


def _check_package_origin():
    """Refuse to grade a `tinyq` other than the one in the tree being graded."""
    expect = os.environ.get("TINYQ_EXPECT_ROOT")
    if not expect:
        return
    import tinyq
    actual = Path(tinyq.__file__).resolve().parent.parent
    if actual != Path(expect).resolve():
        raise pytest.UsageError(
            f"tinyq is imported from {actual}, not from the tree being graded ({expect}); "
            "run tito from the course folder, or remove the other copy from PYTHONPATH")


@pytest.fixture
def perf(request):
    grading = request.config.pluginmanager.get_plugin("tinyq-grading-report")
    rec = grading.records.get(request.node.nodeid) if grading else None
    if rec is None:
        rec = TestRecord(module="", name=request.node.nodeid, exercise=None, points=0, max_points=0)
    return Perf(rec, strict=request.config.getoption("tinyq_strict"))


def gpu_unusable_reason() -> str | None:
    """None when CuPy can run a kernel on a CUDA device, else why not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install
        return f"CuPy is not importable ({type(exc).__name__}: {exc})".splitlines()[0]
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
        (cupy.arange(4) + 1).sum().item()
    except Exception as exc:
        return f"CUDA device unusable ({type(exc).__name__}: {exc})".splitlines()[0]
    return None


@pytest.fixture(scope="session")
def gpu():
    reason = gpu_unusable_reason()
    if reason:
        pytest.skip(f"{GPU_SKIP_PREFIX}: {reason}")
    import cupy
    return cupy
