"""The grading kit: everything that turns a module's tests into points, in one package.

- `records`: the one typed record of a graded test and of a module's result, used by every consumer
  (the plugin writes them, the runner reads them, `tito test`, `tito grade` and the reports show them).
- `plugin`: the pytest plugin (points, perf bars, GPU and optional-package skips, the `only`
  isolation fixture, tamper checks).
- `kit`: what the tests themselves import (oracles, clear failure messages).
- `requirements`: optional packages some tests need, and the extra that installs each.
- `exercises`: which names each exercise defines, derived from the module source.
- `runner`: runs pytest in a clean process against one package and scores the records.

`tito grade` copies this package (and nothing else of tito) into each grading sandbox.
"""
