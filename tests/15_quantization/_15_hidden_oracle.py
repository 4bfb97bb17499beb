"""Instructor-only oracles of module 15's exercises, written independently of the reference
solution (different formulation, float64 throughout). Removed from the student release."""
import numpy as np


def qrange(bits=8, signed=True, narrow=False):
    levels = 1 << bits
    if signed:
        return (-(levels // 2) + (1 if narrow else 0), levels // 2 - 1)
    if narrow:
        raise ValueError("narrow unsigned")
    return (0, levels - 1)


def symmetric_qparams(amax, bits=8):
    amax = np.asarray(amax, dtype=np.float64)
    qmax = (1 << (bits - 1)) - 1
    scale = np.ones(amax.shape, dtype=np.float32)
    nz = amax > 0
    scale[nz] = (amax[nz] / qmax).astype(np.float32)
    return scale[()], np.zeros_like(amax, dtype=np.int32)[()]


def asymmetric_qparams(xmin, xmax, bits=8, signed=False):
    lo = np.minimum(np.asarray(xmin, np.float64), 0)
    hi = np.maximum(np.asarray(xmax, np.float64), 0)
    qmin, qmax = qrange(bits, signed)
    s64 = (hi - lo) / (qmax - qmin)
    s64 = np.where(s64.astype(np.float32) > 0, s64, 1.0)
    zp = np.clip(np.round(qmin - lo / s64), qmin, qmax).astype(np.int32)
    return s64.astype(np.float32)[()], zp[()]


def _shape_for(param, ndim, axis):
    param = np.asarray(param)
    if axis is None:
        return param.reshape(())
    shape = [1] * ndim
    shape[axis] = param.size
    return param.reshape(shape)


def quantize(x, scale, zero_point, bits=8, signed=True, narrow=False, axis=None):
    x = np.asarray(x, dtype=np.float32)
    qmin, qmax = qrange(bits, signed, narrow)
    dtype = {True: np.int8, False: np.uint8}[signed] if bits <= 8 else {True: np.int16, False: np.uint16}[signed]
    s = _shape_for(np.asarray(scale, np.float32), x.ndim, axis)
    z = _shape_for(zero_point, x.ndim, axis)
    if not np.isfinite(x).all():
        raise ValueError(f"{np.count_nonzero(~np.isfinite(x))} of {x.size} values are NaN or inf")
    return np.clip(np.round(x / s) + z, qmin, qmax).astype(dtype)


def dequantize(q, scale, zero_point, axis=None):
    q = np.asarray(q)
    s = _shape_for(np.asarray(scale, np.float32), q.ndim, axis)
    z = _shape_for(zero_point, q.ndim, axis)
    return ((q.astype(np.float32) - z.astype(np.float32)) * s).astype(np.float32)
