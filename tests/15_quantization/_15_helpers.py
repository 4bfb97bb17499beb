"""Helpers of module 15's tests (public)."""
import importlib

import numpy as np

EXERCISE_FUNCTIONS = ("qrange", "symmetric_qparams", "asymmetric_qparams", "quantize", "dequantize")


def isolate(monkeypatch, keep):
    """Grade one exercise on its own: replace the other exercises' functions by the instructor's
    oracle, so a bug in `quantize` does not also cost the `QuantizedTensor` points.

    The oracle is instructor-only; in the student flavour this does nothing and the learner's own
    functions are used throughout.
    """
    try:
        oracle = importlib.import_module("_15_hidden_oracle")
    except ModuleNotFoundError:
        return
    import tinyq.quantize as module
    for name in EXERCISE_FUNCTIONS:
        if name != keep:
            monkeypatch.setattr(module, name, getattr(oracle, name))


def as_list(a):
    return np.asarray(a).tolist()
