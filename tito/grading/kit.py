"""What the graded tests import (`from tito.grading import kit`).

- `load_oracle`: the instructor's oracle module of a module's tests, or None in the student flavour
  (oracles live in instructor-only files `tests/NN_name/_NN_hidden_oracle.py` that the release removes).
  Grading one exercise on its own is the plugin's `only` fixture.
- `check_call`/`check_equal`/`check_close`: assertions whose failure message says what was called, what was
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
    """A short, exact-enough text of a value: scalars to 9 significant digits, arrays summarised."""
    if isinstance(value, tuple):
        return "(" + ", ".join(_shown(v) for v in value) + ")"
    try:
        arr = np.asarray(value)
    except Exception:
        return repr(value)
    if arr.dtype == object:
        return repr(value)
    if arr.ndim == 0:
        return f"{arr.item():.9g}" if arr.dtype.kind == "f" else repr(arr.item())
    text = np.array2string(arr, threshold=8, edgeitems=3, precision=8)
    return f"{text} ({arr.dtype}, shape {arr.shape})"


def _same(got, expected) -> bool:
    if isinstance(expected, tuple):
        return isinstance(got, tuple) and len(got) == len(expected) and all(map(_same, got, expected))
    return np.shape(got) == np.shape(expected) and bool(np.array_equal(np.asarray(got), np.asarray(expected)))


def describe_call(func, args, kwargs) -> str:
    shown = [repr(a) if isinstance(a, (bool, int, float, str)) else _shown(a) for a in args]
    shown += [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{getattr(func, '__name__', 'function')}({', '.join(shown)})"


def check_call(func, *args, expected, **kwargs):
    """Call `func(*args, **kwargs)` and check that it returns exactly `expected` (tuples element by
    element); the failure says the call, what was expected and what came back. Returns the result."""
    got = func(*args, **kwargs)
    assert _same(got, expected), f"{describe_call(func, args, kwargs)}: expected {_shown(expected)}, got {_shown(got)}"
    return got


def check_equal(got, expected, call: str, what: str = "result") -> None:
    """Exact equality (values, and for arrays shape), with a message naming the call."""
    assert _same(got, expected), f"{call}: expected {what} {_shown(expected)}, got {_shown(got)}"


def check_close(got, expected, call: str, what: str = "result", *, rtol: float = 1e-6, atol: float = 0.0) -> None:
    ok = np.shape(got) == np.shape(expected) and np.allclose(got, expected, rtol=rtol, atol=atol)
    assert ok, f"{call}: expected {what} {_shown(expected)} (rtol {rtol:g}, atol {atol:g}), got {_shown(got)}"
