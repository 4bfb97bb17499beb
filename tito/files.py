"""The file chores every command shares: hashing, all-or-nothing writes, and backups.

Nothing a learner wrote is ever replaced without a copy: `back_up` puts the old file under
`.tito/backups/<time>/` of its course tree before a command overwrites it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

STATE_DIR = ".tito"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(files: dict[Path, str | bytes]) -> None:
    """Write every file or none: temporaries first, then a rename each (atomic per file). A file
    keeps its permissions; a new one gets the usual ones (mkstemp's private 0600 would not do)."""
    temps = {}
    new_mode = 0o666 & ~_umask()
    try:
        for target, content in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content.encode() if isinstance(content, str) else content)
            os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else new_mode)
            temps[target] = tmp
        for target, tmp in temps.items():
            os.replace(tmp, target)
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def read_state(root: Path, name: str) -> dict:
    """A JSON document of tito's per-course state (`.tito/NAME.json`); {} when absent or unreadable."""
    try:
        return json.loads((root / STATE_DIR / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}


def write_state(root: Path, name: str, data: dict) -> None:
    write_atomically({root / STATE_DIR / f"{name}.json": json.dumps(data, indent=1, sort_keys=True)})


def back_up(path: Path, root: Path) -> Path:
    """Copy `path` (inside course tree `root`) to `.tito/backups/<time>/<same relative path>`."""
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"
    target = root / STATE_DIR / "backups" / stamp / path.resolve().relative_to(root.resolve())
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target)
    return target


def move_aside(folder: Path) -> Path:
    """Rename `folder` to a free `NAME.backup-<time>` beside it (never over anything)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = folder.parent / f"{folder.name}.backup-{stamp}", 1
    while candidate.exists():
        n += 1
        candidate = folder.parent / f"{folder.name}.backup-{stamp}-{n}"
    folder.rename(candidate)
    return candidate


def install_folder(built: Path, out: Path, *, keep_old: bool = False, carry: tuple[str, ...] = ()) -> Path | None:
    """Put the folder `built` at `out` (release, site). The caller has already decided that whatever is at
    `out` may go: with `keep_old` it is moved aside to a backup (returned), else it is deleted after
    the top-level entries named in `carry` (a learner's .venv, .git...) were moved into the new folder."""
    saved = None
    if out.exists() and any(out.iterdir()):
        if keep_old:
            saved = move_aside(out)
        else:
            for name in carry:
                if (out / name).exists() and not (built / name).exists():
                    (out / name).rename(built / name)
            shutil.rmtree(out)
    elif out.exists():
        out.rmdir()
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(out))
    return saved
