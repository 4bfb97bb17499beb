"""Shared helpers of the graded tests (imported by tests/NN_name/_NN_helpers.py).

`isolate` is how one exercise is graded on its own: every function it may call from other
exercises (or earlier modules) is replaced by the instructor's oracle for the duration of a test,
so one bug costs the points of one exercise only. Oracles live in instructor-only files
(`tests/NN_name/_NN_hidden_oracle.py`) that the release removes; in the student flavour `isolate`
does nothing and the learner's own functions are used throughout.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Iterable


def load_oracle(name: str) -> ModuleType | None:
    """The instructor's oracle module `name`, or None where it is not shipped (student flavour)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:      # the oracle exists but is broken: say so, never grade silently
            raise
        return None


def isolate(monkeypatch, package_module: str, oracle_name: str, names: Iterable[str],
            optional: Iterable[str] = ()) -> bool:
    """Patch `names` (and, where the package has them, `optional`) in `package_module` with the
    oracle's versions. Returns whether an oracle was found."""
    oracle = load_oracle(oracle_name)
    if oracle is None:
        return False
    target = importlib.import_module(package_module)
    for name in names:
        monkeypatch.setattr(target, name, getattr(oracle, name))
    for name in optional:
        monkeypatch.setattr(target, name, getattr(oracle, name), raising=False)
    return True
