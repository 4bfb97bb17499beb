"""What the graded tests import (`from tito.grading import kit`).

- `load_oracle`: the instructor's oracle module of a module's tests, or None in the student flavour
  (oracles live in instructor-only files `tests/NN_name/_NN_hidden_oracle.py` that the release removes).
  Grading one exercise on its own is the plugin's `only` fixture.
- `check_equal`/`check_close`: assertions whose failure message says what was called, what was
  expected and what came back, because that line is all a learner sees in `tito test`'s table.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np


def load_oracle(name: str) -> ModuleType | None:
    """The instructor's oracle module `name`, or None where it is not shipped (student flavour)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:      # the oracle exists but is broken: say so, never grade silently
            raise
        return None


def _shown(value) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return repr(arr.item()) if arr.dtype.kind in "biuf" else repr(value)
    text = np.array2string(arr, threshold=8, edgeitems=3, precision=8)
    return f"{text} ({arr.dtype}, shape {arr.shape})"


def check_equal(got, expected, call: str, what: str = "result") -> None:
    """Exact equality (values, and for arrays shape), with a message naming the call."""
    same = np.array_equal(np.asarray(got), np.asarray(expected)) and np.shape(got) == np.shape(expected)
    assert same, f"{call}: expected {what} {_shown(expected)}, got {_shown(got)}"


def check_close(got, expected, call: str, what: str = "result", *, rtol: float = 1e-6, atol: float = 0.0) -> None:
    ok = np.shape(got) == np.shape(expected) and np.allclose(got, expected, rtol=rtol, atol=atol)
    assert ok, f"{call}: expected {what} {_shown(expected)} (rtol {rtol:g}, atol {atol:g}), got {_shown(got)}"
