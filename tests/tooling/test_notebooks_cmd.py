"""`tito notebooks` pairs .ipynb with the .py source without losing nbgrader metadata; `tito doctor` runs."""
import jupytext
import nbformat

from _tooling import copy_course, run_tito


def test_paired_notebook_keeps_nbgrader_metadata_and_round_trips(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    result = run_tito(monkeypatch, course, "notebooks", "15")
    assert result.exit_code == 0, result.output
    source = course / "modules/15_quantization/quantization_dev.py"
    nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert {c.metadata["nbgrader"]["grade_id"] for c in graded} >= {"qrange", "quantize", "quantized_tensor"}
    assert all(c.metadata["nbgrader"]["schema_version"] == 3 for c in graded)
    # what Jupyter saves back to the .py side is the same source, cell for cell
    back = jupytext.writes(nb, fmt="py:percent")
    original = jupytext.reads(source.read_text(), fmt="py:percent")
    assert [c.source for c in jupytext.reads(back, fmt="py:percent").cells] == [c.source for c in original.cells]


def test_doctor_reports_libraries_and_gpu(tmp_path, monkeypatch):
    result = run_tito(monkeypatch, tmp_path, "doctor")
    assert result.exit_code == 0
    for word in ("numpy", "numba", "jupytext", "CUDA device"):
        assert word in result.output
