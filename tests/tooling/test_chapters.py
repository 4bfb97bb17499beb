"""Chapter hygiene of the module sources, as a learner sees them (the student flavour).

1. Hints guide, they do not dictate. For every solution region of every module, fewer than a third of
   its significant solution lines may appear verbatim in the student text of that module.
   - student text: `tito.source.student_text(source)`, i.e. the source with every solution region
     replaced by its stub and the hidden tests removed (narrative, docstrings, hints, given code and
     inline tests all count);
   - a significant line: a solution line stripped of surrounding blanks and of a trailing comment
     (`  # ...`); blank lines and comment lines are not significant;
   - trivial lines shorter than MIN_CHARS characters (`return x`, `else:`, `q = q.T`) prove nothing
     and are left out of both counts;
   - a line is given away when it occurs anywhere in the student text, as a whole line or inside a
     longer one (a docstring quoting `q = np.rint(x / s) + z` gives that line away).
   Since every region stays under a third, so does every exercise (the union of its regions).

2. Docstrings state the exceptions their tests expect. For every graded test function of
   tests/NN_name/test_*.py (hidden files included) with `pytest.raises(SomeError)` in its body, the
   student text of the solution cell whose grade_id is the test's exercise (`exercise=` of
   `pytest.mark.points`) names `SomeError`. With a tuple `pytest.raises((A, B))` any one of the names
   suffices, since raising that one passes the test.
"""
import ast
import re

import pytest

from tito.registry import all_modules
from tito.source import read_cells, solution_regions, strip_hidden_tests, strip_solutions, student_text
from _tooling import REPO

MODULES = all_modules(REPO)
MIN_CHARS = 12
TRAILING_COMMENT = re.compile(r"\s+#\s.*$")


def significant(line: str) -> str:
    """The compared form of a solution line: stripped, trailing comment dropped; '' if not compared."""
    text = line.strip()
    if not text or text.startswith("#"):
        return ""
    text = TRAILING_COMMENT.sub("", text).strip()
    return text if len(text) >= MIN_CHARS else ""


REGION_CASES = [(m, i, ex, lines) for m in MODULES
                for i, (ex, lines) in enumerate(solution_regions(m.source))]


@pytest.fixture(scope="module")
def student_texts():
    return {m.key: student_text(m.source.read_text()) for m in MODULES}


@pytest.mark.parametrize("module, index, exercise, lines", REGION_CASES,
                         ids=[f"{m.key}:{ex}#{i}" for m, i, ex, _ in REGION_CASES])
def test_hints_give_away_less_than_a_third_of_a_solution(module, index, exercise, lines, student_texts):
    compared = [t for t in map(significant, lines) if t]
    given = [t for t in compared if t in student_texts[module.key]]
    assert 3 * len(given) < len(compared) or not compared, (
        f"{module.key}:{exercise} (solution region {index}): {len(given)} of its {len(compared)} "
        "significant lines appear verbatim in the student text; say the idea, not the code:\n  "
        + "\n  ".join(given))


def test_the_hint_rule_sees_a_quoted_solution_line():
    """The rule catches a line quoted inside a docstring, and ignores trivial lines and comments."""
    source = '''# %% nbgrader={"grade": false, "grade_id": "f", "locked": false, "schema_version": 3, "solution": true}
def f(x, s):
    """HINTS: q = np.rint(x / s) + 1 then return q."""
    ### BEGIN SOLUTION
    q = np.rint(x / s) + 1   # round half to even
    # a comment line
    return q
    ### END SOLUTION
'''
    ((exercise, lines),) = solution_regions(REPO / "x.py", source)
    compared = [t for t in map(significant, lines) if t]
    assert exercise == "f" and compared == ["q = np.rint(x / s) + 1"]
    assert compared[0] in student_text(source)


# ------------------------------------------------------------------ exceptions named by docstrings
def _exception_names(node: ast.expr) -> list[str]:
    """`ValueError`, `np.linalg.LinAlgError` or a tuple of them -> their bare names."""
    if isinstance(node, ast.Tuple):
        return [n for elt in node.elts for n in _exception_names(elt)]
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    return []


def _is_pytest_attr(node: ast.expr, *names: str) -> bool:
    """node is `pytest.<names[0]>.<names[1]>...`."""
    for name in reversed(names):
        if not (isinstance(node, ast.Attribute) and node.attr == name):
            return False
        node = node.value
    return isinstance(node, ast.Name) and node.id == "pytest"


def _graded_exercise(func: ast.FunctionDef) -> str | None:
    for dec in func.decorator_list:
        if isinstance(dec, ast.Call) and _is_pytest_attr(dec.func, "mark", "points"):
            for kw in dec.keywords:
                if kw.arg == "exercise" and isinstance(kw.value, ast.Constant):
                    return kw.value.value
    return None


def expected_exceptions(path):
    """(test name, exercise, [alternative exception names]) for each pytest.raises of each graded test."""
    found = []
    for func in ast.parse(path.read_text()).body:
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        exercise = _graded_exercise(func)
        if exercise is None:
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Call) and _is_pytest_attr(node.func, "raises") and node.args:
                names = _exception_names(node.args[0])
                if names:
                    found.append((func.name, exercise, names))
    return found


def solution_cell_texts(module) -> dict[str, str]:
    """grade_id -> what a learner sees of that solution cell (solutions stubbed, hidden tests gone)."""
    return {c.nbgrader.get("grade_id"): strip_hidden_tests(strip_solutions(c.source))
            for c in read_cells(module.source) if c.is_solution}


RAISE_CASES = [(m, path.name, test, exercise, names)
               for m in MODULES if m.tests_dir.is_dir()
               for path in sorted(m.tests_dir.glob("test_*.py"))
               for test, exercise, names in expected_exceptions(path)]


def test_the_exception_cases_cover_public_and_hidden_tests():
    files = {f for _, f, *_ in RAISE_CASES}
    assert any("_hidden" in f for f in files) and any("_hidden" not in f for f in files)


@pytest.mark.parametrize("module, file, test, exercise, names", RAISE_CASES,
                         ids=[f"{m.key}:{t}:{'|'.join(n)}" for m, _, t, _, n in RAISE_CASES])
def test_docstrings_name_the_exceptions_their_tests_expect(module, file, test, exercise, names):
    cells = solution_cell_texts(module)
    assert exercise in cells, f"{file}::{test} grades exercise {exercise!r}, which is no solution cell"
    text = cells[exercise]
    assert any(re.search(rf"\b{re.escape(n)}\b", text) for n in names), (
        f"{file}::{test} expects {' or '.join(names)} from exercise {exercise!r}, but its cell "
        f"({module.rel(module.source)}) never says so: state it in the docstring")
