"""Which names each exercise defines, derived from the module sources (never typed in by hand).

An exercise is a solution cell's nbgrader `grade_id`; its names are the top-level functions, classes
and assignments of the exported cells carrying that grade_id. The `only` fixture uses this map to
replace every other exercise by the instructor's oracle; the plugin uses it to say which exercise a
`NotImplementedError` came from.
"""
from __future__ import annotations

import ast
from pathlib import Path


def defined_names(code: str) -> list[str]:
    """Top-level names a cell defines (functions, classes, assignments), in order."""
    names = []
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.extend(t.id for t in targets if isinstance(t, ast.Name))
    return names


def module_exercises(module) -> dict[str, list[str]]:
    """{grade_id: names} of one module's exported solution cells, in file order."""
    from ..source import read_cells
    exercises: dict[str, list[str]] = {}
    for cell in read_cells(module.source):
        if cell.cell_type != "code" or not cell.is_solution:
            continue
        if not ({"export", "exporti"} & cell.directives.keys()):
            continue
        grade_id = cell.nbgrader.get("grade_id") or f"cell{cell.index}"
        try:
            names = defined_names(cell.source)
        except SyntaxError:
            names = []
        exercises.setdefault(grade_id, []).extend(n for n in names if n not in exercises.get(grade_id, []))
    return exercises


def exercise_map(root: Path) -> dict:
    """{module key: {"package": "tinyq.<export>", "oracle": "_NN_hidden_oracle", "exercises": {...}}}."""
    from ..registry import all_modules
    return {m.key: {"package": f"tinyq.{m.export}", "oracle": f"_{m.number:02d}_hidden_oracle",
                    "exercises": module_exercises(m)}
            for m in all_modules(root) if m.source.exists()}
