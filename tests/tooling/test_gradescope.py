"""`tito gradescope build`: the autograder zip, run as Gradescope runs it, without Gradescope.

The zip is unpacked into a temporary root laid out like /autograder (TINYQ_AUTOGRADER_ROOT moves it),
and its run_autograder grades good, stubbed, crashing, hanging and cheating submissions of module 15
(the classes of test_grade.py) with this venv's Python; every results.json is checked against
Gradescope's documented format. Nothing is pip-installed: setup.sh's install line is read instead.
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest

from tito.gradescope import CONFIG, ROOT_ENV, GradescopeError, autograder_leaks, build, extras_for, unpack
from tito.grade import Limits
from tito.registry import all_modules
from tito.release import find_leaks, release, solution_lines
from tito.source import solution_regions
from _tooling import REPO, copy_course, run_tito
from test_grade import ATTACKS, FIRST_EXPORT, SCORE_FAKING, SOURCE

# Gradescope's results.json (gradescope-autograders.readthedocs.io, "Autograder Specifications")
VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
TEST_ENTRY = {
    "type": "object", "additionalProperties": False,
    "required": ["score", "max_score", "name", "number", "output", "visibility"],
    "properties": {"score": {"type": "number"}, "max_score": {"type": "number"}, "name": {"type": "string"},
                   "name_format": {"type": "string"}, "number": {"type": "string"}, "output": {"type": "string"},
                   "output_format": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                   "status": {"enum": ["passed", "failed"]}, "visibility": VISIBILITY,
                   "extra_data": {"type": "object"}}}
RESULTS_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["score", "execution_time", "tests"],
    "properties": {"score": {"type": "number"}, "execution_time": {"type": "number"}, "output": {"type": "string"},
                   "output_format": {"type": "string"}, "visibility": VISIBILITY, "stdout_visibility": VISIBILITY,
                   "extra_data": {"type": "object"}, "tests": {"type": "array", "items": TEST_ENTRY},
                   "leaderboard": {"type": "array", "items": {
                       "type": "object", "additionalProperties": False, "required": ["name", "value"],
                       "properties": {"name": {"type": "string"}, "value": {"type": ["number", "string"]},
                                      "order": {"enum": ["asc", "desc"]}}}}}}

# submission -> (score of module 15, text in the results' outputs)
EXPECTED = {
    "good_files": (46, "passed"),           # the module file uploaded on its own
    "good_tree": (46, "passed"),            # a whole course folder (a repository submission)
    "good_notebook": (46, "passed"),        # the notebook only (a learner who worked in Colab)
    "empty": (0, "not implemented"),
    "syntax_error": (0, "export failed"),
    "segfault": (0, "crashed (SIGSEGV)"),
    "infinite_loop": (0, "timed out after 20 s"),
    "noop_asserts": (0, "replaced what the tests rely on"),
    "tamper_tests": (0, "modified the grading tests"),
    "conftest_plugin": (0, "not implemented"),
}


def _submission(kind: str, course: Path, student: Path, dest: Path) -> None:
    reference, stub = (course / SOURCE).read_text(), (student / SOURCE).read_text()
    name = Path(SOURCE).name
    dest.mkdir(parents=True)
    if kind == "good_files":
        (dest / name).write_text(reference)
    elif kind == "good_tree":
        shutil.copytree(student, dest, dirs_exist_ok=True)
        (dest / SOURCE).write_text(reference)
    elif kind == "good_notebook":
        from tito.notebooks import to_notebook
        import nbformat
        nbformat.write(to_notebook(course / SOURCE), dest / Path(name).with_suffix(".ipynb"))
    elif kind == "empty":
        (dest / name).write_text(stub)
    elif kind == "syntax_error":
        (dest / name).write_text(reference.replace("return qmin, qmax", "return qmin, qmax)", 1))
    elif kind == "conftest_plugin":
        shutil.copytree(student, dest, dirs_exist_ok=True)
        hook = ("import pytest\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
                "    out = yield\n    out.get_result().outcome = 'passed'\n")
        for where in (dest, dest / "tests", dest / "tests" / "15_quantization"):
            (where / "conftest.py").write_text(hook)
    else:                                   # an attack of test_grade.py at the top of the learner's code
        base = stub if kind in SCORE_FAKING else reference
        (dest / name).write_text(base.replace(FIRST_EXPORT, FIRST_EXPORT + ATTACKS[kind], 1))


def _run_autograder(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, ROOT_ENV: str(root), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True,
                          timeout=240)


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    base = tmp_path_factory.mktemp("gradescope")
    course = copy_course(base / "course")
    shutil.copy2(REPO / "pyproject.toml", course / "pyproject.toml")      # the zip pins its dependencies
    zip_path = base / "autograder.zip"
    result = run_tito(pytest.MonkeyPatch(), course, "gradescope", "build", str(zip_path), "--modules", "15",
                      "--timeout", "20", "--memory", "2500", "--leaderboard")
    assert result.exit_code == 0, result.output
    student = base / "student"
    release(course, student)
    roots = {}
    for kind in EXPECTED:
        roots[kind] = base / "roots" / kind
        unpack(zip_path, roots[kind])
        shutil.rmtree(roots[kind] / "submission")
        _submission(kind, course, student, roots[kind] / "submission")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(roots, pool.map(_run_autograder, roots.values())))
    results = {}
    for kind, run in runs.items():
        assert run.returncode == 0, f"{kind}: {run.stdout[-1500:]}{run.stderr[-1500:]}"
        results[kind] = json.loads((roots[kind] / "results" / "results.json").read_text())
    return dict(course=course, zip=zip_path, build_output=result.output, results=results, root=roots["good_files"])


def test_zip_has_gradescopes_layout_and_no_solution(autograder):
    with zipfile.ZipFile(autograder["zip"]) as zf:
        names = set(zf.namelist())
        modes = {i.filename: (i.external_attr >> 16) for i in zf.infolist()}
    assert {"setup.sh", "run_autograder", CONFIG, "pyproject.toml"} <= names
    for script in ("setup.sh", "run_autograder"):
        assert modes[script] & stat.S_IXUSR, f"{script} must be executable"
    assert not [n for n in names if n.endswith(("_dev.py", ".ipynb"))], "no module source of the instructor"
    assert "tinyq/quantize.py" not in names and "tinyq/bench.py" in names, "support code only, no export"
    assert "tests/15_quantization/_15_hidden_oracle.py" in names and "tests/tooling/_tooling.py" not in names
    source = autograder["root"] / "source"
    secret = solution_lines(all_modules(autograder["course"]))
    assert autograder_leaks(source, secret) == []
    assert [l for l in find_leaks(source, secret) if not l.file.startswith("tests/")] == []
    assert "no solution text in the zip" in " ".join(autograder["build_output"].split())


def test_setup_installs_the_extras_the_tests_need(autograder):
    source = autograder["root"] / "source"
    setup = (source / "setup.sh").read_text()
    subprocess.run(["bash", "-n", str(source / "setup.sh")], check=True)
    (install,) = [line for line in setup.splitlines() if "pip install" in line and "source" in line]
    extras = re.search(r'/source\[([^\]]*)\]"', install).group(1).split(",")
    pyproject = tomllib.loads((source / "pyproject.toml").read_text())
    assert set(extras) <= set(pyproject["project"]["optional-dependencies"])
    assert extras == extras_for(all_modules(source)) and "deploy" in extras   # module 15 needs onnxruntime
    assert f"PYTHON=python{sys.version_info.major}.{sys.version_info.minor}" in setup
    pinned = {line.split("==")[0].lower() for line in (source / "constraints.txt").read_text().split()}
    declared = {re.split(r"[<>=\[ ]", spec)[0].lower() for spec in pyproject["project"]["dependencies"]
                + [s for e in extras for s in pyproject["project"]["optional-dependencies"][e]]}
    assert pinned == declared
    assert "-c \"$ROOT/source/constraints.txt\"" in install


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_results_json_per_submission(autograder, kind):
    score, text = EXPECTED[kind]
    results = autograder["results"][kind]
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert results["score"] == pytest.approx(score)
    assert sum(t["score"] for t in results["tests"]) == pytest.approx(results["score"])
    assert sum(t["max_score"] for t in results["tests"]) == pytest.approx(46)
    assert len({t["number"] for t in results["tests"]}) == len(results["tests"])
    assert any(text in t["output"] for t in results["tests"]), [t["output"] for t in results["tests"]][:5]
    assert isinstance(results["execution_time"], int) and results["execution_time"] >= (1 if score else 0)


def test_hidden_tests_after_publishing_perf_tests_with_ratio_and_bar(autograder):
    tests = autograder["results"]["good_files"]["tests"]
    hidden_file = (autograder["course"] / "tests" / "15_quantization" / "test_15_hidden_quantization.py").read_text()
    for t in tests:
        name = t["name"].split("::", 1)[1].split("[")[0]
        expected = "after_published" if f"def {name}(" in hidden_file else "visible"
        assert t["visibility"] == expected, t
    assert {t["visibility"] for t in tests} == {"visible", "after_published"}
    (perf,) = [t for t in tests if t["name"].endswith("speed_vs_copy")]
    assert re.match(r"measured \d+\.\d\d × np\.copy; full points at most 10\.00", perf["output"]), perf
    board = autograder["results"]["good_files"]["leaderboard"]
    assert [(b["name"], b["order"]) for b in board] == [(perf["name"], "asc")]
    shown = float(re.match(r"measured (\d+\.\d\d)", perf["output"]).group(1))
    assert board[0]["value"] == pytest.approx(shown, abs=0.006)


@pytest.mark.parametrize("where", ["tests/15_quantization/_15_hidden_oracle.py", "tinyq/bench.py"])
def test_build_refuses_a_zip_with_solution_text(tmp_path, where):
    """A solution block pasted into an oracle, or two solution lines anywhere else: no zip."""
    course = copy_course(tmp_path / "course")
    shutil.copy2(REPO / "pyproject.toml", course / "pyproject.toml")
    (module,) = all_modules(course)
    if where.startswith("tests/"):
        region = max((region for _, region in solution_regions(module.source)), key=len)
        pasted = [line for line in region if line.strip() and not line.strip().startswith("#")][:6]
    else:
        pasted = list(next(iter(solution_lines(all_modules(course)).pairs)))
    assert len(pasted) >= 2
    target = course / where
    target.write_text(target.read_text() + '\n_PASTED = """\n' + "\n".join(pasted) + '\n"""\n')
    with pytest.raises(GradescopeError, match="refusing to build"):
        build(course, tmp_path / "autograder.zip", limits=Limits())
    assert not (tmp_path / "autograder.zip").exists()


def test_setup_provides_the_tools_and_data_the_tests_require(tmp_path, monkeypatch):
    """Module 20's emulator needs g++ (apt), module 22 its model (`tito data minilm`, into the image);
    a requirement that an image cannot provide stops the build with the requirement's name."""
    from tito.gradescope import _script, apt_for, fetches_for
    from tito.grading import requirements
    modules = [m for m in all_modules(REPO) if m.key in ("20_gpu_kernels", "22_llm_ptq")]
    assert apt_for(modules) == ["g++"] and fetches_for(modules) == ["data minilm"]
    setup = tmp_path / "setup.sh"
    setup.write_text(_script("setup.sh", ["llm"], apt_for(modules), fetches_for(modules)))
    subprocess.run(["bash", "-n", str(setup)], check=True)
    text = setup.read_text()
    assert 'TOOLS="g++"' in text and '"$ROOT/venv/bin/tito" data minilm' in text and "@FETCH@" not in text
    for name in ("setup.sh", "run_autograder"):   # fetched and read in the same place
        assert 'export TINYQ_DATA_DIR="$ROOT/data"' in _script(name, [], [], [])
    monkeypatch.setitem(requirements.TOOLS, "the MiniLM weights",
                        requirements.Tool("the MiniLM weights", "x:y", "hint", "what"))
    with pytest.raises(GradescopeError, match="the MiniLM weights, which an autograder image cannot provide"):
        fetches_for(modules)
