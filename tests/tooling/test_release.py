"""`tito release`: the student flavour scores 0 everywhere, leaks nothing, never eats a learner's work,
and reads as the learner's own copy (its README, .gitignore, notebooks and `tito --help`)."""
import json
import re
import shutil
import subprocess
import sys

import pytest

from tito.registry import all_modules
from tito.release import MANIFEST, find_leaks, solution_lines
from tito.grading.runner import run_pytest, score_modules
from _tooling import REPO, copy_course, run_tito


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The student flavour of this whole repository."""
    out = tmp_path_factory.mktemp("release") / "student"
    from tito.release import release
    release(REPO, out)
    return out


def test_release_layout(released):
    assert (released / MANIFEST).exists()
    for m in all_modules(released):
        assert m.source.exists() and m.source.with_suffix(".ipynb").exists() and m.target.exists()
        assert not list(m.tests_dir.glob("*_hidden*")), "hidden tests must not ship"
        text = m.source.read_text()
        assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
        assert "raise NotImplementedError()" in text
    assert not (released / "tests" / "tooling").exists() and not (released / ".ci").exists()


def test_release_reads_as_the_learners_copy(released):
    readme = (released / "README.md").read_text()
    assert 'pip install -e ".[lab]"' in readme and "tito test 15" in readme and "Which score counts" in readme
    for instructor_text in ("tests/tooling", "tito grade", "tito release", "instructor flavour", "site/"):
        assert instructor_text not in readme, instructor_text
    assert not (released / "docs").exists(), "instructor documentation stays with the instructor"
    assert ".venv/" in (released / ".gitignore").read_text().splitlines()
    # jupytext pairs every module source with its notebook, in the config and in each file
    assert 'formats = "ipynb,py:percent"' in (released / "jupytext.toml").read_text()
    for m in all_modules(released):
        assert "formats: ipynb,py:percent" in m.source.read_text().split("# ---")[1]
        assert "Running the whole notebook stops with `NotImplementedError`" in m.source.read_text()
    # a learner's tito offers a learner's commands
    help_text = subprocess.run([sys.executable, "-m", "tito.cli", "--help"], cwd=released, capture_output=True,
                               text=True, env={"PYTHONPATH": str(released), "PATH": "/usr/bin:/bin",
                                               "COLUMNS": "120"}).stdout
    commands = set(re.findall(r"^│ ([a-z]+) ", help_text, re.M))
    assert commands == {"export", "test", "status", "notebooks", "lab", "doctor", "data"}, help_text


def test_no_solution_text_anywhere_in_the_release(released):
    secret = solution_lines(all_modules(REPO))
    assert len(secret) > 20      # the check has something to look for
    assert find_leaks(released, secret) == []


def test_leak_check_catches_a_leak(tmp_path):
    course = copy_course(tmp_path / "course")
    secret = solution_lines(all_modules(course))
    (a, b) = next(iter(secret.pairs))          # two consecutive solution lines pasted into support code
    bench = course / "tinyq" / "bench.py"
    bench.write_text(bench.read_text() + f"\nif False:\n    {a}\n    {b}\n")
    result = run_tito(pytest.MonkeyPatch(), course, "release", str(tmp_path / "out"))
    assert result.exit_code != 0 and "refusing to release" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists(), "nothing is written when the check fails"


def test_student_flavour_scores_zero_on_every_graded_test(released):
    """The instructor's full tests (hidden ones included) against the student package: all zero."""
    modules = all_modules(REPO)
    dirs = [m.tests_dir for m in modules if m.tests_dir.is_dir()]
    records, _, output = run_pytest(dirs, released, capture=True, extra=["-p", "no:randomly"])
    graded = [r for r in records if r.kind == "test"]
    assert len(graded) >= 20, output[-2000:]
    scored = [r for r in graded if r.points > 0]
    assert not scored, f"tests that give points to stubs: {[r.name for r in scored]}"
    for r in graded:
        if r.outcome == "skipped":
            assert r.needs_gpu, f"{r.name} skipped without needing a GPU: {r.message}"
        else:
            assert r.outcome in ("failed", "error")
            assert r.message == "not implemented", f"{r.module}::{r.name} failed for another reason: {r.message}"
    for result in score_modules(modules, records):
        assert result.score == 0


def test_released_module_15_with_solutions_back_gets_full_marks(released, tmp_path, monkeypatch):
    student = tmp_path / "student"
    shutil.copytree(released, student)
    zero = run_tito(monkeypatch, student, "test", "15", "--json", str(tmp_path / "zero.json"))
    assert zero.exit_code == 0
    (before,) = json.loads((tmp_path / "zero.json").read_text())["modules"]
    assert before["score"] == 0
    # without the instructor's oracles a test of one exercise may stop in another's stub: it says so
    for t in before["tests"]:
        assert t["message"] == "not implemented" or t["message"].endswith(") is not implemented"), t
    shutil.copy(REPO / "modules/15_quantization/quantization_dev.py", student / "modules/15_quantization/")
    full = run_tito(monkeypatch, student, "test", "15", "--json", str(tmp_path / "full.json"))
    (after,) = json.loads((tmp_path / "full.json").read_text())["modules"]
    assert after["score"] == after["max_score"] > 0, full.output


def test_release_refuses_to_overwrite_a_learners_work(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    out = tmp_path / "out"
    assert run_tito(monkeypatch, course, "release", str(out)).exit_code == 0
    assert run_tito(monkeypatch, course, "release", str(out)).exit_code == 0, "an untouched release may be redone"
    work = out / "modules/15_quantization/quantization_dev.py"
    work.write_text(work.read_text() + "\n# my answers\n")
    refused = run_tito(monkeypatch, course, "release", str(out))
    assert refused.exit_code != 0 and "--force" in refused.output
    assert work.read_text().endswith("# my answers\n")
    forced = run_tito(monkeypatch, course, "release", str(out), "--force")
    assert forced.exit_code == 0
    backups = list(tmp_path.glob("out.backup-*"))
    assert len(backups) == 1
    assert (backups[0] / "modules/15_quantization/quantization_dev.py").read_text().endswith("# my answers\n")
    assert not work.read_text().endswith("# my answers\n")


def test_release_refusal_names_the_learners_files_not_their_environment(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    out = tmp_path / "out"
    assert run_tito(monkeypatch, course, "release", str(out)).exit_code == 0
    for i in range(300):                                   # a virtual environment and caches: not work
        (out / ".venv" / "lib" / f"pkg{i}").mkdir(parents=True)
        (out / ".venv" / "lib" / f"pkg{i}" / "mod.py").write_text("")
    (out / "tinyq" / "__pycache__").mkdir(exist_ok=True)
    (out / "tinyq" / "__pycache__" / "x.pyc").write_bytes(b"")
    assert run_tito(monkeypatch, course, "release", str(out)).exit_code == 0, "caches are not a learner's work"
    assert (out / ".venv/lib/pkg0/mod.py").exists(), "redoing a release keeps the learner's environment"
    work = out / "modules/15_quantization/quantization_dev.py"
    work.write_text(work.read_text() + "\n# my answers\n")
    for i in range(300):
        (out / ".venv" / "lib" / f"pkg{i}" / "mod.py").write_text("changed")
    refused = run_tito(monkeypatch, course, "release", str(out))
    text = " ".join(refused.output.split())
    assert refused.exit_code == 2
    assert "modules/15_quantization/quantization_dev.py" in text and ".venv" not in text, text
    assert "((" not in text and "--force" in text


def test_release_onto_a_file_is_a_clear_error(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    target = tmp_path / "not_a_folder"
    target.write_text("keep me")
    result = run_tito(monkeypatch, course, "release", str(target))
    assert result.exit_code == 2 and "is a file, not a folder" in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert target.read_text() == "keep me"
