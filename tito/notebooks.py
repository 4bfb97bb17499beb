"""Paired notebooks: modules/NN_name/name_dev.ipynb <-> name_dev.py (jupytext keeps them in sync)."""
from __future__ import annotations

from pathlib import Path

import jupytext

# nbgrader metadata and tags must survive the round trip; jupytext's default filter drops later tags
CELL_METADATA_FILTER = "nbgrader,tags,-all"


def to_notebook(source: Path, text: str | None = None):
    """A notebook object of a py:percent source, paired with it for Jupyter."""
    nb = jupytext.reads(source.read_text() if text is None else text, fmt="py:percent")
    meta = nb.metadata.setdefault("jupytext", {})
    meta["formats"] = "ipynb,py:percent"
    meta["cell_metadata_filter"] = CELL_METADATA_FILTER
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    return nb


def write_paired(source: Path) -> Path:
    target = source.with_suffix(".ipynb")
    jupytext.write(to_notebook(source), target, fmt="ipynb")
    return target
