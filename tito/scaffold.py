"""`tito new NN name`: a new module, ready to grade, from the templates in tito/templates/new/.

It writes module.yaml, the source `name_dev.py` (one example exercise with its inline test and a
systems analysis), the public and hidden graded tests, the public helpers and the instructor's oracle,
then exports the module into `tinyq/<export>.py`. Right away the module gets full marks from
`tito test NN`, and its student flavour scores 0.

Nothing that exists is ever overwritten: every problem (bad number or name, a number, name, export
or test file name already in use, a file in the way) is found before anything is written, and the
files are written together (tito.files.write_atomically). Instructor-only: `tito release` leaves
this file, the command and the templates out of the student flavour.
"""
from __future__ import annotations

import json
import keyword
import re
import shutil
import string
from dataclasses import dataclass
from pathlib import Path

from .errors import TitoError
from .export import export_modules
from .files import write_atomically
from .registry import Module, all_modules, resolve

TEMPLATES = Path(__file__).parent / "templates" / "new"
NUMBER = re.compile(r"^\d\d$")
NAME = re.compile(r"^[a-z0-9_]+$")
EXPORT = re.compile(r"^[a-z_][a-z0-9_]*$")
POINTS = re.compile(r"@pytest\.mark\.points\(\s*(\d+(?:\.\d+)?)")
DEFAULT_TIME = "2 h"


class ScaffoldError(TitoError):
    """The new module cannot be written as asked; the message lists every reason."""


class Fill(string.Template):
    """Placeholders are `${UPPER_CASE}` only: any other `$` (the LaTeX math of the narrative) is text."""
    flags = 0
    pattern = (r"\$\{(?P<braced>[A-Z][A-Z0-9_]*)\}"
               r"(?P<named>(?!))?(?P<escaped>(?!))?(?P<invalid>(?!))?")


@dataclass(frozen=True)
class Plan:
    """What `tito new` will write: the module as the registry will read it, and every file's text."""
    module: Module
    files: dict[Path, str]


def _template(name: str, values: dict[str, str]) -> str:
    path = TEMPLATES / name
    if not path.is_file():
        raise ScaffoldError(f"the template {path} is missing: tito new needs the instructor's tito "
                            "(this repository, installed with `pip install -e .`)")
    text = path.read_text()
    try:
        return Fill(text).substitute(values)
    except KeyError as exc:
        raise ScaffoldError(f"template {name} uses ${{{exc.args[0]}}}, which tito new does not fill") from None


def default_title(name: str) -> str:
    """`llm_ptq` -> `Llm ptq`: a placeholder the author is expected to replace (or pass --title)."""
    return name.replace("_", " ").strip().capitalize() or name


def _check_title(title: str) -> list[str]:
    if not title.strip():
        return ["the title is empty: pass --title \"...\""]
    if any(ch in title for ch in '"\\\n\r\t') or not title.isprintable():
        return [f"the title {title!r} holds a double quote, a backslash or a control character: "
                "it becomes the exported file's docstring, so keep it to one plain line"]
    return []


def problems(root: Path, number: str, name: str, export: str, title: str) -> list[str]:
    """Every reason why module `number`_`name` cannot be created in the course at `root`."""
    found = []
    if not NUMBER.match(number):
        found.append(f"the module number must be two digits, e.g. 22 (got {number!r})")
    if not NAME.match(name):
        found.append(f"the module name must be lowercase letters, digits and underscores, e.g. llm_ptq "
                     f"(got {name!r})")
    if not EXPORT.match(export) or keyword.iskeyword(export):
        found.append(f"the export {export!r} is not a Python module name (tinyq/{export}.py must be "
                     "importable): lowercase letters, digits and underscores, not starting with a digit "
                     "and not a keyword; choose one with --export")
    found.extend(_check_title(title))
    if found:
        return found
    key = f"{number}_{name}"
    modules = all_modules(root)
    for m in modules:
        if m.number == int(number):
            found.append(f"module number {number} is taken by {m.key}")
        if m.name == name:
            found.append(f"module name {name!r} is taken by {m.key}")
        if m.export == export:
            found.append(f"{m.key} already exports to tinyq/{export}.py; choose another with --export")
    registered = {m.key for m in modules}
    for folder in ("modules", "tests"):
        for path in sorted((root / folder).glob(f"{number}_*")):
            if path.name in registered:
                continue                      # said above: the number is taken
            found.append(f"{folder}/{path.name} already exists: tito new never overwrites it" if path.name == key
                         else f"{folder}/{path.name} already exists and would share module number {number}")
    target = root / "tinyq" / export
    for path in (target.with_suffix(".py"), target):
        if path.exists():
            found.append(f"tinyq/{path.name} already exists (support code or another module's export); "
                         "choose another export with --export")
    return found


def plan(root: Path, number: str, name: str, *, title: str | None = None,
         export: str | None = None) -> Plan:
    """Check everything and render every file in memory (nothing is written)."""
    export = name if export is None else export
    title = default_title(name) if title is None else title
    found = problems(root, number, name, export, title)
    if found:
        raise ScaffoldError("cannot create the module, nothing was written:\n  - " + "\n  - ".join(found))
    key = f"{number}_{name}"
    values = {"NUMBER": number, "NUMBER_INT": str(int(number)), "NAME": name, "KEY": key,
              "TITLE": title.strip(), "TITLE_YAML": json.dumps(title.strip(), ensure_ascii=False),
              "EXPORT": export, "TIME": DEFAULT_TIME}
    tests = root / "tests" / key
    files = {tests / f"test_{number}_{name}.py": _template("test_public.py.tmpl", values),
             tests / f"test_{number}_hidden_{name}.py": _template("test_hidden.py.tmpl", values),
             tests / f"_{number}_helpers.py": _template("helpers.py.tmpl", values),
             tests / f"_{number}_hidden_oracle.py": _template("oracle.py.tmpl", values)}
    # pytest imports test files by their base name (prepend mode): each must be unique under tests/
    taken = {p.name: p for p in (root / "tests").rglob("*.py")} if (root / "tests").is_dir() else {}
    clashes = [f"tests/{taken[p.name].relative_to(root / 'tests').as_posix()} already uses the file name "
               f"{p.name}" for p in files if p.name in taken]
    if clashes:
        raise ScaffoldError("cannot create the module, nothing was written:\n  - " + "\n  - ".join(clashes))
    points = sum(float(n) for text in files.values() for n in POINTS.findall(text))
    values["POINTS"] = f"{points:g}"
    module_dir = root / "modules" / key
    files = {module_dir / "module.yaml": _template("module.yaml.tmpl", values),
             module_dir / f"{name}_dev.py": _template("dev.py.tmpl", values), **files}
    module = Module(number=int(number), name=name, title=title.strip(), export=export, points=points,
                    root=root, time=DEFAULT_TIME)
    return Plan(module, files)


def new_module(root: Path, number: str, name: str, *, title: str | None = None,
               export: str | None = None) -> tuple[Module, list[Path]]:
    """Write the new module's files and export it. Returns the module (as the registry reads it back)
    and the files written. Should the export fail, the new files are removed again."""
    planned = plan(root, number, name, title=title, export=export)
    write_atomically(planned.files)
    key = planned.module.key
    try:
        module = resolve(key, root)
        export_modules([module])
    except BaseException:
        for folder in (root / "modules" / key, root / "tests" / key):   # both are new (checked above)
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return module, list(planned.files)
