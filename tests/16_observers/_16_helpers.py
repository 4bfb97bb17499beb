"""Helpers of module 16's tests (public)."""
import numpy as np


def signed_hist(x, bins):
    """Signed histogram of the nonzero values of x: `bins` bins per side over [-max|x|, max|x|]."""
    x = np.asarray(x, dtype=np.float64)
    amax = float(np.abs(x).max())
    pos = np.histogram(x[x > 0], bins, range=(0, amax))[0]
    neg = np.histogram(-x[x < 0], bins, range=(0, amax))[0]
    return np.concatenate([neg[::-1], pos]).astype(np.float64), amax


def fake_quant(x, scale, zero_point, bits, symmetric):
    """Quantize-dequantize in plain numpy (the tests' own yardstick, not the learner's module 15)."""
    x = np.asarray(x, dtype=np.float64)
    scale, zero_point = float(scale), float(zero_point)
    if symmetric:
        qmin, qmax = -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    else:
        qmin, qmax = 0, 2 ** bits - 1
    q = np.clip(np.rint(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


def uniform_with_outliers(seed, n=200_000, outliers=(4.0, -4.0, 3.9)):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-1.0, 1.0, n), np.asarray(outliers, dtype=np.float64)])
