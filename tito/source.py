"""Reading a module's source (`name_dev.py`, jupytext py:percent) and its markers.

Everything that looks inside a source goes through here: export, release, leak checks and the site.
Cells come from jupytext (never a home-made cell parser); this module only adds the line number of
each cell in the file (for `file:line` errors) and the marker rules of nbgrader/nbdev.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import jupytext

from .errors import TitoError

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(default_exp|exporti|export)\b\s*(.*?)\s*$")
MARKER = re.compile(r"^(\s*)(### (?:BEGIN|END) (?:SOLUTION|HIDDEN TESTS))\s*$")
CELL_HEADER = re.compile(r"^# %%")


class SourceError(TitoError):
    """A problem in a module source, with the file and line it is at."""

    def __init__(self, path: Path | str, line: int, message: str):
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{path}:{line}: {message}")


@dataclass
class Cell:
    index: int
    cell_type: str
    source: str
    metadata: dict
    line: int                         # 1-based line of the cell's first source line in the file
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def nbgrader(self) -> dict:
        return self.metadata.get("nbgrader") or {}

    @property
    def is_solution(self) -> bool:
        return bool(self.nbgrader.get("solution"))


def _header_lines(text: str) -> list[int]:
    return [i + 1 for i, line in enumerate(text.splitlines()) if CELL_HEADER.match(line)]


def read_cells(path: Path, text: str | None = None) -> list[Cell]:
    """The cells of a py:percent source, each with its line number and `#|` directives."""
    text = path.read_text() if text is None else text
    try:
        notebook = jupytext.reads(text, fmt="py:percent")
    except Exception as exc:  # jupytext raises several types for malformed headers
        raise SourceError(path, 1, f"jupytext cannot read this file: {exc}") from exc
    headers = _header_lines(text)
    offset = len(notebook.cells) - len(headers)   # 1 when text precedes the first `# %%`
    cells = []
    for i, nb_cell in enumerate(notebook.cells):
        h = i - offset
        line = headers[h] + 1 if 0 <= h < len(headers) else 1
        directives = {}
        if nb_cell.cell_type == "code":
            for src_line in nb_cell.source.splitlines():
                m = DIRECTIVE.match(src_line)
                if m:
                    directives[m.group(1)] = m.group(2)
        cells.append(Cell(i, nb_cell.cell_type, nb_cell.source, dict(nb_cell.metadata), line, directives))
    return cells


def check_markers(path: Path, cell: Cell) -> None:
    """Solution and hidden-test markers come in BEGIN/END pairs, never nested, never unclosed."""
    open_marker, open_line = None, 0
    for offset, line in enumerate(cell.source.splitlines()):
        m = MARKER.match(line)
        if not m:
            continue
        marker, lineno = m.group(2), cell.line + offset
        if marker.startswith("### BEGIN"):
            if open_marker:
                raise SourceError(path, lineno, f"'{marker}' inside '{open_marker}' opened at line {open_line}")
            open_marker, open_line = marker, lineno
        else:
            expected = open_marker.replace("BEGIN", "END") if open_marker else None
            if marker != expected:
                raise SourceError(path, lineno, f"'{marker}' without a matching BEGIN" if not open_marker
                                  else f"'{marker}' closes '{open_marker}' opened at line {open_line}")
            open_marker = None
    if open_marker:
        raise SourceError(path, open_line, f"'{open_marker}' is never closed in its cell")
    if cell.cell_type == "code" and BEGIN_SOLUTION in cell.source and not cell.is_solution:
        raise SourceError(path, cell.line, "solution markers in a cell whose nbgrader metadata is not "
                                           "'solution': true")


def _strip_regions(text: str, begin: str, end: str, replacement: tuple[str, ...],
                   only: set[int] | None = None) -> str:
    """Replace BEGIN..END regions (markers included) by `replacement` at the marker's indent;
    with `only`, just the regions of those indices (0-based, in file order)."""
    out, inside, index = [], False, -1
    for line in text.splitlines(keepends=True):
        m = MARKER.match(line.rstrip("\n"))
        if m and m.group(2) == begin:
            index += 1
            inside = only is None or index in only
            if inside:
                out.extend(f"{m.group(1)}{r}\n" for r in replacement)
            else:
                out.append(line)
        elif m and m.group(2) == end and inside:
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)


def strip_solutions(text: str, only: set[int] | None = None) -> str:
    """The student version of a source: each solution region (or those in `only`) becomes nbgrader's stub."""
    return _strip_regions(text, BEGIN_SOLUTION, END_SOLUTION, STUB, only)


def strip_hidden_tests(text: str) -> str:
    return _strip_regions(text, BEGIN_HIDDEN, END_HIDDEN, ())


def student_text(text: str) -> str:
    return strip_hidden_tests(strip_solutions(text))


def solution_regions(path: Path, text: str | None = None) -> list[tuple[str, list[str]]]:
    """(exercise grade_id, lines) of every solution region in file order: what must never reach a
    learner, and the unit the integrity tests stub one at a time."""
    regions = []
    for cell in read_cells(path, text):
        current = None
        for line in cell.source.splitlines():
            m = MARKER.match(line)
            if m and m.group(2) == BEGIN_SOLUTION:
                current = []
            elif m and m.group(2) == END_SOLUTION and current is not None:
                regions.append((cell.nbgrader.get("grade_id", f"cell{cell.index}"), current))
                current = None
            elif current is not None:
                current.append(line)
    return regions


def add_markdown_after_title(text: str, markdown: str) -> str:
    """The source with a markdown cell holding `markdown` inserted after its first markdown cell
    (the module's title), e.g. the release's note on running a notebook full of stubs."""
    lines = text.splitlines(keepends=True)
    headers = [i for i, line in enumerate(lines) if CELL_HEADER.match(line)]
    first_md = next((i for i in headers if "[markdown]" in lines[i]), None)
    if first_md is None:
        return text
    following = [i for i in headers if i > first_md]
    at = following[0] if following else len(lines)
    cell = "# %% [markdown]\n" + "".join(f"# {line}".rstrip() + "\n" for line in markdown.splitlines()) + "\n"
    return "".join(lines[:at]) + cell + "".join(lines[at:])
