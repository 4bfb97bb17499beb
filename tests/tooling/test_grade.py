"""`tito grade` against hostile submissions: every one gets a row, the right grade and a reason.

The class: a correct submission (folder and .zip), an untouched release, and one of each attack the
grader must survive. Module 15 only, so the whole class grades in about a minute.
"""
import csv
import os
import shutil
import time
import zipfile

import nbformat
import pytest

from tito.grade import GradingSetupError, Limits, check_grading_machine, find_submissions, grade_all
from tito.notebooks import to_notebook
from tito.registry import all_modules
from tito.release import release
from _tooling import REPO, copy_course, tree_digest

SOURCE = "modules/15_quantization/quantization_dev.py"
FIRST_EXPORT = "#| export\nimport numpy as np\n"

ATTACKS = {   # name -> code injected at the top of the learner's package (runs at import)
    "infinite_loop": "while True:\n    pass\n",
    "sys_exit": "import sys\nsys.exit(0)\n",
    "os_exit": "import os\nos._exit(0)\n",
    "segfault": "import ctypes\nctypes.string_at(0)\n",
    "memory_bomb": "_hog = [bytearray(256 * 2 ** 20) for _ in range(1000)]\n",
    "fake_score_line": "print('15_quantization: 46 / 46')\nprint('===== 46 passed in 0.1s =====')\n",
    "tamper_tests": (
        "import os, pathlib\n"
        "_t = pathlib.Path(os.environ.get('TINYQ_EXPECT_ROOT', '.')) / 'tests' / '15_quantization'\n"
        "for _f in _t.glob('test_*.py'):\n"
        "    _f.write_text('import pytest\\n@pytest.mark.points(46, exercise=\"qrange\")\\ndef test_x():\\n    pass\\n')\n"),
    # assertion helpers that never fail: a wrong module would pass every check that uses them
    "noop_asserts": (
        "import numpy as _np, numpy.testing as _npt\n"
        "for _name in dir(_npt):\n"
        "    if _name.startswith('assert_'):\n"
        "        setattr(_npt, _name, lambda *a, **k: None)\n"
        "_np.array_equal = _np.allclose = lambda *a, **k: True\n"),
    # the grading plugin's own scoring, replaced in place (same object, new code)
    "patched_plugin": (
        "import sys as _sys\n"
        "_p = _sys.modules.get('tito.grading.plugin')\n"
        "if _p is not None:\n"
        "    _p.perf_fraction.__code__ = (lambda rec: 1.0).__code__\n"),
}
SCORE_FAKING = ("fake_score_line", "tamper_tests", "noop_asserts", "patched_plugin")   # graded on the stubs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grade")
    course = copy_course(base / "course")
    student = base / "student"
    release(course, student)
    subs = base / "submissions"
    subs.mkdir()
    reference = (course / SOURCE).read_text()
    shutil.copytree(student, subs / "empty")
    good = subs / "good"
    shutil.copytree(student, good)
    (good / SOURCE).write_text(reference)
    with zipfile.ZipFile(subs / "good_zip.zip", "w") as zf:
        for p in good.rglob("*"):
            zf.write(p, "course/" + p.relative_to(good).as_posix())
    for name, code in ATTACKS.items():
        shutil.copytree(student, subs / name)
        # stubs for the score-faking attacks (they must not turn 0 into points), solutions for the rest
        text = (student if name in SCORE_FAKING else course).joinpath(SOURCE).read_text()
        (subs / name / SOURCE).write_text(text.replace(FIRST_EXPORT, FIRST_EXPORT + code, 1))
    syntax = subs / "syntax_error"
    shutil.copytree(student, syntax)
    (syntax / SOURCE).write_text(reference.replace("return qmin, qmax", "return qmin, qmax)", 1))
    hostile_pytest = subs / "conftest_plugin"
    shutil.copytree(student, hostile_pytest)
    everything_passes = ("import pytest\n@pytest.hookimpl(hookwrapper=True)\n"
                         "def pytest_runtest_makereport(item, call):\n    out = yield\n"
                         "    out.get_result().outcome = 'passed'\n")
    for where in (hostile_pytest, hostile_pytest / "tests", hostile_pytest / "tests" / "15_quantization"):
        (where / "conftest.py").write_text(everything_passes)
    (hostile_pytest / "allpass.py").write_text(everything_passes)
    (hostile_pytest / "pytest.ini").write_text("[pytest]\naddopts = -p allpass\n")

    # a learner who worked in Colab hands in the notebook only, or both files with the notebook newer
    solution_nb = to_notebook(course / SOURCE)
    notebook_only = subs / "notebook_only"
    shutil.copytree(student, notebook_only)
    (notebook_only / SOURCE).unlink()
    nbformat.write(solution_nb, (notebook_only / SOURCE).with_suffix(".ipynb"))
    both = subs / "notebook_newer"
    shutil.copytree(student, both)
    nbformat.write(solution_nb, (both / SOURCE).with_suffix(".ipynb"))
    old = time.time() - 3600
    os.utime(both / SOURCE, (old, old))                  # the stub .py was last touched an hour ago
    with zipfile.ZipFile(subs / "notebook_zip.zip", "w") as zf:
        for p in notebook_only.rglob("*"):
            zf.write(p, "course/" + p.relative_to(notebook_only).as_posix())

    tests_before = tree_digest(course / "tests")
    out = base / "grades.csv"
    modules = all_modules(course)
    graded_rows = []
    rows = grade_all(course, modules, find_submissions(subs), out, jobs=2,
                     limits=Limits(timeout_s=45, memory_mb=2500), gradescope=base / "gradescope",
                     on_row=graded_rows.append)
    return dict(course=course, subs=subs, out=out, rows=rows, modules=modules, base=base,
                tests_before=tests_before, graded=graded_rows)


def test_every_submission_gets_one_row(graded):
    with graded["out"].open() as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    expected = {"empty", "good", "good_zip", "syntax_error", "conftest_plugin", "notebook_only", "notebook_newer",
                "notebook_zip", *ATTACKS}
    assert set(rows) == expected


def test_correct_submissions_get_full_marks(graded):
    for name in ("good", "good_zip"):
        row = graded["rows"][name]
        assert float(row["15_quantization"]) == 46 and float(row["total"]) == float(row["max_total"]) == 46, row
        assert row["15_quantization_file"].startswith("quantization_dev.py"), row


@pytest.mark.parametrize("name, graded_file", [
    ("notebook_only", "quantization_dev.ipynb"),
    ("notebook_zip", "quantization_dev.ipynb"),
    ("notebook_newer", "quantization_dev.ipynb (changed last)"),
    ("empty", "quantization_dev.py + quantization_dev.ipynb (paired)"),
])
def test_notebook_submissions_are_graded_and_the_csv_says_which_file(graded, name, graded_file):
    row = graded["rows"][name]
    assert row["15_quantization_file"] == graded_file, row
    if name != "empty":
        assert float(row["15_quantization"]) == 46, row


def test_grading_refuses_to_start_without_a_required_package(tmp_path):
    course = copy_course(tmp_path / "course")
    probe = course / "tests" / "15_quantization" / "test_15_needs_probe.py"
    probe.write_text("import pytest\n\n@pytest.mark.points(1, exercise='qrange')\n"
                     "@pytest.mark.requires('tinyq_absent_package')\ndef test_probe():\n    pass\n")
    with pytest.raises(GradingSetupError, match="needs tinyq_absent_package"):
        check_grading_machine(all_modules(course))
    out = tmp_path / "grades.csv"
    with pytest.raises(GradingSetupError):
        grade_all(course, all_modules(course), [], out)
    assert not out.exists(), "nothing is graded (and no gradebook written) on such a machine"


@pytest.mark.parametrize("name, reason", [
    ("empty", "not implemented"),
    ("infinite_loop", "timed out after 45 s"),
    ("os_exit", "exited with code 0 before reporting"),
    ("segfault", "crashed (SIGSEGV)"),
    ("memory_bomb", "MemoryError"),
    ("sys_exit", "SystemExit"),
    ("syntax_error", "export failed: modules/15_quantization/quantization_dev.py:"),
    ("conftest_plugin", "not implemented"),
    ("fake_score_line", "not implemented"),
    ("tamper_tests", "modified the grading tests"),
    ("noop_asserts", "replaced what the tests rely on: numpy.testing.assert_"),
    ("patched_plugin", "replaced what the tests rely on: plugin perf_fraction"),
])
def test_hostile_submission_gets_zero_with_a_reason(graded, name, reason):
    row = graded["rows"][name]
    assert float(row["15_quantization"]) == 0, row
    assert reason in row["15_quantization_reason"], row["15_quantization_reason"]


def test_instructor_tests_untouched(graded):
    assert tree_digest(graded["course"] / "tests") == graded["tests_before"]


def test_gradescope_results(graded):
    import json
    good = json.loads((graded["base"] / "gradescope" / "good" / "results.json").read_text())
    assert good["score"] == 46 and sum(t["max_score"] for t in good["tests"]) == 46
    bad = json.loads((graded["base"] / "gradescope" / "os_exit" / "results.json").read_text())
    assert bad["score"] == 0 and "exited" in bad["tests"][0]["output"]


def test_rerun_resumes_and_regrades_only_changed_submissions(graded):
    regraded = []
    subs = graded["subs"]
    (subs / "empty" / SOURCE).write_text((graded["course"] / SOURCE).read_text())   # the learner finished
    for name in ATTACKS:
        shutil.rmtree(subs / name)                     # keep the rerun short
    rows = grade_all(graded["course"], graded["modules"], find_submissions(subs), graded["out"],
                     limits=Limits(timeout_s=45, memory_mb=2500), on_row=regraded.append)
    assert [r.student for r in regraded] == ["empty"]
    assert float(rows["empty"]["total"]) == 46
    assert "infinite_loop" in rows, "rows of submissions not regraded are kept"
