"""Helpers of module 18's tests (public)."""
import numpy as np

from tinyq import zoo
from tinyq.data import load_digits
from tito.grading import kit

# The QAT recipe of the graded accuracy bar (train_qat's defaults).
RECIPE = dict(epochs=3, lr=1e-4, batch_size=32, seed=0)


def oracle():
    """The instructor's oracle module, or None in the student flavour."""
    return kit.load_oracle("_18_hidden_oracle")


def m15():
    """Module 15's quantize/dequantize (and qrange) to compare against: the oracle's where it is
    available, the learner's tinyq.quantize otherwise."""
    orc = oracle()
    if orc is not None:
        return orc
    import tinyq.quantize as tq
    return tq


def roundtrip(x, scale, zero_point, bits=8, signed=True, narrow=False, axis=None):
    """dequantize(quantize(x)) with module 15's functions."""
    ref = m15()
    q = ref.quantize(x, scale, zero_point, bits=bits, signed=signed, narrow=narrow, axis=axis)
    return ref.dequantize(q, scale, zero_point, axis=axis)


def observer(averaging_constant=0.01, axis=None):
    """A moving-average min/max observer (the oracle's where available, else module 16's)."""
    orc = oracle()
    if orc is not None:
        return orc.MovingAverageMinMaxObserver(averaging_constant, axis=axis)
    from tinyq.observers import MovingAverageMinMaxObserver
    return MovingAverageMinMaxObserver(averaging_constant, axis=axis)


def digits():
    return load_digits()


def fresh(name="digits_cnn"):
    return zoo.load(name)


def accuracy(model, x, y):
    return float((np.asarray(model(x)).argmax(axis=1) == y).mean())


def central_difference(f, x, h):
    """d f / d x (f: array -> float) by central differences, one element at a time (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (f(up) - f(down)) / (2 * h)
    return grad
