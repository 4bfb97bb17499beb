"""The one module registry: every command learns about modules from modules/NN_name/module.yaml."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import TitoError

DIR_NAME = re.compile(r"^(\d\d)_([a-z0-9_]+)$")
REQUIRED_KEYS = ("number", "name", "title", "export", "points")


class RegistryError(TitoError):
    """A module folder or its module.yaml is malformed, or a name does not match any module."""


@dataclass(frozen=True)
class Module:
    number: int
    name: str
    title: str
    export: str                      # tinyq/<export>.py
    points: float
    root: Path                       # the course tree this module belongs to
    time: str = ""
    prerequisites: tuple[str, ...] = ()
    objectives: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return f"{self.number:02d}_{self.name}"

    @property
    def dir(self) -> Path:
        return self.root / "modules" / self.key

    @property
    def source(self) -> Path:
        return self.dir / f"{self.name}_dev.py"

    @property
    def target(self) -> Path:
        return self.root / "tinyq" / f"{self.export}.py"

    @property
    def tests_dir(self) -> Path:
        return self.root / "tests" / self.key

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def find_root(start: Path | None = None) -> Path:
    """The course tree containing `start` (default: the working directory): it has modules/ and tinyq/."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "modules").is_dir() and (candidate / "tinyq").is_dir():
            return candidate
    raise RegistryError(f"{here} is not inside a tinyq course folder (one with modules/ and tinyq/)")


def _load(yaml_path: Path, root: Path) -> Module:
    where = yaml_path.relative_to(root).as_posix()
    try:
        data = yaml.safe_load(yaml_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RegistryError(f"{where}: not valid YAML: {exc}") from exc
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise RegistryError(f"{where}: missing key(s) {', '.join(missing)}")
    match = DIR_NAME.match(yaml_path.parent.name)
    if not match or int(match.group(1)) != int(data["number"]) or match.group(2) != data["name"]:
        raise RegistryError(f"{where}: number/name ({data['number']}, {data['name']}) do not match "
                            f"the folder name {yaml_path.parent.name}")
    return Module(number=int(data["number"]), name=str(data["name"]), title=str(data["title"]),
                  export=str(data["export"]), points=float(data["points"]), root=root,
                  time=str(data.get("time", "")),
                  prerequisites=tuple(data.get("prerequisites") or ()),
                  objectives=tuple(data.get("objectives") or ()))


def all_modules(root: Path | None = None) -> list[Module]:
    root = root or find_root()
    modules = [_load(p, root) for p in sorted((root / "modules").glob("*/module.yaml"))]
    exports: dict[str, str] = {}
    for m in modules:
        if m.export in exports:
            raise RegistryError(f"{m.key} and {exports[m.export]} both export to tinyq/{m.export}.py")
        exports[m.export] = m.key
    return modules


def resolve(name: str, root: Path | None = None) -> Module:
    """`15`, `quantization` and `15_quantization` all name module 15."""
    modules = all_modules(root)
    wanted = name.strip().lower()
    for m in modules:
        if wanted in (m.key, m.name, str(m.number), f"{m.number:02d}"):
            return m
    known = ", ".join(m.key for m in modules) or "none"
    raise RegistryError(f"no module named {name!r} (known: {known})")


def select(names: list[str] | None, all_: bool, root: Path | None = None) -> list[Module]:
    """The modules a command was asked for: the named ones, or every module with --all."""
    if all_:
        return all_modules(root)
    if not names:
        raise RegistryError("name a module (e.g. 15, quantization or 15_quantization) or pass --all")
    return [resolve(n, root) for n in names]
