"""Last scores per module, kept in .tito/scores.json of the course tree (shown by `tito status`)."""
from __future__ import annotations

import json
import os
from pathlib import Path


def _path(root: Path) -> Path:
    return root / ".tito" / "scores.json"


def load(root: Path) -> dict:
    try:
        return json.loads(_path(root).read_text())
    except (OSError, ValueError):
        return {}


def save(root: Path, results) -> None:
    data = load(root)
    for r in results:
        data[r.module] = {"score": r.score, "max_score": r.max_score}
    path = _path(root)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
