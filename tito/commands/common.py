"""What several commands do the same way: bring each notebook and its source into agreement first."""
from __future__ import annotations

from ..console import say
from ..errors import TitoError
from ..notebooks import sync_all
from ..registry import Module

SAID = {"notebook -> source": "took the edits in {nb} into {py}",
        "source -> notebook": "updated {nb} from {py}",
        "notebook created": "wrote {nb} (paired with {py})",
        "source created": "wrote {py} from {nb}"}


def synchronise(modules: list[Module], *, create: bool = False, keep: str | None = None) -> None:
    """Sync every module's .py/.ipynb pair, saying what moved where and what was backed up; any
    conflict ends the command (after the other modules were synced) with how to resolve it."""
    results, conflicts = sync_all(modules, keep=keep, create=create)
    for r in results:
        if r.action in SAID:
            nb, py = r.module.rel(r.module.source.with_suffix(".ipynb")), r.module.rel(r.module.source)
            say(SAID[r.action].format(nb=nb, py=py), "green")
        if r.backup:
            say(f"  the previous version is kept in {r.module.rel(r.backup)}", "dim")
    if conflicts:
        raise TitoError("\n".join(conflicts))
