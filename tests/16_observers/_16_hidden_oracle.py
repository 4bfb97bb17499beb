"""Instructor-only oracles for module 16's tests (removed from the student release).

Grading one exercise patches the others (and module 15's functions) with these, so a bug in, say,
`check_batch` does not also cost the `PercentileObserver` points. Written independently of the
reference solution: explicit loops, float64 throughout, no shared helpers.

Module 15's functions are re-derived here rather than imported from `_15_hidden_oracle`: a grading
run copies only the graded module's tests folder, so no other module's oracle can be imported. They
take their own route to the same bits: one quotient or one product in float64, then rounded to
float32, gives exactly the float32 result (double rounding is harmless as 53 >= 2 * 24 + 2 bits);
codes are rounded from that, then offset and clipped as integers.
"""
import numpy as np


# ----------------------------------------------------------------------------- module 15 (quantize)
def _codes(bits, signed, narrow=False):
    """(lowest, highest) code of `bits`-bit integers, as Python ints."""
    if not signed:
        return 0, (1 << bits) - 1
    lowest = -(1 << (bits - 1))
    return lowest + (1 if narrow else 0), -lowest - 1


def symmetric_qparams(amax, bits=8):
    """scale = amax / (2**(bits-1) - 1) in float64, rounded once to float32; 1.0 where that is not > 0."""
    a = np.asarray(amax, dtype=np.float64)
    top = _codes(bits, signed=True)[1]
    scale = np.divide(a, top, out=np.zeros(a.shape), where=a > 0).astype(np.float32)
    scale[scale <= 0] = 1.0                    # zero amax, or a quotient below float32's smallest
    return scale[()], np.zeros(a.shape, dtype=np.int32)[()]


def asymmetric_qparams(xmin, xmax, bits=8, signed=False):
    """Affine qparams of [min(xmin, 0), max(xmax, 0)]; the zero point uses the float64 step."""
    first, last = _codes(bits, signed)
    lo, hi = np.broadcast_arrays(np.asarray(xmin, np.float64), np.asarray(xmax, np.float64))
    lo = np.where(lo < 0, lo, 0.0)
    hi = np.where(hi > 0, hi, 0.0)
    step = (hi - lo) / (last - first)
    step = np.where(step.astype(np.float32) > 0, step, 1.0)
    zero = np.round(first - lo / step)                                   # code of the real value 0
    zero = np.minimum(np.maximum(zero, first), last).astype(np.int32)
    return step.astype(np.float32)[()], zero[()]


def _lined_up(param, ndim, axis):
    """A scalar for axis None; else a 1-D parameter given singleton dims everywhere but `axis`."""
    flat = np.asarray(param).reshape(-1)
    if axis is None:
        return flat.reshape(())            # refuses more than one value, as per-tensor must
    others = tuple(d for d in range(ndim) if d != axis % ndim)
    return np.expand_dims(flat, others)


def quantize(x, scale, zero_point, bits=8, signed=True, narrow=False, axis=None):
    x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
    first, last = _codes(bits, signed, narrow)
    s = _lined_up(np.asarray(scale, np.float32).astype(np.float64), x64.ndim, axis)
    z = _lined_up(np.asarray(zero_point).astype(np.int64), x64.ndim, axis)
    # x / s rounded to float32 (the bits of a float32 division); bounded first so the cast cannot overflow
    ratio = np.clip(x64 / s, -2.0 ** 40, 2.0 ** 40).astype(np.float32)
    codes = np.clip(np.round(ratio).astype(np.int64) + z, first, last)
    return codes.astype(np.dtype(("i" if signed else "u") + ("1" if bits <= 8 else "2")))


def dequantize(q, scale, zero_point, axis=None):
    codes = np.asarray(q)
    s = _lined_up(np.asarray(scale, np.float32).astype(np.float64), codes.ndim, axis)
    z = _lined_up(np.asarray(zero_point, np.float64), codes.ndim, axis)
    # (q - z) has at most 17 bits and s 24: the float64 product is exact, its float32 cast the float32 product
    return ((codes.astype(np.float64) - z) * s).astype(np.float32)


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


def _grid(hist, amax):
    """(counts as float64, bins per side, bin width), or None when there is nothing to search."""
    counts = np.asarray(hist, dtype=np.float64)
    if amax <= 0 or not counts.any():
        return None
    per_side = len(counts) // 2
    return counts, per_side, amax / per_side


def _fq(values, lo, hi, bits, symmetric):
    if symmetric:
        s, z = symmetric_qparams(hi, bits)
        q = quantize(values, s, z, bits, signed=True, narrow=True)
    else:
        s, z = asymmetric_qparams(lo, hi, bits, signed=False)
        q = quantize(values, s, z, bits, signed=False)
    return dequantize(q, s, z).astype(np.float64)


def l2_search(hist, amax, bits=8, symmetric=True):
    grid = _grid(hist, amax)
    if grid is None:
        return 0.0, 0.0
    counts, per_side, w = grid
    half_w = w / 2                                 # bin k's centre: (2k + 1) * w / 2, k from the left end
    if symmetric:                                  # |x|: bins 0..per_side-1 from 0; ranges (-i w, i w)
        weights = _fold(counts)
        mids = (2 * np.arange(per_side) + 1) * half_w
        cands = [(-i * w, i * w) for i in range(1, per_side + 1)]
    else:                                          # signed: bin k covers [(k - per_side) w, ...)
        weights = counts
        mids = (2 * np.arange(len(counts)) - 2 * per_side + 1) * half_w
        cands = [((a - per_side) * w, (b - per_side) * w) for a, b in _windows(counts)]
    used = np.flatnonzero(weights)
    weights, mids = weights[used], mids[used]
    best, best_err = cands[-1], np.inf
    for lo, hi in cands:
        err = float(np.sum(weights * (_fq(mids, lo, hi, bits, symmetric) - mids) ** 2))
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
    grid = _grid(hist, amax)
    if grid is None:
        return 0.0, 0.0
    counts, per_side, w = grid
    if symmetric:
        folded = _fold(counts)
        levels = 1 << (bits - 1)
        if per_side < levels:
            return -amax, amax
        best_i, best = per_side, np.inf
        for i in range(levels, per_side + 1):
            d = kl_window(folded[:i], 0.0, folded[i:].sum(), levels)
            if d < best:
                best_i, best = i, d
        return -best_i * w, best_i * w
    levels = 1 << bits
    wins = _windows(counts)
    best_ab, best = wins[-1], np.inf
    for a, b in wins:
        if b - a >= levels:
            d = kl_window(counts[a:b], counts[:a].sum(), counts[b:].sum(), levels)
            if d < best:
                best_ab, best = (a, b), d
    return (best_ab[0] - per_side) * w, (best_ab[1] - per_side) * w
