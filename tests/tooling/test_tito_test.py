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


def test_perf_rows_say_what_the_ratio_is_against(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    result = run_tito(monkeypatch, course, "test", "15", "-k", "speed")
    assert result.exit_code == 0, result.output
    assert "× np.copy (bar <= 10.00)" in result.output


def test_a_partial_run_is_not_recorded_as_the_last_score(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    partial = run_tito(monkeypatch, course, "test", "15", "-k", "qrange_known")
    assert partial.exit_code == 0 and "not recorded" in partial.output
    assert "15_quantization" not in json.loads((course / ".tito/scores.json").read_text()
                                                if (course / ".tito/scores.json").exists() else "{}")
    status = run_tito(monkeypatch, course, "status").output
    assert "2 / 2" not in status


def test_locally_a_stub_in_a_called_exercise_is_named(tmp_path, monkeypatch):
    """Without the instructor's oracles (the learner's copy), symmetric_qparams fails where qrange
    is a stub: the table says which exercise to finish first."""
    course = copy_course(tmp_path / "course")
    (course / "tests/15_quantization/_15_hidden_oracle.py").unlink()
    source = course / "modules/15_quantization/quantization_dev.py"
    from tito.source import solution_regions, strip_solutions
    index = [i for i, (ex, _) in enumerate(solution_regions(source)) if ex == "qrange"]
    source.write_text(strip_solutions(source.read_text(), only=set(index)))
    out = tmp_path / "r.json"
    result = run_tito(monkeypatch, course, "test", "15", "-k", "qrange or symmetric", "--json", str(out))
    assert result.exit_code == 0, result.output
    (module,) = json.loads(out.read_text())["modules"]
    messages = {t["name"]: t["message"] for t in module["tests"]}
    assert messages["test_qrange_known_ranges"] == "not implemented"
    assert messages["test_symmetric_scalar"] == "qrange (used by symmetric_qparams) is not implemented"


def test_a_test_needing_a_missing_package_is_left_out_of_the_maximum(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    probe = course / "tests/15_quantization/test_15_needs_probe.py"
    probe.write_text("import pytest\nimport tinyq.quantize as tq\n\n"
                     "@pytest.mark.points(4, exercise='qrange')\n@pytest.mark.requires('tinyq_absent_package')\n"
                     "def test_needs_probe():\n    import tinyq_absent_package\n")
    out = tmp_path / "r.json"
    result = run_tito(monkeypatch, course, "test", "15", "-k", "needs_probe or qrange_known", "--json", str(out))
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "needs tinyq_absent_package" in text, result.output
    assert "4 pts need tinyq_absent_package (not counted)" in text
    (module,) = json.loads(out.read_text())["modules"]
    (probe_row,) = [t for t in module["tests"] if t["name"] == "test_needs_probe"]
    assert probe_row["outcome"] == "skipped" and probe_row["points"] == 0
    assert probe_row["message"] == "needs tinyq_absent_package: pip install tinyq_absent_package"
    assert module["max_score"] == 2 and module["score"] == 2


def test_install_hints_keep_their_brackets(tmp_path, monkeypatch):
    """Rich must not read `'.[deploy]'` as markup: every optional package shows its real command."""
    import tito.commands.doctor_cmd as doctor
    monkeypatch.setattr(doctor, "_version", lambda name: None)
    result = run_tito(monkeypatch, tmp_path, "doctor")
    text = " ".join(result.output.split())
    for extra in ("deploy", "lab", "site", "llm"):
        assert f"pip install -e '.[{extra}]'" in text, extra


def test_a_wrong_answer_shows_the_call_the_expected_and_the_result(tmp_path, monkeypatch):
    course = copy_course(tmp_path / "course")
    source = course / "modules/15_quantization/quantization_dev.py"
    text = source.read_text()
    assert "    scale = scale64.astype(np.float32)\n" in text
    source.write_text(text.replace("    scale = scale64.astype(np.float32)\n",
                                   "    scale = (scale64 * 0.75).astype(np.float32)\n", 1))
    out = tmp_path / "r.json"
    assert run_tito(monkeypatch, course, "test", "15", "-k", "asymmetric_anchors", "--json", str(out)).exit_code == 0
    (module,) = json.loads(out.read_text())["modules"]
    (row,) = module["tests"]
    assert row["message"].startswith(
        "assertion failed: asymmetric_qparams(0.0, 2.55): expected (0.00999999978, 0), got (0.00749999983"), row
