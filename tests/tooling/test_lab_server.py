"""A save in JupyterLab reaches the graded source: tried through a real Jupyter server.

A student release is served by `jupyter server` (the process `jupyter lab` runs, with the jupytext
extension the `lab` extra loads), on the loopback address only. The test does what the browser does
on Ctrl-S: GET the notebook model from the contents API, change a cell, PUT it back. The paired
`.py` must hold the edit, and `tito test` must grade it.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from _tooling import copy_course, run_tito

pytestmark = pytest.mark.slow
TOKEN = "tinyq-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Contents:
    """The Jupyter server's contents API, as the browser calls it."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}/api/contents/"

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.base + path, method=method, data=json.dumps(body).encode() if body else None,
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@pytest.fixture
def served_release(tmp_path, monkeypatch):
    pytest.importorskip("jupyter_server", reason="needs the lab extra (part of dev)")
    course = copy_course(tmp_path / "course")
    student = tmp_path / "student"
    assert run_tito(monkeypatch, course, "release", str(student)).exit_code == 0
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--port-retries=0", f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={student}", "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT)
    contents = Contents(port)
    try:
        deadline = time.time() + 60
        while True:
            try:
                contents.call("GET", "")
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.3)
        yield student, contents
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_a_save_through_the_server_updates_the_py_and_the_grade(served_release, tmp_path, monkeypatch):
    student, contents = served_release
    path = "modules/15_quantization/quantization_dev.ipynb"
    model = contents.call("GET", path + "?content=1")
    assert model["type"] == "notebook"
    cells = model["content"]["cells"]
    (cell,) = [c for c in cells if "def qrange(" in c["source"]]
    reference = (tmp_path / "course/modules/15_quantization/quantization_dev.py").read_text()
    start = reference.index("def qrange(")
    region = reference[reference.index("### BEGIN SOLUTION", start):reference.index("### END SOLUTION", start)]
    solution = "\n".join(region.splitlines()[1:]).rstrip()
    cell["source"] = cell["source"].replace("    # YOUR CODE HERE\n    raise NotImplementedError()", solution)
    contents.call("PUT", path, {"type": "notebook", "format": "json", "content": model["content"]})

    source = (student / "modules/15_quantization/quantization_dev.py").read_text()
    qrange_body = source.split("def qrange(")[1].split("\n# %%")[0]
    assert "raise NotImplementedError" not in qrange_body, "the save did not reach the .py"
    # reopening it shows the learner's code, and the grade follows the work
    reopened = contents.call("GET", path + "?content=1")
    assert any(solution.splitlines()[0] in c["source"] for c in reopened["content"]["cells"])
    out = tmp_path / "r.json"
    graded = run_tito(monkeypatch, student, "test", "15", "-k", "qrange", "--json", str(out))
    assert graded.exit_code == 0, graded.output
    (result,) = json.loads(out.read_text())["modules"]
    assert result["score"] == result["max_score"] == 3, result
