"""A learner's work is never lost: the .py/.ipynb pair is synchronised as `jupytext --sync` does it,
and `export`, `test`, `notebooks` and `lab` all go through that synchronisation.

- an edit made in the notebook only (Colab, VS Code, Jupyter without jupytext) reaches the grade;
- an edit made in the source only reaches the notebook;
- both edited since the last sync is a conflict: reported, nothing overwritten, resolved on request;
- whatever is replaced is backed up first under .tito/backups/.
"""
from __future__ import annotations

import json
import os
import sys

import nbformat
import pytest

from tito.notebooks import notebook_path, pair_state, sync
from tito.registry import resolve
from _tooling import copy_course, run_tito

STUB = "    # YOUR CODE HERE\n    raise NotImplementedError()"


def _released(tmp_path, monkeypatch):
    """A student release of module 15 (stubs, paired notebooks) and its module."""
    course = copy_course(tmp_path / "course")
    student = tmp_path / "student"
    assert run_tito(monkeypatch, course, "release", str(student)).exit_code == 0
    return student, resolve("15", student)


def _solution_of_qrange(course_module_source) -> str:
    text = course_module_source.read_text()
    start = text.index("def qrange(")
    region = text[text.index("### BEGIN SOLUTION", start):text.index("### END SOLUTION", start)]
    return "\n".join(region.splitlines()[1:]).rstrip()


def _edit_notebook_cell(nb_path, needle, old, new):
    nb = nbformat.read(nb_path, as_version=4)
    (cell,) = [c for c in nb.cells if needle in c.source]
    assert old in cell.source
    cell.source = cell.source.replace(old, new, 1)
    nbformat.write(nb, nb_path)


def _backups(root):
    return sorted(p for p in (root / ".tito" / "backups").rglob("*") if p.is_file())


def test_colab_round_trip_edit_the_notebook_only_and_the_grade_follows(tmp_path, monkeypatch):
    student, module = _released(tmp_path, monkeypatch)
    nb = notebook_path(module)
    solution = _solution_of_qrange(tmp_path / "course/modules/15_quantization/quantization_dev.py")
    before = module.source.read_text()
    zero = run_tito(monkeypatch, student, "test", "15", "-k", "qrange")
    assert "0 / 3" in zero.output or "15_quantization: 0 /" in zero.output, zero.output

    # the learner implements qrange in Colab and brings the .ipynb back
    _edit_notebook_cell(nb, "def qrange(", STUB, solution)
    assert pair_state(module) == "notebook changed"
    assert "notebook edited" in run_tito(monkeypatch, student, "status").output

    graded = run_tito(monkeypatch, student, "test", "15", "-k", "qrange", "--json", str(tmp_path / "r.json"))
    assert graded.exit_code == 0, graded.output
    assert "took the edits in modules/15_quantization/quantization_dev.ipynb" in " ".join(graded.output.split())
    (result,) = json.loads((tmp_path / "r.json").read_text())["modules"]
    assert result["score"] == result["max_score"] == 3, result
    assert "raise NotImplementedError" not in module.source.read_text().split("def qrange(")[1].split("def ")[0]
    # the stub .py that was replaced is kept
    (backup,) = [p for p in _backups(student) if p.name == "quantization_dev.py"]
    assert backup.read_text() == before


def test_a_source_edit_updates_the_notebook_and_keeps_its_outputs(tmp_path, monkeypatch):
    student, module = _released(tmp_path, monkeypatch)
    nb_path = notebook_path(module)
    nb = nbformat.read(nb_path, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="an output the learner ran\n")]
    nbformat.write(nb, nb_path)
    sync(module)                                         # outputs only: still in sync, nothing to do
    module.source.write_text(module.source.read_text().replace("def qrange(", "def qrange(  ", 1))
    result = run_tito(monkeypatch, student, "notebooks", "15")
    assert result.exit_code == 0, result.output
    after = nbformat.read(nb_path, as_version=4)
    assert any("def qrange(  " in c.source for c in after.cells)
    assert any(o.get("text") == "an output the learner ran\n" for c in after.cells if c.cell_type == "code"
               for o in c.get("outputs", [])), "the notebook's outputs survive the update"
    assert [p.name for p in _backups(student)] == ["quantization_dev.ipynb"]


def test_notebooks_never_overwrites_a_notebook_edit(tmp_path, monkeypatch):
    student, module = _released(tmp_path, monkeypatch)
    _edit_notebook_cell(notebook_path(module), "def qrange(", STUB, "    return (-1, 1)  # mine")
    for command in (["notebooks", "15"], ["export", "15"]):
        assert run_tito(monkeypatch, student, *command).exit_code == 0
        assert "return (-1, 1)  # mine" in notebook_path(module).read_text()
        assert "return (-1, 1)  # mine" in module.source.read_text()


def test_both_sides_edited_is_a_conflict_that_changes_nothing(tmp_path, monkeypatch):
    student, module = _released(tmp_path, monkeypatch)
    nb_path = notebook_path(module)
    _edit_notebook_cell(nb_path, "def qrange(", STUB, "    return (-1, 1)  # notebook side")
    module.source.write_text(module.source.read_text().replace(STUB, "    return (-2, 2)  # py side", 1))
    py_before, nb_before = module.source.read_bytes(), nb_path.read_bytes()
    for command in (["export", "15"], ["test", "15", "-k", "qrange"], ["notebooks", "15"]):
        result = run_tito(monkeypatch, student, *command)
        text = " ".join(result.output.split())
        assert result.exit_code == 2, (command, result.output)
        assert "changed since they were last synchronised" in text and "--keep ipynb" in text
        assert module.source.read_bytes() == py_before and nb_path.read_bytes() == nb_before
    assert "both edited" in run_tito(monkeypatch, student, "status").output
    # the learner chooses: the notebook wins, the .py is backed up first
    resolved = run_tito(monkeypatch, student, "notebooks", "15", "--keep", "ipynb")
    assert resolved.exit_code == 0, resolved.output
    assert "# notebook side" in module.source.read_text()
    (backup,) = _backups(student)
    assert backup.read_bytes() == py_before


def test_lab_checks_for_jupyterlab_before_touching_anything(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jupyterlab" else real(name, *a))
    result = run_tito(monkeypatch, course, "lab")
    assert result.exit_code == 2
    assert "pip install -e '.[lab]'" in " ".join(result.output.split())     # brackets shown, not eaten
    assert not list((course / "modules").rglob("*.ipynb")), "no notebook written when lab cannot start"


def test_lab_starts_paired_and_as_root_allows_root(tmp_path, monkeypatch):
    pytest.importorskip("jupyterlab", reason="the lab extra is part of the dev extra")
    course = copy_course(tmp_path / "course")
    started = {}

    def fake_execv(path, args):
        started["args"] = args
        raise SystemExit(0)
    monkeypatch.setattr(os, "execv", fake_execv)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    result = run_tito(monkeypatch, course, "lab")
    assert result.exit_code == 0, result.output
    args = started["args"]
    assert args[:4] == [sys.executable, "-m", "jupyter", "lab"] and "--allow-root" in args
    assert f"--ServerApp.root_dir={course}" in args          # jupytext.toml at the root is in view
    assert (course / "modules/15_quantization/quantization_dev.ipynb").exists()
