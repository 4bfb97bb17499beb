"""Graded tests fail for the right reason: stubbing one exercise costs exactly its points.

For every exercise, a copy of the course has that exercise's solution regions replaced by
`raise NotImplementedError()`, is re-exported and graded: that exercise must lose all of its points
(with the reason "not implemented") and every other exercise must keep all of theirs. A region alone
(an exercise with several) must cost points of its own exercise only.

CI runs this for the modules in CI_MODULES (pure numpy, seconds per run; the whole suite has a
15-minute budget on two cores); set TINYQ_FULL_INTEGRITY=1 to run it for every module (the Numba
modules recompile in each copy) before a release. That every graded test of every module fails on
the student flavour is proved in CI for all modules by test_release.py.
"""
import os
from collections import defaultdict

import pytest

from tito.export import export_modules
from tito.registry import all_modules, resolve
from tito.source import solution_regions, strip_solutions
from tito.grading.runner import run_pytest
from _tooling import REPO, copy_course

CI_MODULES = ("15_quantization", "16_observers", "23_low_precision_floats")
FULL = os.environ.get("TINYQ_FULL_INTEGRITY") == "1"
MODULES = [m for m in all_modules(REPO) if FULL or m.key in CI_MODULES]
REGIONS = {m.key: solution_regions(m.source) for m in MODULES}
CASES = [(m.key, ex) for m in MODULES for ex in sorted({e for e, _ in REGIONS[m.key]})]
REGION_CASES = [(m.key, i) for m in MODULES for i, (ex, _) in enumerate(REGIONS[m.key])
                if m.key == "15_quantization" and sum(e == ex for e, _ in REGIONS[m.key]) > 1]


def points_by_exercise(records):
    earned, possible = defaultdict(float), defaultdict(float)
    for r in records:
        if r.kind == "test" and not r.not_counted:      # a GPU test skipped on a CPU: out of the maximum
            earned[r.exercise] += r.points
            possible[r.exercise] += r.max_points
    return earned, possible


def grade_with_stubbed(tmp_path, key, indices, extra=None):
    wanted = [m.key for m in all_modules(REPO) if m.number <= int(key[:2])]   # a module and those before it
    course = copy_course(tmp_path / "course", tuple(wanted))
    module = resolve(key, course)
    module.source.write_text(strip_solutions(module.source.read_text(), only=set(indices)))
    export_modules([module])
    records, _, output = run_pytest([module.tests_dir], course, capture=True, extra=extra)
    return records, output


@pytest.mark.slow
@pytest.mark.parametrize("key, exercise", CASES, ids=[f"{k}-{e}" for k, e in CASES])
def test_stubbing_an_exercise_costs_exactly_its_points(tmp_path, key, exercise):
    indices = [i for i, (ex, _) in enumerate(REGIONS[key]) if ex == exercise]
    records, output = grade_with_stubbed(tmp_path, key, indices)
    earned, possible = points_by_exercise(records)
    assert possible[exercise] > 0
    assert earned[exercise] == 0, f"{exercise} stubbed but still earned {earned[exercise]}"
    for other in possible:
        if other != exercise:
            assert earned[other] == possible[other], (
                f"stubbing {exercise} cost {other} {possible[other] - earned[other]} points\n{output[-3000:]}")
    reasons = {r.message for r in records if r.exercise == exercise and not r.not_counted}
    assert reasons == {"not implemented"}, reasons


@pytest.mark.parametrize("key, index", REGION_CASES, ids=[f"{k}-region{i}" for k, i in REGION_CASES])
def test_stubbing_one_region_costs_only_its_exercise(tmp_path, key, index):
    exercise = REGIONS[key][index][0]
    records, _ = grade_with_stubbed(tmp_path, key, [index], extra=["-m", "not perf"])
    earned, possible = points_by_exercise(records)
    assert earned[exercise] < possible[exercise], f"region {index} of {exercise} is never tested"
    assert all(earned[o] == possible[o] for o in possible if o != exercise)
