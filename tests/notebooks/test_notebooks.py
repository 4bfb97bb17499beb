"""Every module's paired notebook runs top to bottom in a Jupyter kernel (nbclient); any error fails.

This executes the instructor flavour (reference solutions), exactly as a learner's Jupyter would
run the notebook `tito notebooks` writes, so a broken narrative or plot cell cannot ship.
"""
import os

import nbclient
import pytest

from tito.notebooks import to_notebook
from pathlib import Path

from tito.registry import all_modules

REPO_MODULES = all_modules(Path(__file__).resolve().parents[2])


@pytest.mark.slow
@pytest.mark.parametrize("module", REPO_MODULES, ids=lambda m: m.key)
def test_notebook_runs_top_to_bottom(module):
    nb = to_notebook(module.source)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.setdefault("TINYQ_QUICK", "1")   # a notebook may shrink its data sizes; every code path still runs
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(module.dir)}})
    client.execute()   # raises CellExecutionError, naming the cell, on the first error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "the systems analysis should show at least one plot"
