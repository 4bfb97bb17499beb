"""Noticing a submission that replaces what the tests rely on.

The plugin takes a `Watch` when pytest starts, before any test module (and so any learner code) is
imported: the identity of numpy's and pytest's assertion helpers, of `numpy.array_equal`/`allclose`
and friends, and of the plugin's own hooks, with their code objects (a function whose `__code__` is
swapped keeps its identity). At the end of the session `changed()` names whatever differs; the
runner then scores the module 0 with that reason, as it does for tampered test files.

This is a tripwire, not a sandbox: code running in the same process can always do more. It makes
the cheap attack (no-op assertion helpers, a patched hook) cost the whole module instead of paying.
"""
from __future__ import annotations

import inspect

import numpy
import numpy.testing
import pytest

NUMPY_FUNCTIONS = ("array_equal", "array_equiv", "allclose", "isclose", "all", "any", "asarray",
                   "testing")
PYTEST_FUNCTIONS = ("raises", "approx", "fail", "skip", "warns", "importorskip")


def _fingerprint(obj) -> tuple:
    code = getattr(obj, "__code__", None)
    wrapped = getattr(obj, "__wrapped__", None)
    return (id(obj), id(code), code.co_code if code is not None else None, id(wrapped))


class Watch:
    def __init__(self):
        self._taken: dict[str, tuple[object, object, tuple]] = {}   # label -> (owner, attribute, fingerprint)

    def add(self, label: str, owner, attribute: str) -> None:
        obj = getattr(owner, attribute)
        self._taken[label] = (owner, attribute, _fingerprint(obj))

    @classmethod
    def of_grading_helpers(cls) -> "Watch":
        watch = cls()
        for name in dir(numpy.testing):
            if name.startswith("assert_") and callable(getattr(numpy.testing, name)):
                watch.add(f"numpy.testing.{name}", numpy.testing, name)
        for name in NUMPY_FUNCTIONS:
            watch.add(f"numpy.{name}", numpy, name)
        for name in PYTEST_FUNCTIONS:
            watch.add(f"pytest.{name}", pytest, name)
        return watch

    def add_plugin(self, report, plugin_module) -> None:
        """The plugin's hooks and fixtures: the bound methods' functions and the module's functions."""
        for name, member in inspect.getmembers(type(report), inspect.isfunction):
            self.add(f"plugin hook {name}", type(report), name)
        for name in ("perf_fraction", "short_message", "exercise_map", "pytest_configure"):
            if hasattr(plugin_module, name):
                self.add(f"plugin {name}", plugin_module, name)
        for name, member in vars(plugin_module).items():
            if isinstance(member, type) and name in ("Perf", "Isolation"):
                for attr, _ in inspect.getmembers(member, inspect.isfunction):
                    self.add(f"plugin {name}.{attr}", member, attr)
        self.add("the tamper check", type(self), "changed")

    def changed(self) -> list[str]:
        """Labels of watched objects that are no longer what they were."""
        return [label for label, (owner, attribute, before) in self._taken.items()
                if _fingerprint(getattr(owner, attribute, None)) != before]
