"""`tito test`: the JSON schema, stale exports, exit codes, and grading only the tree it runs in."""
import json
import os
import subprocess
import sys

from _tooling import copy_course, run_tito


def test_json_schema_and_exit_code(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    out = tmp_path / "r.json"
    result = run_tito(monkeypatch, course, "test", "15", "-k", "qrange or perf", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert list(data) == ["modules"]
    (module,) = data["modules"]
    assert module["module"] == "15_quantization"
    assert set(module) == {"module", "score", "max_score", "tests"}
    assert module["score"] == module["max_score"] > 0
    perf = [t for t in module["tests"] if "measured" in t]
    plain = [t for t in module["tests"] if "measured" not in t]
    assert perf and plain
    for t in plain:
        assert set(t) == {"name", "points", "max_points", "outcome", "message"}
        assert t["outcome"] in {"passed", "failed", "error", "skipped"}
    for t in perf:
        assert set(t) == {"name", "points", "max_points", "outcome", "message", "measured", "bar"}
        assert isinstance(t["measured"], float) and t["bar"] == 10.0


def test_stale_export_is_detected_and_never_graded_silently(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    source = course / "modules" / "15_quantization" / "quantization_dev.py"
    source.write_text(source.read_text().replace("    return qmin, qmax\n", "    return qmin, qmax + 1\n"))
    status = run_tito(monkeypatch, course, "status")
    assert "stale: run tito export" in status.output
    refused = run_tito(monkeypatch, course, "test", "15", "--no-export")
    assert refused.exit_code != 0 and "out of date" in " ".join(refused.output.split())
    graded = run_tito(monkeypatch, course, "test", "15", "-k", "qrange_known")
    assert graded.exit_code == 0 and "re-exported 15_quantization" in graded.output
    assert "0 / 2" in graded.output          # the changed source is what got graded
    assert "stale: run tito export" not in run_tito(monkeypatch, course, "status").output


def test_grades_the_tree_it_runs_in_not_another_copy(tmp_path):
    """A `tinyq` elsewhere on PYTHONPATH must not be graded in place of the tree's own."""
    course = copy_course(tmp_path / "course")
    impostor = tmp_path / "impostor"
    (impostor / "tinyq").mkdir(parents=True)
    (impostor / "tinyq" / "__init__.py").write_text("")
    env = dict(os.environ, PYTHONPATH=str(impostor))
    code = ("import sys; sys.path.insert(0, %r); from tito.grading.runner import run_pytest; from pathlib import Path;"
            "run_pytest([Path('tests/15_quantization')], Path('.').resolve(), capture=True)") % str(impostor)
    proc = subprocess.run([sys.executable, "-c", code], cwd=course, env=env, capture_output=True, text=True)
    # the grading environment puts the tree first, so its own tinyq is imported and grading runs
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tito.grading.plugin", "--noconftest", "-q",
         str(course / "tests" / "15_quantization"), "-k", "qrange_known"],
        cwd=tmp_path, env=dict(env, TINYQ_EXPECT_ROOT=str(course), PYTHONPATH=f"{impostor}:{course}"),
        capture_output=True, text=True)
    assert check.returncode != 0 and "not from the tree being graded" in check.stdout + check.stderr


def test_unknown_module_is_a_clear_error(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    result = run_tito(monkeypatch, course, "test", "99")
    assert result.exit_code == 2 and "no module named '99'" in result.output


def test_gpu_tests_are_reported_as_needing_a_gpu_not_passed(tmp_path, monkeypatch):
    from tito.grading.plugin import gpu_unusable_reason
    if gpu_unusable_reason() is None:
        import pytest
        pytest.skip("this machine has a usable CUDA device; the no-GPU path cannot be observed here")
    course = copy_course(tmp_path / "course")
    extra = course / "tests" / "15_quantization" / "test_15_gpu_probe.py"
    extra.write_text("import pytest\nimport tinyq.quantize as tq\n\n"
                     "@pytest.mark.points(5, exercise='qrange')\n"
                     "def test_on_gpu(gpu):\n    assert tq.qrange(8) == (-128, 127)\n")
    out = tmp_path / "r.json"
    result = run_tito(monkeypatch, course, "test", "15", "-k", "on_gpu or qrange_known", "--json", str(out))
    assert result.exit_code == 0
    assert "needs GPU" in result.output and "5 pts need a GPU" in " ".join(result.output.split())
    (module,) = json.loads(out.read_text())["modules"]
    (probe,) = [t for t in module["tests"] if t["name"] == "test_on_gpu"]
    assert probe["outcome"] == "skipped" and probe["message"].startswith("needs GPU") and probe["points"] == 0
    assert module["max_score"] == 2, "GPU points are not counted where no GPU can run them"
