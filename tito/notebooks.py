"""Paired notebooks: modules/NN_name/name_dev.ipynb <-> name_dev.py, synchronised as `jupytext --sync` does.

A learner may edit either side: the `.py` (an editor, or JupyterLab with jupytext) or the `.ipynb`
(Colab, VS Code, JupyterLab without jupytext). `sync` makes them agree before anything reads the
source:
- the side that changed since the last sync wins and rewrites the other (outputs of the notebook
  are kept); with no record of a last sync, the newer file wins, as with `jupytext --sync`;
- both sides changed since the last sync is a conflict: reported, never resolved by overwriting;
- whatever is about to be replaced is first copied to `.tito/backups/` (tito.files.back_up).
The hashes of the last sync live in `.tito/sync.json` of the course tree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import combine_inputs_with_outputs

from .errors import TitoError
from .files import back_up, read_state, sha256_of, write_atomically, write_state
from .registry import Module

# nbgrader metadata and tags must survive the round trip; jupytext's default filter drops later tags
CELL_METADATA_FILTER = "nbgrader,tags,-all"
PAIRED_FORMATS = "ipynb,py:percent"
STATE = "sync"


class SyncConflict(TitoError):
    """Both the .py and the .ipynb changed since their last sync."""


@dataclass
class SyncResult:
    module: Module
    action: str                       # "no notebook" | "in sync" | "notebook created" | "source created" | "notebook -> source" | "source -> notebook"
    backup: Path | None = None

    @property
    def changed_source(self) -> bool:
        return self.action in ("notebook -> source", "source created")


def notebook_path(module: Module) -> Path:
    return module.source.with_suffix(".ipynb")


def _paired_metadata(nb) -> None:
    meta = nb.metadata.setdefault("jupytext", {})
    meta["formats"] = PAIRED_FORMATS
    meta["cell_metadata_filter"] = CELL_METADATA_FILTER
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})


def to_notebook(source: Path, text: str | None = None):
    """A notebook object of a py:percent source, paired with it for Jupyter."""
    nb = jupytext.reads(source.read_text() if text is None else text, fmt="py:percent")
    _paired_metadata(nb)
    return nb


def notebook_to_source(notebook: Path) -> str:
    """The py:percent text of a notebook (what the grader and `export` read), nbgrader metadata kept."""
    nb = nbformat.read(notebook, as_version=4)
    _paired_metadata(nb)
    return jupytext.writes(nb, fmt="py:percent")


def _inputs(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def same_inputs(source: Path, notebook: Path) -> bool:
    """Do the two files hold the same cells (code and text)? Outputs and metadata do not count."""
    try:
        return _inputs(jupytext.reads(source.read_text(), fmt="py:percent")) == \
            _inputs(nbformat.read(notebook, as_version=4))
    except Exception:     # an unreadable notebook is not the same as anything
        return False


def _record(module: Module) -> None:
    state = read_state(module.root, STATE)
    state[module.key] = {"py": sha256_of(module.source), "ipynb": sha256_of(notebook_path(module))}
    write_state(module.root, STATE, state)


def _write_notebook(module: Module) -> None:
    nb_path = notebook_path(module)
    nb = to_notebook(module.source)
    if nb_path.exists():
        try:   # keep the learner's outputs where the cells still match
            nb = combine_inputs_with_outputs(nb, nbformat.read(nb_path, as_version=4))
            _paired_metadata(nb)
        except Exception:
            pass
    write_atomically({nb_path: nbformat.writes(nb)})


def _write_source(module: Module) -> None:
    nb_path = notebook_path(module)
    try:
        text = notebook_to_source(nb_path)
    except Exception as exc:
        raise SyncConflict(f"{module.rel(nb_path)} is not a readable notebook ({type(exc).__name__}: {exc}); "
                           f"{module.rel(module.source)} was left as it is") from None
    write_atomically({module.source: text})


def pair_state(module: Module) -> str:
    """'no notebook', 'in sync', 'notebook changed', 'source changed' or 'conflict' (no file is written)."""
    nb_path = notebook_path(module)
    if not nb_path.exists() or not module.source.exists():
        return "no notebook" if module.source.exists() else "source changed" if not nb_path.exists() \
            else "notebook changed"
    record = read_state(module.root, STATE).get(module.key)
    py_changed = record is None or record.get("py") != sha256_of(module.source)
    nb_changed = record is None or record.get("ipynb") != sha256_of(nb_path)
    if not (py_changed or nb_changed):
        return "in sync"
    if same_inputs(module.source, nb_path):
        return "in sync"
    if record is None:   # never synchronised here: the newer file wins (jupytext --sync's rule)
        newer_nb = nb_path.stat().st_mtime > module.source.stat().st_mtime
        return "notebook changed" if newer_nb else "source changed"
    if py_changed and nb_changed:
        return "conflict"
    return "notebook changed" if nb_changed else "source changed"


def sync(module: Module, keep: str | None = None, create: bool = False) -> SyncResult:
    """Make the module's .py and .ipynb agree (see the module docstring). `keep` ('py' or 'ipynb')
    resolves a conflict in favour of that side; the other is backed up first. `create`: write the
    notebook where there is none (else a lone .py is left alone)."""
    nb_path = notebook_path(module)
    if not module.source.exists() and not nb_path.exists():
        raise SyncConflict(f"{module.rel(module.source)} not found (and no notebook beside it)")
    if not nb_path.exists():
        if not create:
            return SyncResult(module, "no notebook")
        _write_notebook(module)
        _record(module)
        return SyncResult(module, "notebook created")
    if not module.source.exists():
        _write_source(module)
        _record(module)
        return SyncResult(module, "source created")
    state = pair_state(module)
    if keep in ("py", "ipynb") and state != "in sync":
        state = "source changed" if keep == "py" else "notebook changed"
    if state == "conflict":
        raise SyncConflict(
            f"both {module.rel(module.source)} and {module.rel(nb_path)} changed since they were last "
            f"synchronised, so neither was overwritten. Keep one side with "
            f"`tito notebooks {module.key} --keep py` or `--keep ipynb` (the other is backed up first).")
    if state == "in sync":
        _record(module)
        return SyncResult(module, "in sync")
    if state == "notebook changed":
        backup = back_up(module.source, module.root)
        _write_source(module)
        action = "notebook -> source"
    else:
        backup = back_up(nb_path, module.root)
        _write_notebook(module)
        action = "source -> notebook"
    _record(module)
    return SyncResult(module, action, backup)


def sync_all(modules: list[Module], keep: str | None = None,
             create: bool = False) -> tuple[list[SyncResult], list[str]]:
    """Sync each module; returns (results, conflict messages) so one conflict never stops the rest."""
    results, conflicts = [], []
    for m in modules:
        try:
            results.append(sync(m, keep, create))
        except SyncConflict as exc:
            conflicts.append(str(exc))
    return results, conflicts

