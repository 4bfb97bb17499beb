"""Last scores per module, kept in .tito/scores.json of the course tree (shown by `tito status`)."""
from __future__ import annotations

from pathlib import Path

from .files import read_state, write_state

STATE = "scores"


def load(root: Path) -> dict:
    return read_state(root, STATE)


def save(root: Path, results) -> None:
    data = load(root)
    for r in results:
        data[r.module] = {"score": r.score, "max_score": r.max_score}
    write_state(root, STATE, data)
