"""The module registry: name resolution and consistency of every module's metadata, tests and docs."""
import re

import pytest

from tito.registry import RegistryError, all_modules, resolve
from tito.source import read_cells
from tito.grading.runner import run_pytest
from _tooling import REPO

MODULES = all_modules(REPO)


@pytest.mark.parametrize("name", ["15", "quantization", "15_quantization", " 15_Quantization "])
def test_names_resolve_to_module_15(name):
    assert resolve(name, REPO).key == "15_quantization"


def test_unknown_name_lists_the_known_modules():
    with pytest.raises(RegistryError, match="no module named 'nope'.*15_quantization"):
        resolve("nope", REPO)


@pytest.fixture(scope="module")
def collected():
    """Every graded test of every module as pytest collects it (parametrized cases included)."""
    records, _, output = run_pytest([m.tests_dir for m in MODULES if m.tests_dir.is_dir()], REPO, capture=True, extra=["--collect-only"])
    assert not [r for r in records if r.kind == "collection"], output[-3000:]
    return records


def graded_tests(module, collected):
    return [(r.name, r.exercise, r.max_points) for r in collected if r.module == module.key]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.key)
def test_module_points_match_its_tests(module, collected):
    tests = graded_tests(module, collected)
    assert tests, f"{module.key} has no graded tests"
    assert sum(t[2] for t in tests) == module.points, (
        f"module.yaml says {module.points} points, the tests add up to {sum(t[2] for t in tests)}")


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.key)
def test_every_exercise_is_tested_and_every_test_names_an_exercise(module, collected):
    exercises = {c.nbgrader["grade_id"] for c in read_cells(module.source) if c.is_solution}
    named = {t[1] for t in graded_tests(module, collected)}
    assert None not in named, "every graded test names its exercise"
    assert named <= exercises, f"tests name unknown exercises: {named - exercises}"
    assert exercises <= named, f"exercises without tests: {exercises - named}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.key)
def test_module_has_public_and_hidden_tests(module):
    names = [p.name for p in module.tests_dir.glob("test_*.py")]
    assert any("_hidden" in n for n in names) and any("_hidden" not in n for n in names)
    assert not list(module.tests_dir.glob("conftest.py")), "graded tests run with --noconftest"


def learning_path_rows():
    """{number: (status, time, prerequisite numbers)} of LEARNING_PATH.md's table."""
    rows = {}
    for line in (REPO / "LEARNING_PATH.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0].isdigit():
            prereq = set()
            for part in re.findall(r"\d+(?:–\d+)?", cells[4]):
                lo, _, hi = part.partition("–")
                prereq.update(range(int(lo), int(hi or lo) + 1))
            rows[int(cells[0])] = (cells[2], cells[3], prereq)
    return rows


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.key)
def test_learning_path_agrees_with_module_yaml(module):
    """module.yaml is the one source of what can drift: time, prerequisites, built or not."""
    status, time, prereq = learning_path_rows()[module.number]
    assert status.startswith("built"), f"LEARNING_PATH.md says {module.key} is {status!r}"
    assert time == module.time, f"LEARNING_PATH.md says {time}, module.yaml says {module.time}"
    assert prereq == {int(p[:2]) for p in module.prerequisites}, (prereq, module.prerequisites)


def test_learning_path_lists_no_built_module_that_does_not_exist():
    built = {n for n, (status, _, _) in learning_path_rows().items() if status.startswith("built")}
    assert built == {m.number for m in MODULES}
