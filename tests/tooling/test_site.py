"""`tito site build`: the course website, loaded in a real browser (headless Chromium).

The site is built for module 15 only (the fastest), served by `python -m http.server` and opened in
Chromium with no network but that server: the module page renders, its formulas are typeset by the
MathJax the site carries, its code shows no nbdev directive and no line runs past the edge, its plots
are PNG images that load, and no solution text is in the files or on the rendered page, while the
stubs are. Screenshots go to .artifacts/.
"""
from __future__ import annotations

import html.parser
import json
import os
import re
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
from tito.site import MARKER, MATHJAX_PATH, STYLESHEET, SiteError, load_config, page_text, site_leaks, without_directives
from _tooling import REPO, run_tito

pytestmark = pytest.mark.slow

MODULE = "15_quantization"
PAGE = "modules/15_quantization/quantization_dev.html"
ARTIFACTS = REPO / ".artifacts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio",
                  # no network but the local server: the site must work offline (a classroom, CI)
                  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
TEX_DELIMITERS = re.compile(r"\\\(|\\\[|\$\$")      # \( \[ $$: TeX that MathJax has not typeset
DIRECTIVE_LINE = re.compile(r"^\s*#\|", re.M)


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


class _Visible(html.parser.HTMLParser):
    """The text of a page a reader sees: without scripts and styles (page_text keeps them)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in ("script", "style", "template")

    def handle_endtag(self, tag):
        self.hidden -= tag in ("script", "style", "template") and self.hidden > 0

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def visible_text(markup: str) -> str:
    parser = _Visible()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


class _Resources(html.parser.HTMLParser):
    """The scripts and stylesheets a page loads: (tag, URL)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append((tag, attrs["src"]))
        elif tag == "link" and attrs.get("href") and set((attrs.get("rel") or "").lower().split()) & {
                "stylesheet", "preload", "modulepreload", "prefetch"}:
            self.urls.append((tag, attrs["href"]))


def resources(markup: str) -> list[tuple[str, str]]:
    parser = _Resources()
    parser.feed(markup)
    parser.close()
    return parser.urls


HARNESS = """<!doctype html><html><body style="margin:0"><pre id="result">pending</pre>
<iframe id="f" style="border:0;width:%(width)dpx;height:1000px"></iframe>
<script>
const frame = document.getElementById('f');
frame.addEventListener('load', async () => {   // the page and its images have loaded (or failed)
  const win = frame.contentWindow, doc = frame.contentDocument;
  let result;
  try {
    if (win.MathJax && win.MathJax.startup && win.MathJax.startup.promise) await win.MathJax.startup.promise;
    await doc.fonts.ready;
    result = (%(probe)s)(win, doc);
  } catch (err) { result = {error: String(err)}; }
  document.getElementById('result').textContent = JSON.stringify(result);
});
frame.src = 'html/%(page)s';
</script></body></html>"""


def probe_page(chromium: str, server: "Served", name: str, probe: str, width: int = 1200) -> dict:
    """Load the module page in an iframe `width` pixels wide, wait until MathJax has typeset it and
    its fonts are in, and return what the JavaScript function `probe(window, document)` returns."""
    harness = Path(server.folder) / f"{name}.html"
    harness.write_text(HARNESS % {"width": width, "probe": probe, "page": PAGE})
    markup = run_chromium(chromium, f"--window-size={width + 50},1100", "--virtual-time-budget=15000",
                          "--dump-dom", f"{server}/{name}.html")
    result = json.loads(page_text(markup.split('<pre id="result">', 1)[1].split("</pre>", 1)[0]))
    assert "error" not in result, result
    return result


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


def test_the_site_carries_its_math_renderer(built):
    """No page loads a script or stylesheet from another site: MathJax and its fonts are in _static/."""
    _, out, book = built
    assert yaml.safe_load((book / "_config.yml").read_text())["sphinx"]["config"]["mathjax_path"] == MATHJAX_PATH
    remote = []
    for page in sorted(out.rglob("*.html")):
        for tag, url in resources(page.read_text()):
            if re.match(r"^([a-z][a-z0-9+.-]*:)?//", url, re.I):
                remote.append(f"{page.relative_to(out)}: <{tag}> {url}")
    assert not remote, "pages load resources from the network:\n" + "\n".join(remote)
    module_page = (out / PAGE).read_text()
    assert len(re.findall(r'class="math notranslate nohighlight"', module_page)) >= 10, "the page has formulas"
    scripts = [url for tag, url in resources(module_page) if tag == "script" and "mathjax" in url.lower()]
    assert len(scripts) == 1 and scripts[0].split("?")[0].endswith("_static/" + MATHJAX_PATH), scripts
    assert (out / PAGE).parent.joinpath(scripts[0].split("?")[0]).resolve().is_file()
    mathjax = out / "_static" / MATHJAX_PATH
    fonts = list((mathjax.parent / "output" / "chtml" / "fonts" / "woff-v2").glob("MathJax_*.woff"))
    assert len(fonts) > 10, "MathJax's fonts come with it"


def test_directives_are_not_on_the_page(built):
    """nbdev's `#| default_exp` / `#| export` steer the export; the page shows neither (as nbdev's docs)."""
    _, out, book = built
    m = resolve(MODULE, REPO)
    source = m.source.read_text()
    assert "#| default_exp" in source and "#| export" in source, "the module has directives to hide"
    nb = json.loads((book / "modules/15_quantization/quantization_dev.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert not [src for src in code if DIRECTIVE_LINE.search(src)]
    assert all(src.strip() for src in code), "a cell that held only a directive is left out"
    assert "import numpy as np" in code, "an exported cell stays, without its directive"
    text = page_text((out / PAGE).read_text())
    assert "#|" not in text and "default_exp" not in text


def test_without_directives_rules():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_output
    cells = [new_code_cell("#| default_exp quantize"),
             new_code_cell("#| export\nimport numpy as np"),
             new_code_cell("#| exporti\n\ndef _helper():\n    return 1\n"),
             new_code_cell("#| hide\nfrom tinyq import secret_setup", outputs=[new_output("stream", text="hi")]),
             new_code_cell("x = 1  # | a comment that only looks like one\n# | col | col |"),
             new_code_cell("#|export\n    #| export\nprint(1)", outputs=[new_output("stream", text="1")]),
             new_markdown_cell("#| export is how a cell reaches the package")]
    shown = without_directives(cells)
    assert [c.source for c in shown] == ["import numpy as np", "def _helper():\n    return 1",
                                         "x = 1  # | a comment that only looks like one\n# | col | col |",
                                         "print(1)", "#| export is how a cell reaches the package"]
    assert shown[3].outputs[0].text == "1"


def test_code_stylesheet_is_on_every_page(built):
    _, out, _ = built
    css = out / "_static" / STYLESHEET
    assert css.read_text() == (REPO / "site" / STYLESHEET).read_text()
    assert re.search(r"white-space:\s*pre-wrap", css.read_text())
    for page in [out / "index.html", out / "LEARNING_PATH.html", out / PAGE]:
        links = [url for tag, url in resources(page.read_text()) if tag == "link"]
        assert any(url.split("?")[0].endswith("_static/" + STYLESHEET) for url in links), page


# ----------------------------------------------------------------------------- in the browser

def test_formulas_are_typeset(dom, built):
    """MathJax (from the site, the browser has no network) replaced every formula's TeX."""
    markup, _ = dom
    _, out, _ = built
    formulas = len(re.findall(r'class="math notranslate nohighlight"', (out / PAGE).read_text()))
    assert markup.count("<mjx-container") >= formulas >= 10, "every formula is typeset"
    shown = visible_text(markup)
    raw = TEX_DELIMITERS.findall(shown)
    assert not raw, f"{len(raw)} formula(s) still show as TeX, e.g. " + shown[shown.find(raw[0]):][:80]
    assert not DIRECTIVE_LINE.search(shown), "an nbdev directive is on the page"


@pytest.mark.parametrize("width", [1200, 480])
def test_math_fonts_load_and_code_lines_fit(chromium, server, width):
    """MathJax's fonts load from the site, and no code block hides part of a line past its right edge
    (a hidden scrollbar is no help in a screenshot or a print), on a wide and a phone-sized screen."""
    result = probe_page(chromium, server, f"fit-{width}", """(win, doc) => ({
      mathjax: win.MathJax && win.MathJax.version,
      formulas: doc.querySelectorAll('mjx-container').length,
      fonts: Array.from(doc.fonts).filter(f => /MJX/.test(f.family)).map(f => [f.family, f.status]),
      blocks: Array.from(doc.querySelectorAll('.bd-article pre')).map(p => ({
        start: p.textContent.slice(0, 60), scroll: p.scrollWidth, client: p.clientWidth,
        whiteSpace: win.getComputedStyle(p).whiteSpace}))})""", width=width)
    blocks = result["blocks"]
    assert len(blocks) >= 20 and all(b["client"] > 0 for b in blocks), blocks[:3]
    cut = [b for b in blocks if b["scroll"] > b["client"] + 1]
    assert not cut, f"{len(cut)} code block(s) run past the right edge at {width} px: {cut[:3]}"
    assert {b["whiteSpace"] for b in blocks} == {"pre-wrap"}
    assert str(result.get("mathjax")).startswith("3.") and result["formulas"] >= 10, result
    loaded = [family for family, status in result["fonts"] if status == "loaded"]
    failed = [family for family, status in result["fonts"] if status == "error"]
    assert loaded and not failed, f"MathJax fonts: {result['fonts']}"

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
    run_chromium(chromium, "--window-size=1200,2000", "--virtual-time-budget=5000", f"--screenshot={top}",
                 f"{server}/html/{PAGE}")
    # the systems analysis, seen through a frame scrolled to its heading
    frame = Path(server.folder) / "analysis.html"
    frame.write_text('<!doctype html><html><body style="margin:0"><iframe style="border:0;width:1200px;'
                     f'height:2000px" src="html/{PAGE}#systems-analysis-measured-with-your-functions"></iframe>'
                     '</body></html>')
    analysis = ARTIFACTS / "site-15_quantization-analysis.png"
    run_chromium(chromium, "--window-size=1200,2000", "--virtual-time-budget=5000", f"--screenshot={analysis}",
                 f"{server}/analysis.html")
    for shot in (top, analysis):
        width, height = png_size(shot.read_bytes())
        assert (width, height) == (1200, 2000) and shot.stat().st_size > 50_000, f"{shot} looks empty"


def test_plots_are_pngs_that_load(chromium, server, built):
    folder, out, _ = built
    result = probe_page(chromium, server, "plots", """(win, doc) => ({title: doc.title,
      images: Array.from(doc.querySelectorAll('img')).map(i => ({src: i.getAttribute('src'),
        complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))})""")
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
    monkeypatch.setattr(tito.site.importlib.util, "find_spec",
                        lambda name, *a: None if name == tito.site.MATHJAX_EXTENSION else real(name, *a))
    result = run_tito(monkeypatch, REPO, "site", "build", "--out", str(tmp_path / "out"))
    assert result.exit_code != 0 and "pip install -e '.[site]'" in result.output
    assert "sphinx-mathjax-offline is not installed" in " ".join(result.output.split())
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
