"""`tito release --classroom`: GitHub Classroom's autograding workflow in the student release.

The workflow is parsed and checked against the inputs of the actions it uses; each grading step's
command is run as the command grader runs it (a shell, PATH and HOME only) in a fresh clone of the
release, on the learner's stubs (a failing exit: 0 points) and on a finished module (exit 0: its
max-score). The install step is checked against pyproject.toml, not run (too slow for the suite).
"""
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

from tito.registry import all_modules
from tito.release import CLASSROOM_WORKFLOW, MANIFEST, find_leaks, release, solution_lines
from _tooling import REPO, copy_course

SOURCE = "modules/15_quantization/quantization_dev.py"
GRADER = "classroom-resources/autograding-command-grader@v1"
REPORTER = "classroom-resources/autograding-grading-reporter@v1"
GRADER_INPUTS = {"test-name", "setup-command", "command", "timeout", "max-score"}   # the action's inputs


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=tinyq", "-c", "user.email=tinyq@example.org", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    base = tmp_path_factory.mktemp("classroom")
    course = copy_course(base / "course")
    shutil.copy2(REPO / "pyproject.toml", course / "pyproject.toml")
    out = base / "release"
    release(course, out, classroom=True)
    _git("init", "-q", cwd=out)
    _git("add", "-A", cwd=out)          # the learner's repository, as GitHub Classroom creates it
    _git("commit", "-q", "-m", "release", cwd=out)
    clone = base / "clone"
    _git("clone", "-q", str(out), str(clone), cwd=base)
    shim = base / "bin"
    shim.mkdir()                         # `tito` as `pip install -e .` in the clone would install it
    (shim / "tito").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tito.cli "$@"\n')
    (shim / "tito").chmod(0o755)
    workflow = yaml.safe_load((out / CLASSROOM_WORKFLOW).read_text())
    return dict(course=course, out=out, clone=clone, shim=shim, workflow=workflow)


def _steps(workflow):
    (job,) = workflow["jobs"].values()
    return job["steps"]


def _grading_steps(workflow):
    return [s for s in _steps(workflow) if s.get("uses") == GRADER]


def _run_step(step, classroom):
    env = {"PATH": f"{classroom['shim']}{os.pathsep}/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(["bash", "-c", step["with"]["command"]], cwd=classroom["clone"], env=env,
                          capture_output=True, text=True, timeout=300)


def test_workflow_runs_on_push_with_one_grading_step_per_module(classroom):
    workflow = classroom["workflow"]
    assert "push" in workflow["on"]
    steps = _steps(workflow)
    assert steps[0]["uses"].startswith("actions/checkout@")
    graders = _grading_steps(workflow)
    assert [s["with"]["test-name"] for s in graders] == [m.key for m in all_modules(classroom["out"])]
    for step in graders:
        assert set(step["with"]) <= GRADER_INPUTS and {"test-name", "command"} <= set(step["with"])
        assert re.fullmatch(r"tito test \d\d --require-pass", step["with"]["command"]), step
        assert 0 < step["with"]["max-score"] < 46          # the public tests only: hidden ones are not shipped
    (reporter,) = [s for s in steps if s.get("uses") == REPORTER]
    assert steps[-1] is reporter
    ids = [s["id"] for s in graders]
    assert reporter["with"]["runners"].split(",") == ids
    # the reporter reads each runner's result from <ID in capitals>_RESULTS
    assert reporter["env"] == {f"{i.upper()}_RESULTS": f"${{{{steps.{i}.outputs.result}}}}" for i in ids}


def test_install_step_installs_the_project_with_extras_it_declares(classroom):
    (install,) = [s["run"] for s in _steps(classroom["workflow"]) if "pip install" in s.get("run", "")]
    target = re.search(r'pip install -e "([^"]+)"', install).group(1)
    extras = re.fullmatch(r"\.(?:\[([a-z,]+)\])?", target).group(1)
    declared = tomllib.loads((classroom["out"] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set((extras or "").split(",")) - {""} <= set(declared)
    version = str(_steps(classroom["workflow"])[1]["with"]["python-version"])
    assert version == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_each_grading_step_in_a_fresh_clone_awards_nothing_then_everything(classroom):
    (step,) = _grading_steps(classroom["workflow"])
    stubs = _run_step(step, classroom)
    assert stubs.returncode != 0, stubs.stdout[-2000:]             # the command grader awards 0
    assert "not every graded test passed" in " ".join(stubs.stderr.split())
    (classroom["clone"] / SOURCE).write_text((classroom["course"] / SOURCE).read_text())   # the learner finished
    done = _run_step(step, classroom)
    points = step["with"]["max-score"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]   # awarded max-score
    assert f"15_quantization: {points:g} / {points:g}" in done.stdout       # ... which is tito test's maximum


def test_workflow_is_in_the_release_and_leaks_nothing(classroom, tmp_path):
    out = classroom["out"]
    assert CLASSROOM_WORKFLOW in (out / MANIFEST).read_text()
    assert find_leaks(out, solution_lines(all_modules(classroom["course"]))) == []
    plain = tmp_path / "plain"
    release(classroom["course"], plain)
    assert not (plain / ".github").exists(), "only --classroom adds the workflow"
