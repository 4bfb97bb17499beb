"""`tito site build`: the course website, loaded in a real browser (headless Chromium).

The site is built for module 15 only (the fastest), served by `python -m http.server` and opened in
Chromium: the module page renders, its plots are PNG images that load, and no solution text is in
the files or on the rendered page, while the stubs are. Screenshots go to .artifacts/.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tito.registry import all_modules, resolve
from tito.release import find_leaks, solution_lines
from tito.source import solution_regions
from tito.site import MARKER, SiteError, load_config, page_text, site_leaks
from _tooling import REPO, run_tito

pytestmark = pytest.mark.slow

MODULE = "15_quantization"
PAGE = "modules/15_quantization/quantization_dev.html"
ARTIFACTS = REPO / ".artifacts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio")


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`tito site build --modules 15` into a temporary folder: (folder, HTML site, generated book)."""
    tmp = tmp_path_factory.mktemp("site")
    out, book = tmp / "html", tmp / "book"
    with pytest.MonkeyPatch.context() as mp:
        result = run_tito(mp, REPO, "site", "build", "--modules", "15", "--out", str(out), "--book", str(book))
    assert result.exit_code == 0, result.output
    assert "no solution text in the site" in result.output
    return tmp, out, book


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        reason = "chromium is not installed (Debian: apt-get install chromium); the site cannot be checked in a browser"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


class Served(str):
    """The base URL of the server; `.folder` is the folder it serves."""
    folder: Path


@pytest.fixture(scope="module")
def server(built):
    """http://127.0.0.1:PORT serving the temporary folder (the site is under /html/)."""
    folder = built[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = Served(f"http://127.0.0.1:{port}")
    base.folder = folder
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{base}/html/index.html", timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("python -m http.server did not come up")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_chromium(chromium: str, *args: str, timeout: float = 60) -> str:
    """Run headless Chromium with a throwaway profile; its stdout. The whole process group is killed
    if it hangs."""
    profile = tempfile.mkdtemp(prefix="tinyq-chromium-")
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"chromium did not finish within {timeout} s: {' '.join(args)}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {stderr[-2000:]}"
    return stdout


@pytest.fixture(scope="module")
def dom(chromium, server):
    """The module page's DOM after Chromium rendered it (scripts run), and the text it shows."""
    markup = run_chromium(chromium, "--virtual-time-budget=5000", "--dump-dom", f"{server}/html/{PAGE}")
    assert "<html" in markup, markup[:500]
    return markup, page_text(markup)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    assert data[12:16] == b"IHDR", "a PNG file starts with its IHDR chunk"
    return struct.unpack(">II", data[16:24])


# ----------------------------------------------------------------------------- the build

def test_generated_book_and_site_layout(built):
    _, out, book = built
    assert (out / "index.html").exists() and (out / "LEARNING_PATH.html").exists() and (out / PAGE).exists()
    assert json.loads((out / MARKER).read_text())["modules"] == [MODULE]
    config = yaml.safe_load((book / "_config.yml").read_text())
    course = load_config(REPO)
    assert config["title"] == course["title"] and config["author"] == course["author"]
    assert config["execute"]["execute_notebooks"] == "off", "outputs come from the reference run, not jupyter-book"
    assert config["repository"]["url"] == course["repository"]["url"]
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    chapters = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert chapters == ["LEARNING_PATH", "modules/15_quantization/quantization_dev"]
    # the page's notebook: the student cells with the reference's outputs, plots included
    nb = json.loads((book / "modules/15_quantization/quantization_dev.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("raise NotImplementedError()" in src for src in code)
    assert not any("### BEGIN SOLUTION" in src or "### BEGIN HIDDEN TESTS" in src for src in code)
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    assert any("qrange: ok" in "".join(o.get("text", "")) for o in outputs), "inline test output from the reference"
    # the home page lists the published module; the launch button opens the learner's notebook
    home = (out / "index.html").read_text()
    assert "Quantization: from float32 to real int8 storage" in page_text(home)
    page = (out / PAGE).read_text()
    assert ("colab.research.google.com/github/" + course["repository"]["url"].split("github.com/")[1]
            + "/blob/" + course["repository"]["branch"] + "/modules/15_quantization/quantization_dev.ipynb") in page


def test_no_solution_text_in_the_built_site(built):
    _, out, book = built
    secrets = solution_lines(all_modules(REPO))
    assert len(secrets) > 20
    assert find_leaks(out, secrets) == []
    assert site_leaks(out, REPO)[0] == []
    assert find_leaks(book, secrets) == [], "the generated book holds no solution either"


# ----------------------------------------------------------------------------- in the browser

def test_module_page_renders_stubs_and_no_solutions(dom, chromium, server, tmp_path):
    markup, text = dom
    m = resolve(MODULE, REPO)
    assert f"Module {m.number}: Quantization" in text
    assert f"Module {m.number} at a glance" in text and m.time in text
    for objective in m.objectives:                              # from module.yaml, via the registry
        assert " ".join(objective.split()) in " ".join(text.split())
    assert text.count("raise NotImplementedError()") >= len(solution_regions(m.source)), "every stub is shown"
    assert "bits_list = list(range(2, 9))" in text, "analysis code is shown"
    secret = solution_lines([m])
    known = [line for line, exercise in secret.lines.items() if exercise.startswith(MODULE)]
    assert len(known) >= 5
    for line in known:
        assert line not in text, f"solution line on the rendered page: {line}"
    assert "if not isinstance(bits, (int, np.integer))" not in text     # the first line of qrange's solution
    (tmp_path / "page.txt").write_text(text)
    assert find_leaks(tmp_path, secret) == []                            # solution pairs too

    ARTIFACTS.mkdir(exist_ok=True)
    top = ARTIFACTS / "site-15_quantization.png"
    run_chromium(chromium, "--window-size=1200,2000", f"--screenshot={top}", f"{server}/html/{PAGE}")
    # the systems analysis, seen through a frame scrolled to its heading
    frame = Path(server.folder) / "analysis.html"
    frame.write_text('<!doctype html><html><body style="margin:0"><iframe style="border:0;width:1200px;'
                     f'height:2000px" src="html/{PAGE}#systems-analysis-measured-with-your-functions"></iframe>'
                     '</body></html>')
    analysis = ARTIFACTS / "site-15_quantization-analysis.png"
    run_chromium(chromium, "--window-size=1200,2000", f"--screenshot={analysis}", f"{server}/analysis.html")
    for shot in (top, analysis):
        width, height = png_size(shot.read_bytes())
        assert (width, height) == (1200, 2000) and shot.stat().st_size > 50_000, f"{shot} looks empty"


def test_plots_are_pngs_that_load(chromium, server, built):
    folder, out, _ = built
    harness = folder / "harness.html"
    harness.write_text("""<!doctype html><html><body><pre id="result">pending</pre><iframe id="f"></iframe>
<script>
const frame = document.getElementById('f');
frame.addEventListener('load', () => {   // fires once the page and all its images have loaded or failed
  const doc = frame.contentDocument;
  const images = Array.from(doc.querySelectorAll('img')).map(i => ({src: i.getAttribute('src'),
    complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}));
  document.getElementById('result').textContent = JSON.stringify({title: doc.title, images: images});
});
frame.src = 'html/%s';
</script></body></html>""" % PAGE)
    markup = run_chromium(chromium, "--virtual-time-budget=10000", "--dump-dom", f"{server}/harness.html")
    result = json.loads(page_text(markup.split('<pre id="result">', 1)[1].split("</pre>", 1)[0]))
    assert result["title"].startswith("Module 15")
    plots = [i for i in result["images"] if "_images/" in i["src"]]
    assert len(plots) >= 3, result
    page_url = f"{server}/html/{PAGE}"
    for img in plots:
        assert img["complete"] and img["width"] > 100 and img["height"] > 100, f"image did not load: {img}"
        url = urllib.parse.urljoin(page_url, img["src"])
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and r.headers.get_content_type() == "image/png", url
            data = r.read()
        assert png_size(data) == (img["width"], img["height"]), "the browser decoded the file that is served"
        assert (out / "modules/15_quantization" / img["src"]).resolve().is_file()


# ----------------------------------------------------------------------------- refusals

def test_site_build_refuses_solution_text(tmp_path, monkeypatch):
    """If stripping failed, solution code would reach the pages: the build must refuse to publish."""
    import tito.site
    from tito.notebooks import to_notebook
    monkeypatch.setattr(tito.site, "student_text", lambda text: text)
    monkeypatch.setattr(tito.site, "execute_reference", lambda module, timeout=600: to_notebook(module.source))
    out = tmp_path / "out"
    result = run_tito(monkeypatch, REPO, "site", "build", "--modules", "15", "--out", str(out),
                      "--book", str(tmp_path / "book"))
    assert result.exit_code != 0
    assert "refusing to publish the site" in " ".join(result.output.split())
    assert not out.exists(), "nothing is published when the check fails"
    assert not (tmp_path / "book" / "_build" / "html").exists(), "the leaking render is removed"


def test_leak_check_reads_highlighted_html(tmp_path):
    """Highlighted code is one <span> per token: the check reads the text a browser shows."""
    pygments = pytest.importorskip("pygments")
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    secret = solution_lines(all_modules(REPO))
    a, b = next(iter(secret.pairs))
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.html").write_text("<html><body>" + pygments.highlight(f"{a}\n{b}\n", PythonLexer(),
                                                                         HtmlFormatter()) + "</body></html>")
    assert find_leaks(site, secret) == [], "raw markup hides the code from a line-based check"
    leaks, _ = site_leaks(site, REPO)
    assert leaks and leaks[0].file == "page.html"


def test_clear_errors(tmp_path, monkeypatch):
    import importlib.util
    import tito.site
    real = importlib.util.find_spec
    monkeypatch.setattr(tito.site.importlib.util, "find_spec",
                        lambda name, *a: None if name == "jupyter_book" else real(name, *a))
    result = run_tito(monkeypatch, REPO, "site", "build", "--out", str(tmp_path / "out"))
    assert result.exit_code != 0 and "pip install -e '.[site]'" in result.output
    monkeypatch.undo()

    (tmp_path / "course" / "site").mkdir(parents=True)
    (tmp_path / "course" / "site" / "course.yml").write_text("titel: typo\n")
    with pytest.raises(SiteError, match="unknown setting"):
        load_config(tmp_path / "course")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    result = run_tito(monkeypatch, REPO, "site", "build", "--out", str(occupied), "--book", str(tmp_path / "b"))
    assert result.exit_code != 0 and "not written by `tito site build`" in " ".join(result.output.split())
    assert (occupied / "notes.txt").read_text() == "mine"
