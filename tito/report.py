"""Rich tables of graded results (shared by `tito test` and `tito grade`)."""
from __future__ import annotations

from rich.table import Table

from .testing import ModuleResult

OUTCOME_STYLE = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}


def _ratio(t: dict) -> str:
    if t.get("measured") is None:
        return ""
    sign = "<=" if t.get("lower_is_better") else ">="
    return f"{t['measured']:.2f} (bar {sign} {t['bar']:.2f})"


def module_table(result: ModuleResult) -> Table:
    table = Table(title=f"{result.module}: {result.score:g} / {result.max_score:g}", title_justify="left")
    for col in ("test", "exercise", "points", "result", "measured vs bar", "why"):
        table.add_column(col, overflow="fold")
    for t in result.tests:
        outcome = t["outcome"]
        label = "needs GPU" if outcome == "skipped" and t.get("needs_gpu") else outcome
        style = OUTCOME_STYLE.get(outcome, "")
        table.add_row(t["name"], t.get("exercise") or "", f"{t['points']:g} / {t['max_points']:g}",
                      f"[{style}]{label}[/]", _ratio(t), t.get("message") or "")
    return table


def totals_table(results: list[ModuleResult]) -> Table:
    table = Table(title="total", title_justify="left")
    for col in ("module", "score", "max", "note"):
        table.add_column(col)
    for r in results:
        note = r.note
        if r.gpu_points:
            note = (note + "; " if note else "") + f"{r.gpu_points:g} pts need a GPU (not counted)"
        table.add_row(r.module, f"{r.score:g}", f"{r.max_score:g}", note)
    table.add_row("[bold]all[/]", f"[bold]{sum(r.score for r in results):g}[/]",
                  f"[bold]{sum(r.max_score for r in results):g}[/]", "")
    return table
