"""Helpers of module 17's tests (public)."""
import functools

import numpy as np

from tinyq import zoo
from tito import testkit
from tinyq.data import load_digits

# What each exercise defines in tinyq.ptq.
EXERCISES = {
    "quantize_weight": ("quantize_weight",),
    "quantize_bias": ("quantize_bias",),
    "integer_linear": ("integer_linear",),
    "requantize": ("requantize",),
    "quantized_layer": ("QuantizedLayer",),
    "calibrate": ("calibrate", "Observed"),
    "quantize_model": ("quantize_model",),
    "dynamic": ("dynamic_forward", "quantize_dynamic"),
    "sensitivity": ("sensitivity",),
    "mixed_precision": ("mixed_precision",),
}
# What tinyq.ptq uses from modules 15 and 16 (graded there, not here).
PREREQUISITES = ("qrange", "quantize", "dequantize", "asymmetric_qparams", "MinMaxObserver")


def oracle():
    """The instructor's oracle module, or None in the student flavour."""
    return testkit.load_oracle("_17_hidden_oracle")


def isolate(monkeypatch, keep):
    """Grade exercise `keep` on its own (see tito.testkit.isolate): every other exercise of tinyq.ptq,
    and what it imports from modules 15 and 16, is replaced by the instructor's oracle."""
    names = [n for exercise, group in EXERCISES.items() if exercise != keep for n in group]
    testkit.isolate(monkeypatch, "tinyq.ptq", "_17_hidden_oracle", names, optional=PREREQUISITES)


def observers():
    """(per-channel weight observer factory, per-tensor observer factory)."""
    orc = oracle()
    if orc is not None:
        return orc.per_channel, orc.MinMaxObserver
    from tinyq.observers import MinMaxObserver
    return functools.partial(MinMaxObserver, axis=0), MinMaxObserver


def digits():
    return load_digits()


def calib_batches(size=50):
    return list(load_digits().batches("calib", size))


def accuracy(model, x, y):
    return float((np.asarray(model(x)).argmax(axis=1) == y).mean())


def fresh(name="digits_cnn"):
    return zoo.load(name)
