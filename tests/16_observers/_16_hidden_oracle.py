"""Instructor-only oracles for module 16's tests (removed from the student release).

Grading one exercise patches the others (and module 15's functions) with these, so a bug in, say,
`check_batch` does not also cost the `PercentileObserver` points. Written independently of the
reference solution: explicit loops, float64 throughout, no shared helpers.
"""
import numpy as np


# ----------------------------------------------------------------------------- module 15 (quantize)
def _qrange(bits, signed, narrow=False):
    if signed:
        half = 1 << (bits - 1)
        return (-half + 1 if narrow else -half), half - 1
    return 0, (1 << bits) - 1


def symmetric_qparams(amax, bits=8):
    amax = np.asarray(amax, dtype=np.float64)
    qmax = (1 << (bits - 1)) - 1
    scale = np.ones(amax.shape, dtype=np.float32)
    pos = amax > 0
    scale[pos] = (amax[pos] / qmax).astype(np.float32)
    scale[scale == 0] = 1.0
    return scale[()], np.zeros(amax.shape, dtype=np.int32)[()]


def asymmetric_qparams(xmin, xmax, bits=8, signed=False):
    lo = np.minimum(np.asarray(xmin, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(xmax, dtype=np.float64), 0.0)
    qmin, qmax = _qrange(bits, signed)
    s64 = (hi - lo) / (qmax - qmin)
    ok = s64.astype(np.float32) > 0
    s64 = np.where(ok, s64, 1.0)
    zp = np.clip(np.rint(qmin - lo / s64), qmin, qmax).astype(np.int32)
    return s64.astype(np.float32)[()], zp[()]


def _param(p, ndim, axis):
    p = np.asarray(p)
    if axis is None:
        return p.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return p.reshape(shape)


def quantize(x, scale, zero_point, bits=8, signed=True, narrow=False, axis=None):
    x = np.asarray(x, dtype=np.float32)
    qmin, qmax = _qrange(bits, signed, narrow)
    s = _param(np.asarray(scale, dtype=np.float32), x.ndim, axis)
    z = _param(zero_point, x.ndim, axis).astype(np.float32)
    q = np.clip(np.rint(x / s) + z, qmin, qmax)
    return q.astype(np.int8 if signed else np.uint8) if bits <= 8 else q.astype(np.int16 if signed else np.uint16)


def dequantize(q, scale, zero_point, axis=None):
    q = np.asarray(q)
    s = _param(np.asarray(scale, dtype=np.float32), q.ndim, axis)
    z = _param(zero_point, q.ndim, axis).astype(np.float32)
    return ((q.astype(np.float32) - z) * s).astype(np.float32)


# ----------------------------------------------------------------------------- module 16 helpers
def check_batch(x, who="observer"):
    a = np.array(x, dtype=np.float64, copy=True)
    finite = np.isfinite(a)
    if not finite.all():
        n_bad = a.size - int(finite.sum())
        raise ValueError(f"{who}: {n_bad} of {a.size} values are NaN or inf")
    return a


def channel_view(x, axis=None):
    x = np.asarray(x)
    if axis is None:
        return x.reshape(1, x.size)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} out of range for shape {x.shape}")
    axis %= x.ndim
    order = [axis] + [i for i in range(x.ndim) if i != axis]
    return np.transpose(x, order).reshape(x.shape[axis], -1)


def _fold(hist):
    half = len(hist) // 2
    return np.array([hist[half + k] + hist[half - 1 - k] for k in range(half)], dtype=np.float64)


def _windows(hist):
    half = len(hist) // 2
    nz = np.nonzero(hist)[0]
    if len(nz) == 0:
        return []
    n_neg = max(half - nz[0], 0)
    n_pos = max(nz[-1] - half + 1, 0)
    m = max(n_neg, n_pos)
    out = []
    for j in range(1, m + 1):
        out.append((half + (-j * n_neg) // m, half - (-j * n_pos) // m))   # floor of the negation = -ceil
    return out


def _fq(values, lo, hi, bits, symmetric):
    if symmetric:
        s, z = symmetric_qparams(hi, bits)
        q = quantize(values, s, z, bits, signed=True, narrow=True)
    else:
        s, z = asymmetric_qparams(lo, hi, bits, signed=False)
        q = quantize(values, s, z, bits, signed=False)
    return dequantize(q, s, z).astype(np.float64)


def l2_search(hist, amax, bits=8, symmetric=True):
    hist = np.asarray(hist, dtype=np.float64)
    if amax <= 0 or hist.sum() == 0:
        return 0.0, 0.0
    half = len(hist) // 2
    w = amax / half
    if symmetric:
        mass = _fold(hist)
        centres = (np.arange(half) + 0.5) * w
        cands = [(-i * w, i * w) for i in range(1, half + 1)]
    else:
        mass = hist
        centres = (np.arange(len(hist)) - half + 0.5) * w
        cands = [((a - half) * w, (b - half) * w) for a, b in _windows(hist)]
    keep = mass > 0
    mass, centres = mass[keep], centres[keep]
    best, best_err = cands[-1], np.inf
    for lo, hi in cands:
        err = float(np.sum(mass * (_fq(centres, lo, hi, bits, symmetric) - centres) ** 2))
        if err < best_err:
            best, best_err = (lo, hi), err
    return float(best[0]), float(best[1])


def kl_window(window, below, above, levels):
    window = np.asarray(window, dtype=np.float64)
    n = len(window)
    p = window.copy()
    p[0] += below
    p[-1] += above
    edges = (np.arange(levels + 1) * n) // levels
    group = np.searchsorted(edges, np.arange(n), side="right") - 1     # group of each bin
    filled = p > 0
    sums = np.bincount(group, weights=window, minlength=levels)
    counts = np.bincount(group, weights=filled.astype(np.float64), minlength=levels)
    q = np.where(filled, sums[group] / np.maximum(counts[group], 1.0), 0.0)
    if q.sum() == 0:
        return np.inf
    pn, qn = p[filled] / p.sum(), q[filled] / q.sum()
    qn = np.maximum(qn, 1e-10)
    return float(np.sum(pn * np.log(pn / qn)))


def entropy_search(hist, amax, bits=8, symmetric=True):
    hist = np.asarray(hist, dtype=np.float64)
    if amax <= 0 or hist.sum() == 0:
        return 0.0, 0.0
    half = len(hist) // 2
    w = amax / half
    if symmetric:
        mass = _fold(hist)
        levels = 1 << (bits - 1)
        if half < levels:
            return -amax, amax
        best_i, best = half, np.inf
        for i in range(levels, half + 1):
            d = kl_window(mass[:i], 0.0, mass[i:].sum(), levels)
            if d < best:
                best_i, best = i, d
        return -best_i * w, best_i * w
    levels = 1 << bits
    wins = _windows(hist)
    best_ab, best = wins[-1], np.inf
    for a, b in wins:
        if b - a >= levels:
            d = kl_window(hist[a:b], hist[:a].sum(), hist[b:].sum(), levels)
            if d < best:
                best_ab, best = (a, b), d
    return (best_ab[0] - half) * w, (best_ab[1] - half) * w
