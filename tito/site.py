"""The course website: a Jupyter Book 1.x built from the module registry and the student flavour.

Each module page is the student notebook (solutions stripped, hidden tests removed) carrying the
outputs of executing the reference notebook, so learners see every table and plot but never the
solution code. The book's _config.yml and _toc.yml are generated from site/course.yml (the one
instructor configuration file) and modules/*/module.yaml; jupyter-book renders it with execution
off; the rendered site goes through the release's leak check (on its files and on the text its
HTML pages show) before it is put in place.

The site needs no network to be read: MathJax comes with it (sphinx-mathjax-offline copies MathJax 3
and its fonts into _static/), nbdev's `#|` directives are taken out of the code cells (as nbdev's own
documentation does), and site/tinyq.css (long code lines wrap instead of running past the edge) is
added to every page.
"""
from __future__ import annotations

import html.parser
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbclient
import nbformat
import yaml

from .errors import TitoError
from .files import install_folder
from .notebooks import to_notebook
from .registry import Module, all_modules, resolve
from .release import Leak, find_leaks, solution_lines
from .source import BEGIN_HIDDEN, BEGIN_SOLUTION, DIRECTIVE, student_text

CONFIG = Path("site") / "course.yml"
DEFAULT_OUT = Path("site") / "_build" / "html"
DEFAULT_BOOK = Path("site") / "_generated"
MARKER = ".tinyq-site.json"            # written into every site this module builds
MODULES_PLACEHOLDER = "<!-- tito:modules -->"
INSTALL_HINT = "pip install -e '.[site]'"
MATHJAX_EXTENSION = "sphinx-mathjax-offline"   # a Sphinx extension that copies MathJax 3 into the site
MATHJAX_PATH = "mathjax/tex-chtml.js"          # where that copy is, relative to the site's _static/
STYLESHEET = "tinyq.css"                        # site/tinyq.css, added to every page when present
NBDEV_DIRECTIVE = re.compile(r"^\s*#\|")        # nbdev/Quarto cell options: `#| export`, `#| hide`, ...
NBDEV_HIDE = re.compile(r"^\s*#\|\s*hide\s*$")   # the cell is left out of the page, output and all
COLAB_URL = "https://colab.research.google.com"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
DEFAULTS = {
    "title": "tinyq", "author": "", "copyright": "", "description": "", "logo": "", "announcement": "",
    "repository": {"url": "", "branch": "main"},
    "launch": {"colab": True, "binderhub_url": "", "jupyterhub_url": "", "notebook_interface": "jupyterlab"},
    "home": "index.md", "pages": ["LEARNING_PATH.md"], "modules": "all",
}


class SiteError(TitoError):
    """The site cannot be built (bad configuration, a failing notebook, jupyter-book, a leak)."""


@dataclass
class SiteResult:
    out: Path                              # the HTML site (open out/index.html)
    book: Path                             # the generated Jupyter Book it was rendered from
    modules: list[Module]
    pages: dict[str, Path]                 # module key -> its HTML page
    checked: int                           # how many secret lines and pairs the leak check looked for
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)      # what Sphinx warned about


# ----------------------------------------------------------------------------- configuration

def load_config(root: Path) -> dict:
    """site/course.yml merged over the defaults, with its keys checked."""
    path = root / CONFIG
    if not path.exists():
        raise SiteError(f"{CONFIG} not found in {root}: it holds the course title, author and repository URL")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SiteError(f"{CONFIG}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SiteError(f"{CONFIG}: expected a mapping of settings")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise SiteError(f"{CONFIG}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(DEFAULTS)})")
    config = {}
    for key, default in DEFAULTS.items():
        value = data.get(key, default)
        if isinstance(default, dict):
            value = value or {}
            if not isinstance(value, dict) or set(value) - set(default):
                raise SiteError(f"{CONFIG}: '{key}' takes the keys {', '.join(default)}")
            value = {**default, **value}
        config[key] = value
    if not isinstance(config["pages"], list):
        raise SiteError(f"{CONFIG}: 'pages' is a list of files relative to the course root")
    for page in [config["home"], *config["pages"]]:
        if not str(page).endswith((".md", ".ipynb")):
            raise SiteError(f"{CONFIG}: page {page!r} is neither Markdown nor a notebook")
    if config["launch"]["notebook_interface"] not in ("classic", "jupyterlab"):
        raise SiteError(f"{CONFIG}: launch.notebook_interface is classic or jupyterlab")
    return config


def selected_modules(root: Path, config: dict, names: list[str] | None) -> list[Module]:
    """The modules to publish: those named on the command line, else the configuration's choice."""
    wanted = names if names else config["modules"]
    if wanted in ("all", None):
        return all_modules(root)
    if not isinstance(wanted, list):
        raise SiteError(f"{CONFIG}: 'modules' is all or a list of modules such as [15, 16]")
    chosen = {resolve(str(n), root).key for n in wanted}
    return [m for m in all_modules(root) if m.key in chosen]


def jupyter_book_command() -> list[str]:
    """How to run jupyter-book 1.x with this interpreter; a SiteError that says how to install it."""
    if importlib.util.find_spec("jupyter_book") is None:
        raise SiteError(f"jupyter-book is not installed: {INSTALL_HINT} (Jupyter Book 1.x)")
    version = importlib.metadata.version("jupyter-book")
    if not version.startswith("1."):
        raise SiteError(f"jupyter-book {version} is installed; the site needs 1.x (2.x fetches its theme "
                        f"from the network at build time): {INSTALL_HINT}")
    if importlib.util.find_spec(MATHJAX_EXTENSION) is None:
        raise SiteError(f"{MATHJAX_EXTENSION} is not installed (it bundles MathJax, so formulas typeset "
                        f"with no network): {INSTALL_HINT}")
    # the package has no __main__; call its click entry point with this interpreter
    return [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())"]


# ----------------------------------------------------------------------------- module pages

def execute_reference(module: Module, timeout: int = 600) -> nbformat.NotebookNode:
    """The instructor notebook of `module`, executed top to bottom in its folder (inline plots),
    importing the tinyq package of the course tree the module belongs to."""
    nb = to_notebook(module.source)
    env = dict(os.environ, MPLBACKEND=INLINE_BACKEND)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(module.root), env.get("PYTHONPATH", "")) if p)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(module.dir)}})
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as exc:
        raise SiteError(f"{module.rel(module.source)}: the reference notebook fails, so its page would "
                        f"have no outputs:\n{str(exc)[-3000:]}") from exc
    except (nbclient.exceptions.CellTimeoutError, nbclient.exceptions.DeadKernelError) as exc:
        raise SiteError(f"{module.rel(module.source)}: the reference notebook did not finish: {exc}") from exc
    return nb


def _page_name(module: Module) -> str:
    """The page's path in the book, without suffix: the path of the notebook in the student flavour,
    so that launch buttons (Colab, Binder) open the learner's notebook in the published repository."""
    return module.source.with_suffix("").relative_to(module.root).as_posix()


def _link(module: Module, published: dict[str, Module], here: Module | None, numbered: bool = True) -> str:
    """A Markdown link to a module's page when it is published, else its name."""
    label = f"{module.number} · {module.title}" if numbered else module.title
    if module.key not in published:
        return label
    target = Path(_page_name(module) + ".ipynb")
    start = Path(_page_name(here)).parent if here else Path(".")
    return f"[{label}]({Path(os.path.relpath(target, start)).as_posix()})"


def _prerequisites(module: Module, published: dict[str, Module], registry: dict[str, Module]) -> str:
    if not module.prerequisites:
        return "none"
    names = []
    for key in module.prerequisites:
        names.append(_link(registry[key], published, module) if key in registry else key)
    return ", ".join(names)


def about_cell(module: Module, published: dict[str, Module], registry: dict[str, Module]) -> str:
    """The Markdown box at the top of a module page: objectives, time and prerequisites (module.yaml)."""
    lines = [f"```{{admonition}} Module {module.number} at a glance", ":class: tip", "",
             f"**Time:** {module.time or 'not given'} · "
             f"**Prerequisites:** {_prerequisites(module, published, registry)} · "
             f"**Graded:** {module.points:g} points (`tito test {module.number}`)", ""]
    if module.objectives:
        lines.append("**Objectives**")
        lines.append("")
        lines.extend(f"- {objective}" for objective in module.objectives)
    lines.append("```")
    return "\n".join(lines)


def _is_directive(line: str) -> bool:
    return bool(DIRECTIVE.match(line) or NBDEV_DIRECTIVE.match(line))


def without_directives(cells: list) -> list:
    """The cells as nbdev's documentation shows them: `#|` directive lines taken out of code cells,
    a cell holding nothing else left out, and a cell marked `#| hide` left out with its output.
    The directives steer `tito export`; on a page they are noise."""
    shown = []
    for cell in cells:
        if cell.cell_type != "code":
            shown.append(cell)
            continue
        lines = cell.source.splitlines()
        directives = [line for line in lines if _is_directive(line)]
        if not directives:
            shown.append(cell)
            continue
        if any(NBDEV_HIDE.match(line) for line in directives):
            continue
        code = "\n".join(line for line in lines if not _is_directive(line)).strip("\n")
        if not code.strip() and not cell.get("outputs"):
            continue
        cell.source = code
        shown.append(cell)
    return shown


def module_page(module: Module, executed: nbformat.NotebookNode, about: str) -> nbformat.NotebookNode:
    """The student notebook of `module` with the outputs of the executed reference notebook, its
    nbdev directives taken out."""
    page = to_notebook(module.source, text=student_text(module.source.read_text()))
    if [c.cell_type for c in page.cells] != [c.cell_type for c in executed.cells]:
        raise SiteError(f"{module.rel(module.source)}: the student and reference notebooks do not have the "
                        f"same cells ({len(page.cells)} and {len(executed.cells)}), so outputs cannot be matched")
    for mine, ref in zip(page.cells, executed.cells):
        if mine.cell_type == "code":
            mine.outputs = ref.get("outputs", [])
            mine.execution_count = ref.get("execution_count")
    page.cells = without_directives(page.cells)
    page.metadata.pop("jupytext", None)
    if "language_info" in executed.metadata:
        page.metadata["language_info"] = executed.metadata["language_info"]
    at = 1 if page.cells and page.cells[0].cell_type == "markdown" and page.cells[0].source.lstrip().startswith("# ") else 0
    page.cells.insert(at, nbformat.v4.new_markdown_cell(about, metadata={"tags": ["tinyq-about"]}))
    nbformat.validate(page)
    return page


# ----------------------------------------------------------------------------- the book

def modules_table(modules: list[Module], published: dict[str, Module], registry: dict[str, Module]) -> str:
    rows = ["| # | module | time | prerequisites |", "|---|---|---|---|"]
    for m in modules:
        prereq = ", ".join(str(registry[k].number) if k in registry else k for k in m.prerequisites) or "—"
        rows.append(f"| {m.number} | {_link(m, published, None, numbered=False)} | {m.time or '—'} | {prereq} |")
    return "\n".join(rows)


def book_config(config: dict, logo: str) -> dict:
    """Jupyter Book's _config.yml: execution off (outputs come from the reference run), offline
    (MathJax from the site itself, never from a CDN)."""
    launch, repo = config["launch"], config["repository"]
    return {
        "title": config["title"],
        "author": config["author"],
        "copyright": str(config["copyright"]),
        "logo": logo,
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        "execute": {"execute_notebooks": "off"},
        "parse": {"myst_enable_extensions": ["colon_fence", "dollarmath", "amsmath", "linkify", "substitution"]},
        "repository": {"url": repo["url"], "branch": repo["branch"], "path_to_book": ""},
        "launch_buttons": {
            "notebook_interface": launch["notebook_interface"],
            "binderhub_url": launch["binderhub_url"] or "",
            "jupyterhub_url": launch["jupyterhub_url"] or "",
            "colab_url": COLAB_URL if launch["colab"] else "",
            "thebe": False,
        },
        "html": {
            "use_repository_button": bool(repo["url"]),
            "use_issues_button": False,
            "use_edit_page_button": False,      # pages are generated: there is nothing to edit
            "home_page_in_navbar": True,
            "announcement": config["announcement"] or "",
        },
        "sphinx": {"extra_extensions": [MATHJAX_EXTENSION],
                   "config": {"html_show_copyright": bool(config["copyright"]),
                              "mathjax_path": MATHJAX_PATH,
                              "myst_html_meta": {"description": config["description"] or config["title"]}}},
    }


def write_book(root: Path, book: Path, config: dict, modules: list[Module],
               progress: Callable[[str], None] = lambda _: None, timeout: int = 600) -> dict[str, float]:
    """Generate the Jupyter Book (config, toc, pages, module notebooks) in the empty folder `book`."""
    registry = {m.key: m for m in all_modules(root)}
    published = {m.key: m for m in modules}
    site_dir = root / "site"
    seconds: dict[str, float] = {}

    home_src = site_dir / config["home"]
    if not home_src.exists():
        raise SiteError(f"{CONFIG}: home page {home_src.relative_to(root)} not found")
    home = home_src.read_text().replace(MODULES_PLACEHOLDER, modules_table(modules, published, registry))
    (book / "index.md").write_text(home)

    toc_pages = []
    for rel in config["pages"]:
        src = root / rel
        if not src.is_file():
            raise SiteError(f"{CONFIG}: page {rel} not found in the course root")
        dest = book / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        toc_pages.append({"file": Path(rel).with_suffix("").as_posix()})

    logo = ""
    if config["logo"]:
        src = site_dir / config["logo"]
        if not src.is_file():
            raise SiteError(f"{CONFIG}: logo {src.relative_to(root)} not found")
        logo = "_static/" + src.name
        (book / "_static").mkdir(exist_ok=True)
        shutil.copy2(src, book / logo)

    if (site_dir / STYLESHEET).is_file():     # jupyter-book links every .css file of _static/ from each page
        (book / "_static").mkdir(exist_ok=True)
        shutil.copy2(site_dir / STYLESHEET, book / "_static" / STYLESHEET)

    chapters = []
    for m in modules:
        progress(f"executing the reference notebook of {m.key}")
        start = time.perf_counter()
        executed = execute_reference(m, timeout)
        seconds[m.key] = time.perf_counter() - start
        page = module_page(m, executed, about_cell(m, published, registry))
        target = book / (_page_name(m) + ".ipynb")
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(page, target)
        chapters.append({"file": _page_name(m), "title": f"{m.number} · {m.title}"})

    parts = []
    if toc_pages:
        parts.append({"caption": "Course", "chapters": toc_pages})
    if chapters:
        parts.append({"caption": "Modules", "chapters": chapters})
    toc = {"format": "jb-book", "root": "index", "parts": parts}
    header = "# generated by `tito site build` from site/course.yml and modules/*/module.yaml; do not edit\n"
    (book / "_toc.yml").write_text(header + yaml.safe_dump(toc, sort_keys=False, allow_unicode=True))
    (book / "_config.yml").write_text(header + yaml.safe_dump(book_config(config, logo), sort_keys=False,
                                                              allow_unicode=True))
    return seconds


def render(book: Path, timeout: int = 900) -> tuple[Path, list[str]]:
    """Run jupyter-book on the generated book (a fresh, offline build): the folder of its HTML and
    the warnings Sphinx gave."""
    command = jupyter_book_command() + ["build", "--all", str(book)]
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
    try:
        proc = subprocess.run(command, cwd=book, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SiteError(f"jupyter-book did not finish within {timeout} s") from exc
    html = book / "_build" / "html"
    if proc.returncode != 0 or not (html / "index.html").exists():
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise SiteError(f"jupyter-book build failed (exit {proc.returncode}):\n{tail}")
    warnings = [ANSI.sub("", line).strip() for line in (proc.stdout + proc.stderr).splitlines()
                if "WARNING" in line]
    return html, warnings


# ----------------------------------------------------------------------------- leak check

class _Text(html.parser.HTMLParser):
    """The text a browser shows for an HTML page, line breaks kept (highlighted code is split into
    one <span> per token, so solution code is only recognisable once the tags are gone)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def page_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


def site_leaks(folder: Path, root: Path) -> tuple[list[Leak], int]:
    """Solution text in a built site: in its files as written (notebooks, sources, search index) and
    in the text of its HTML pages. Returns (leaks, how many secret lines and pairs were looked for)."""
    secrets = solution_lines([m for m in all_modules(root) if m.source.exists()])  # no source, no solutions
    leaks = find_leaks(folder, secrets)
    shadow = folder.parent / f".{folder.name}.text"
    shutil.rmtree(shadow, ignore_errors=True)
    try:
        for page in folder.rglob("*.html"):
            text = shadow / page.relative_to(folder)
            text.parent.mkdir(parents=True, exist_ok=True)
            text.write_text(page_text(page.read_text(errors="replace")))
        leaks.extend(find_leaks(shadow, secrets))
    finally:
        shutil.rmtree(shadow, ignore_errors=True)
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".ipynb", ".md", ".txt", ".js", ".py"):
            raw = path.read_text(errors="replace")
            for marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
                if marker in raw:
                    leaks.append(Leak(path.relative_to(folder).as_posix(), 0, marker, "marker"))
    return leaks, len(secrets)


# ----------------------------------------------------------------------------- the whole build

def _install(html: Path, out: Path, modules: list[Module]) -> None:
    """Put the checked site at `out`, replacing a site built before, never anything else."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SiteError(f"{out} is not empty and was not written by `tito site build`; choose another --out")
    (html / MARKER).write_text(json.dumps({"built": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                           "modules": [m.key for m in modules]}, indent=1))
    install_folder(html, out)


def build_site(root: Path, out: Path | None = None, modules: list[str] | None = None, book: Path | None = None,
               progress: Callable[[str], None] = lambda _: None, timeout: int = 600) -> SiteResult:
    """Generate the book, render it with jupyter-book, refuse if solution text survives, install it."""
    config = load_config(root)
    jupyter_book_command()                    # fail before an expensive execution if it is missing
    chosen = selected_modules(root, config, modules)
    missing = [m.rel(m.source) for m in chosen if not m.source.exists()]
    if missing:
        raise SiteError(f"module source(s) missing: {', '.join(missing)}")
    out = (out if out is not None else root / DEFAULT_OUT).resolve()
    book = (book if book is not None else root / DEFAULT_BOOK).resolve()
    if out == book or book in out.parents or out in book.parents:
        raise SiteError(f"the site ({out}) and the generated book ({book}) must be separate folders")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SiteError(f"{out} is not empty and was not written by `tito site build`; choose another --out")
    shutil.rmtree(book, ignore_errors=True)
    book.mkdir(parents=True)

    seconds = write_book(root, book, config, chosen, progress, timeout)
    progress(f"rendering {len(chosen)} module page(s) with jupyter-book")
    start = time.perf_counter()
    html, warnings = render(book)
    seconds["jupyter-book"] = time.perf_counter() - start

    progress("checking the site for solution text")
    leaks, checked = site_leaks(html, root)
    if leaks:
        first = "; ".join(f"{l.file}:{l.line} ({l.exercise}): {l.text[:60]}" for l in leaks[:5])
        shutil.rmtree(html, ignore_errors=True)
        raise SiteError(f"refusing to publish the site: {len(leaks)} piece(s) of solution text survive: {first}")
    _install(html, out, chosen)
    pages = {m.key: out / (_page_name(m) + ".html") for m in chosen}
    return SiteResult(out=out, book=book, modules=chosen, pages=pages, checked=checked, seconds=seconds,
                      warnings=warnings)
