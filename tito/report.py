"""Rich tables of graded results (shared by `tito test` and `tito grade`)."""
from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from .grading.records import ModuleResult, TestRecord

OUTCOME_STYLE = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}


def measured_vs_bar(t: TestRecord) -> str:
    """'6.85 × np.copy (bar <= 10.00)': the ratio, what it is a ratio to, and the bar."""
    if t.measured is None:
        return ""
    sign = "<=" if t.lower_is_better else ">="
    unit = f" {t.unit}" if t.unit else ""
    return f"{t.measured:.2f}{unit} (bar {sign} {t.bar:.2f})"


def outcome_label(t: TestRecord) -> str:
    if t.outcome == "skipped" and t.needs_gpu:
        return "needs GPU"
    if t.outcome == "skipped" and t.needs:
        return f"needs {t.needs}"
    return t.outcome


def module_table(result: ModuleResult) -> Table:
    table = Table(title=f"{result.module}: {result.score:g} / {result.max_score:g}", title_justify="left")
    for col in ("test", "exercise", "points", "result", "measured vs bar", "why"):
        table.add_column(col, overflow="fold")
    for t in result.tests:
        style = OUTCOME_STYLE.get(t.outcome, "")
        table.add_row(escape(t.name), escape(t.exercise or ""), f"{t.points:g} / {t.max_points:g}",
                      f"[{style}]{escape(outcome_label(t))}[/]", escape(measured_vs_bar(t)), escape(t.message or ""))
    return table


def totals_table(results: list[ModuleResult]) -> Table:
    table = Table(title="total", title_justify="left")
    for col in ("module", "score", "max", "note"):
        table.add_column(col)
    for r in results:
        note = r.note
        gpu = sum(t.max_points for t in r.tests if t.not_counted and t.needs_gpu)
        packages = sorted({t.needs for t in r.tests if t.not_counted and t.needs})
        if gpu:
            note = (note + "; " if note else "") + f"{gpu:g} pts need a GPU (not counted)"
        if packages:
            pts = sum(t.max_points for t in r.tests if t.not_counted and t.needs)
            note = (note + "; " if note else "") + f"{pts:g} pts need {', '.join(packages)} (not counted)"
        table.add_row(r.module, f"{r.score:g}", f"{r.max_score:g}", escape(note))
    table.add_row("[bold]all[/]", f"[bold]{sum(r.score for r in results):g}[/]",
                  f"[bold]{sum(r.max_score for r in results):g}[/]", "")
    return table
