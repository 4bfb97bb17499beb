"""Optional packages that some graded tests need, and the extra of pyproject.toml that installs each.

A test declares one with `@pytest.mark.requires("onnxruntime")`. Where the package is missing, the test
is reported as "needs onnxruntime: pip install -e '.[deploy]'" and its points leave the maximum (as
"needs GPU" does); `tito grade` refuses to start without every package its tests require, and
`tito doctor` lists them all.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Optional_:
    name: str          # import name
    extra: str         # pyproject extra that installs it
    unlocks: str       # what a learner gets with it

    @property
    def hint(self) -> str:
        return f"pip install -e '.[{self.extra}]'"


OPTIONAL = {o.name: o for o in (
    Optional_("onnxruntime", "deploy", "the bit-exact check against ONNX Runtime (module 15)"),
    Optional_("onnx", "deploy", "ONNX export (planned module 24)"),
    Optional_("gguf", "deploy", "GGUF Q8_0/Q4_0 byte checks against gguf-py (module 21)"),
    Optional_("safetensors", "llm", "loading MiniLM's weights (planned module 22)"),
    Optional_("jupyterlab", "lab", "tito lab: JupyterLab with paired notebooks"),
    Optional_("jupyter_book", "site", "tito site build: the course website"),
    Optional_("sphinx_mathjax_offline", "site", "formulas typeset on the course site with no network"),
    Optional_("cupy", "gpu", "CuPy GPU kernels (planned: module 20 and module 21's GPU half)"),
    Optional_("cuda.bindings", "gpu", "NVRTC on the CPU: module 20's kernels compiled and inspected for sm_75/80/90"),
    Optional_("nvidia.cuda_nvrtc", "gpu", "the NVRTC library that cuda.bindings loads (module 20, no GPU needed)"),
)}


def is_installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def describe(name: str) -> str:
    """'needs NAME: pip install ...' for a known optional package (or a plain 'needs NAME')."""
    known = OPTIONAL.get(name)
    return f"needs {name}: {known.hint}" if known else f"needs {name}: pip install {name}"
