"""pytest plugin of the grading tests: points, perf bars, GPU and optional-package skips, the `only`
isolation fixture, tamper checks, and the machine-readable report.

Loaded with `-p tito.grading.plugin` (by `tito test`, `tito grade` and the project's pytest config).
The grader runs pytest with `--noconftest`, so markers and fixtures live here, never in a conftest.py
that a learner's tree could shadow.
"""
from __future__ import annotations

import importlib
import json
import os
import re
from pathlib import Path

import pytest

from .records import TestRecord
from .requirements import describe, is_installed
from .tamper import Watch

MODULE_DIR = re.compile(r"^(\d\d)_[a-z0-9_]+$")
GPU_SKIP_PREFIX = "needs GPU"
EXERCISES_ENV = "TINYQ_EXERCISES"     # JSON file of each module's exercises (written by the runner)


def module_of(path: Path) -> str | None:
    """The `NN_name` folder a test file lives in, or None for non-graded tests (tooling, notebooks)."""
    for part in reversed(path.parts[:-1]):
        if MODULE_DIR.match(part):
            return part
    return None


def short_message(excinfo) -> str:
    """One line that tells a learner why the test failed (an assertion's own message first)."""
    if excinfo is None:
        return ""
    exc = excinfo.value
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, AssertionError):
        return ("assertion failed: " + first)[:400] if first else "assertion failed"
    return f"{type(exc).__name__}: {first}"[:400]


def _not_implemented(excinfo) -> BaseException | None:
    """The NotImplementedError behind a failure (raised directly or as the cause of another error)."""
    exc = excinfo.value if excinfo is not None else None
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, NotImplementedError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _raiser(exc: BaseException) -> str | None:
    """Name of the function (or class, for a method) whose body raised `exc`."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    qualname = getattr(code, "co_qualname", code.co_name)
    return qualname.split(".")[0]


# -------------------------------------------------------------------------- exercises and `only`

_exercise_cache: dict | None = None


def exercise_map(config) -> dict:
    """{module key: {"package", "oracle", "exercises": {grade_id: [names]}}}: from the runner's file,
    else derived from the module sources of the tree under test (the project's own pytest run)."""
    global _exercise_cache
    if _exercise_cache is None:
        path = os.environ.get(EXERCISES_ENV)
        if path:
            _exercise_cache = json.loads(Path(path).read_text())
        else:
            from .exercises import exercise_map as derive   # needs the course tree (tito.registry)
            _exercise_cache = derive(Path(str(config.rootpath)))
    return _exercise_cache


def owner_of(name: str, info: dict) -> str | None:
    for exercise, names in info["exercises"].items():
        if name in names:
            return exercise
    return None


class Isolation:
    """`only(exercise, ...)`: while the test runs, every function of the module's other exercises
    (and what the package imports from earlier modules) is the instructor's oracle, so one bug costs
    one exercise's points. Without an oracle (the student flavour) it does nothing."""

    def __init__(self, monkeypatch, info: dict, all_info: dict):
        self.monkeypatch, self.info, self.all_info = monkeypatch, info, all_info

    def __call__(self, *keep: str) -> bool:
        unknown = [k for k in keep if k not in self.info["exercises"]]
        if unknown:
            raise pytest.UsageError(f"only({', '.join(keep)}): no exercise {unknown[0]!r} in "
                                    f"{self.info['package']} (known: {', '.join(self.info['exercises'])})")
        try:
            oracle = importlib.import_module(self.info["oracle"])
        except ModuleNotFoundError as exc:
            if exc.name != self.info["oracle"]:     # the oracle exists but is broken: never grade silently
                raise
            return False
        target = importlib.import_module(self.info["package"])
        for exercise, names in self.info["exercises"].items():
            if exercise not in keep:
                for name in names:
                    if hasattr(oracle, name):
                        self.monkeypatch.setattr(target, name, getattr(oracle, name))
        # what the package uses from earlier modules' exercises, where this oracle provides it
        own = {name for names in self.info["exercises"].values() for name in names}
        for other in self.all_info.values():
            if other is self.info:
                continue
            for names in other["exercises"].values():
                for name in names:
                    if name not in own and hasattr(target, name) and hasattr(oracle, name):
                        self.monkeypatch.setattr(target, name, getattr(oracle, name))
        return True


# -------------------------------------------------------------------------- perf

class Perf:
    """Handed to perf tests: `perf.record(measured, bar, unit=..., floor=None, lower_is_better=False)`."""

    def __init__(self, record: TestRecord, strict: bool = False):
        self._record = record
        self._strict = strict      # reference runs: anything short of the full bar is a failure

    def record(self, measured: float, bar: float, *, unit: str, floor: float | None = None,
               lower_is_better: bool = False) -> None:
        rec = self._record
        rec.measured, rec.bar, rec.floor, rec.lower_is_better, rec.unit = (
            float(measured), float(bar), None if floor is None else float(floor), lower_is_better, unit)
        limit = bar if floor is None or self._strict else floor
        word = "at most" if lower_is_better else "at least"
        ok = measured <= limit if lower_is_better else measured >= limit
        assert ok, f"measured {measured:.2f} {unit}, needs {word} {limit:.2f} (full points at {bar:.2f})"


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


# -------------------------------------------------------------------------- the report

class GradingReport:
    def __init__(self, config, watch: Watch):
        self.config = config
        self.watch = watch
        self._tampered = watch.changed      # bound now: a later replacement of Watch.changed is not used
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
    def pytest_runtest_setup(self, item):
        for marker in item.iter_markers("requires"):
            for name in marker.args:
                if not is_installed(name):
                    rec = self.records.get(item.nodeid)
                    if rec is not None:
                        rec.needs = name
                    pytest.skip(describe(name))

    def _failure_message(self, item, call) -> str:
        exc = _not_implemented(call.excinfo)
        if exc is None:
            return short_message(call.excinfo)
        rec = self.records[item.nodeid]
        raiser = _raiser(exc)
        info = exercise_map(self.config).get(rec.module)
        owner = owner_of(raiser, info) if (info and raiser) else None
        if owner and rec.exercise and owner != rec.exercise:
            return f"{raiser} (used by {rec.exercise}) is not implemented"
        return "not implemented"

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
            rec.message = self._failure_message(item, call)
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
        tampered = self._tampered()
        records = list(self.records.values())
        for module in sorted({r.module for r in records}) if tampered else ():
            records.append(TestRecord(module=module, name="integrity", exercise=None, points=0.0,
                                      max_points=0.0, outcome="error", kind="integrity",
                                      message="the submission replaced what the tests rely on: "
                                              + ", ".join(tampered[:5])))
        payload = {"tinyq_root": os.environ.get("TINYQ_EXPECT_ROOT"), "integrity_checked": True,
                   "tests": [r.as_dict() for r in records]}
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
    config.addinivalue_line("markers", "requires(*packages): needs optional packages (skips as 'needs X')")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    # taken before any test module (and so any learner code) is imported
    report = GradingReport(config, Watch.of_grading_helpers())
    report.watch.add_plugin(report, __import__(__name__, fromlist=["*"]))
    config.pluginmanager.register(report, "tinyq-grading-report")
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


@pytest.fixture
def only(request, monkeypatch):
    """`only("quantize")`: grade that exercise on its own (see Isolation)."""
    module = module_of(Path(str(request.node.path)))
    all_info = exercise_map(request.config)
    if module not in all_info:
        raise pytest.UsageError(f"{request.node.nodeid}: `only` is for graded tests under tests/NN_name/")
    return Isolation(monkeypatch, all_info[module], all_info)


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
