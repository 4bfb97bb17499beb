"""Module 15's tests fail for the right reason: stubbing one exercise costs exactly its points.

For every exercise, a copy of the course has that exercise's solution regions replaced by
`raise NotImplementedError()`, is re-exported and graded: that exercise must lose all of its points
and every other exercise must keep all of theirs. A region alone (an exercise with several) must
cost points of its own exercise only.
"""
from collections import defaultdict

import pytest

from tito.export import export_modules
from tito.registry import resolve
from tito.source import solution_regions, strip_solutions
from tito.testing import run_pytest
from _tooling import REPO, copy_course

MODULE = resolve("15", REPO)
REGIONS = solution_regions(MODULE.source)
EXERCISES = sorted({ex for ex, _ in REGIONS})


def points_by_exercise(records):
    earned, possible = defaultdict(float), defaultdict(float)
    for r in records:
        if r["kind"] == "test":
            earned[r["exercise"]] += r["points"]
            possible[r["exercise"]] += r["max_points"]
    return earned, possible


def grade_with_stubbed(tmp_path, indices, extra=None):
    course = copy_course(tmp_path / "course")
    module = resolve("15", course)
    module.source.write_text(strip_solutions(module.source.read_text(), only=set(indices)))
    export_modules([module])
    records, _, output = run_pytest([module.tests_dir], course, capture=True, extra=extra)
    return records, output


@pytest.mark.parametrize("exercise", EXERCISES)
def test_stubbing_an_exercise_costs_exactly_its_points(tmp_path, exercise):
    indices = [i for i, (ex, _) in enumerate(REGIONS) if ex == exercise]
    records, output = grade_with_stubbed(tmp_path, indices)
    earned, possible = points_by_exercise(records)
    assert possible[exercise] > 0
    assert earned[exercise] == 0, f"{exercise} stubbed but still earned {earned[exercise]}"
    for other in EXERCISES:
        if other != exercise:
            assert earned[other] == possible[other], (
                f"stubbing {exercise} cost {other} {possible[other] - earned[other]} points\n{output[-3000:]}")
    reasons = {r["message"] for r in records if r["exercise"] == exercise}
    assert reasons == {"not implemented"}, reasons


MULTI = [i for i, (ex, _) in enumerate(REGIONS) if sum(e == ex for e, _ in REGIONS) > 1]


@pytest.mark.parametrize("index", MULTI, ids=lambda i: f"{REGIONS[i][0]}-region{i}")
def test_stubbing_one_region_costs_only_its_exercise(tmp_path, index):
    exercise = REGIONS[index][0]
    records, _ = grade_with_stubbed(tmp_path, [index], extra=["-m", "not perf"])
    earned, possible = points_by_exercise(records)
    assert earned[exercise] < possible[exercise], f"region {index} of {exercise} is never tested"
    assert all(earned[o] == possible[o] for o in EXERCISES if o != exercise)
